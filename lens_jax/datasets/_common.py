"""Helpers shared by the lens_jax tfds builders (no TensorFlow needed)."""
from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np

__all__ = ["DataUnavailableError", "require", "bilinear_upsample", "stratified_split",
           "to_uint8", "FASHION_MNIST_APT"]

FASHION_MNIST_APT = "apt-get install dataset-fashion-mnist"


class DataUnavailableError(RuntimeError):
    """A data set cannot be prepared or read offline; the message says how to fix it."""


def require(module: str, pip_name: str, dataset: str) -> ModuleType:
    """Import ``module`` or raise :class:`DataUnavailableError` naming ``pip install``."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise DataUnavailableError(
            f"data set {dataset!r} needs the Python package {pip_name!r}, which is not "
            f"installed: run `pip install {pip_name}` (or `pip install lens_jax[data]`)."
        ) from e


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of half-pixel-centred bilinear interpolation, edges clamped.

    Output pixel ``o`` samples the input at ``s = (o + 0.5) * n_in / n_out - 0.5``;
    for upsampling this equals ``jax.image.resize(..., "bilinear")``.
    """
    s = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    s = np.clip(s, 0.0, n_in - 1)
    i0 = np.floor(s).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = s - i0
    m = np.zeros((n_out, n_in), dtype=np.float64)
    np.add.at(m, (np.arange(n_out), i0), 1.0 - w1)
    np.add.at(m, (np.arange(n_out), i1), w1)
    return m


def bilinear_upsample(images: np.ndarray, size: int) -> np.ndarray:
    """Resize (N, h, w) float images to (N, size, size) with separable bilinear weights."""
    images = np.asarray(images, dtype=np.float64)
    ry = _bilinear_matrix(images.shape[1], size)
    rx = _bilinear_matrix(images.shape[2], size)
    return np.einsum("oi,nij,pj->nop", ry, images, rx)


def to_uint8(x01: np.ndarray) -> np.ndarray:
    """Quantise floats in [0, 1] to uint8 (round to nearest, clipped)."""
    return np.clip(np.rint(np.asarray(x01) * 255.0), 0, 255).astype(np.uint8)


def stratified_split(labels: np.ndarray, n_test: int, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified (train_idx, test_idx), each in a seeded random order.

    Each class gets ``n_test * count / total`` test examples, rounded by largest
    remainder so that exactly ``n_test`` are drawn. Pure NumPy (``default_rng(seed)``),
    so the split does not change with the scikit-learn version.
    """
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    quota = n_test * counts / counts.sum()
    take = np.floor(quota).astype(np.int64)
    short = n_test - int(take.sum())
    if short:
        order = np.argsort(-(quota - take), kind="stable")
        take[order[:short]] += 1
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c, k in zip(classes, take):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test.append(idx[:k])
        train.append(idx[k:])
    train_idx = rng.permutation(np.concatenate(train))
    test_idx = rng.permutation(np.concatenate(test))
    return train_idx, test_idx
