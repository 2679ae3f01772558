"""``digits``: scikit-learn's 1,797 handwritten digits, bilinearly upsampled to 32x32.

Source: ``sklearn.datasets.load_digits()`` (UCI optdigits, BSD-3; bundled with
scikit-learn, no network). The 8x8 images (values 0..16) are divided by 16, upsampled
to 32x32 with half-pixel-centred bilinear interpolation (edges clamped; equal to
``jax.image.resize(..., "bilinear")``) and quantised to uint8. Split: stratified,
297 test / 1500 train, ``numpy.random.default_rng(0)``
(:func:`lens_jax.datasets._common.stratified_split`). Classes "0".."9".
"""
from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from lens_jax.datasets._common import bilinear_upsample, require, stratified_split, to_uint8

__all__ = ["Digits", "IMAGE_SIZE", "NUM_TEST"]

IMAGE_SIZE = 32
NUM_TEST = 297


class Digits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn digits at 32x32 (1500 train / 297 test)."""

    name = "digits"
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "Initial release.",
                     "1.1.0": "Images stored as raw bytes: same pixels, faster to prepare."}

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=(IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.uint8,
                                            encoding=tfds.features.Encoding.BYTES),
                "label": tfds.features.ClassLabel(names=[str(d) for d in range(10)]),
                "index": tfds.features.Scalar(dtype=np.int64),
            }),
            supervised_keys=("image", "label"),
            homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html",
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        datasets = require("sklearn.datasets", "scikit-learn", "digits")
        d = datasets.load_digits()
        images = to_uint8(bilinear_upsample(d.images / 16.0, IMAGE_SIZE))[..., None]
        labels = np.asarray(d.target, dtype=np.int64)
        train_idx, test_idx = stratified_split(labels, NUM_TEST, seed=0)
        return {"train": self._generate_examples(images, labels, train_idx),
                "test": self._generate_examples(images, labels, test_idx)}

    def _generate_examples(self, images, labels, idx):
        for key, i in enumerate(idx):
            yield key, {"image": images[i], "label": int(labels[i]), "index": int(i)}
