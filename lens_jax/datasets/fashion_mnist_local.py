"""``fashion_mnist_local``: full Fashion-MNIST read from local idx files (no network).

The files are the original ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz`` (60,000 train + 10,000
test, 28x28 uint8, 10 classes; Zalando, MIT), as shipped by the Debian package
``dataset-fashion-mnist`` in ``/usr/share/datasets/fashion-mnist``. Pass their folder
as ``manual_dir``::

    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir="/usr/share/datasets/fashion-mnist"))

Examples keep the original order (``index`` is the position in the idx file).
"""
from __future__ import annotations

import gzip
import os

import numpy as np
import tensorflow_datasets as tfds

from lens_jax.datasets._common import FASHION_MNIST_APT, DataUnavailableError

__all__ = ["FashionMnistLocal", "CLASS_NAMES", "FILES", "DEBIAN_DIR", "missing_files",
           "read_idx"]

CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000),
}
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"


def missing_files(folder: str | os.PathLike | None) -> list[str]:
    """Names of the four idx files that ``folder`` lacks (all four when it is None)."""
    names = [f for img, lab, _ in FILES.values() for f in (img, lab)]
    if folder is None:
        return names
    return [f for f in names if not os.path.isfile(os.path.join(os.fspath(folder), f))]


def unavailable(folder) -> DataUnavailableError:
    return DataUnavailableError(
        f"Fashion-MNIST files not found in {os.fspath(folder) if folder else '(no folder)'}: "
        f"missing {', '.join(missing_files(folder))}. Install them with "
        f"`{FASHION_MNIST_APT}` (files land in {DEBIAN_DIR}), or set LENS_JAX_FASHION_MNIST_DIR "
        "to a folder holding the four original idx .gz files.")


def read_idx(path: str | os.PathLike, offset: int, count: int) -> np.ndarray:
    """The uint8 payload of one gzipped idx file (images: offset 16; labels: offset 8)."""
    with gzip.open(os.fspath(path), "rb") as f:
        data = np.frombuffer(f.read(), dtype=np.uint8, offset=offset)
    if data.size % count:
        raise ValueError(f"{path}: {data.size} bytes do not hold {count} items")
    return data


MANUAL = (f"Install the Debian package (`{FASHION_MNIST_APT}`) and pass "
          f"manual_dir={DEBIAN_DIR!r}, or any folder with the four original idx .gz files.")


class FashionMnistLocal(tfds.core.GeneratorBasedBuilder):
    """Fashion-MNIST from the original idx files given through ``manual_dir``."""

    name = "fashion_mnist_local"
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "Initial release.",
                     "1.1.0": "Images stored as raw bytes: same pixels, faster to prepare."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8,
                                            encoding=tfds.features.Encoding.BYTES),
                "label": tfds.features.ClassLabel(names=CLASS_NAMES),
                "index": tfds.features.Scalar(dtype=np.int64),
            }),
            supervised_keys=("image", "label"),
            homepage="https://github.com/zalandoresearch/fashion-mnist",
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        try:
            folder = dl_manager.manual_dir
        except AssertionError:  # tfds: "Manual directory ... does not exist or is empty"
            raise unavailable(getattr(dl_manager, "_manual_dir", None)) from None
        if missing_files(folder):
            raise unavailable(folder)
        return {split: self._generate_examples(folder, *spec) for split, spec in FILES.items()}

    def _generate_examples(self, folder, images_file, labels_file, n):
        images = read_idx(os.path.join(os.fspath(folder), images_file), 16, n).reshape(n, 28, 28, 1)
        labels = read_idx(os.path.join(os.fspath(folder), labels_file), 8, n).reshape(n)
        for i in range(n):
            yield i, {"image": images[i], "label": int(labels[i]), "index": i}
