"""``synthetic``: one bright elliptical Gaussian blob; the class is where it sits horizontally.

The morph that turns one class into another is known exactly: translate the blob
horizontally. Every example stores its generator parameters, so an experiment can
measure whether a morph moved the blob (and only along x).

Definition (image size ``S``, ``K = num_classes`` slots; coordinates in pixels with
``x`` = column index, ``y`` = row index, pixel centres at integers, so the image spans
``[0, S - 1]`` in both)::

    u     = cx / (S - 1)                        # horizontal position in [0, 1]
    label = floor(K * (u - 0.2) / 0.6)          # K equal slots over u in [0.2, 0.8]

    image(y, x) = background + amplitude * exp(-(a**2 / scale**2
                                                + b**2 / (aspect * scale)**2) / 2)
                  + N(0, noise**2),   clipped to [0, 1] and quantised to uint8
    a =  (x - cx) cos(angle) + (y - cy) sin(angle)   # along the major axis
    b = -(x - cx) sin(angle) + (y - cy) cos(angle)   # along the minor axis

Labels are exactly balanced (``i % K``, then shuffled). Given the label, ``u`` is
uniform on the middle 70 % of its slot (a 15 % margin on each side keeps a gap between
classes: for ``K = 2``, ``u`` lies in [0.245, 0.455] or [0.545, 0.755], i.e. class 0
is "left" (``cx < (S - 1) / 2``) and class 1 is "right"). The other parameters are
independent of the label:

==========  ==========================================  ==========================
feature     meaning                                     distribution
==========  ==========================================  ==========================
cx, cy      blob centre (pixels)                        cx by slot; cy/(S-1) ~ U(0.3, 0.7)
scale       major-axis standard deviation (pixels)      U(0.06, 0.11) * S
aspect      minor / major standard deviation            U(0.4, 1.0)
angle       major-axis angle from +x toward +y (rad)    U(0, pi)
amplitude   peak height above the background            U(0.6, 0.95)
background  flat background level                       U(0.0, 0.1)
==========  ==========================================  ==========================

``noise`` (Gaussian, per pixel) is a config constant (0.03). Generation is vectorised
NumPy with ``np.random.default_rng([seed, split])`` (train 0, test 1): deterministic.

Configs: ``default`` (32x32, 2 classes, 4000 / 1000), ``small`` (32x32, 2 classes,
400 / 100; for tests), ``slots4`` (32x32, 4 classes, 4000 / 1000), ``s64`` (64x64,
2 classes, 4000 / 1000). Any :class:`SyntheticConfig` may be passed to the builder.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from lens_jax.datasets._common import to_uint8

__all__ = ["Synthetic", "SyntheticConfig", "generate", "label_from_cx", "PARAM_NAMES"]

PARAM_NAMES = ("cx", "cy", "scale", "aspect", "angle", "amplitude", "background")
_U_LO, _U_HI, _SLOT_MARGIN = 0.2, 0.8, 0.15
_SPLIT_INDEX = {"train": 0, "test": 1}


@dataclasses.dataclass(eq=False)
class SyntheticConfig(tfds.core.BuilderConfig):
    image_size: int = 32
    num_classes: int = 2
    num_train: int = 4000
    num_test: int = 1000
    noise: float = 0.03
    seed: int = 0


def class_names(num_classes: int) -> list[str]:
    if num_classes == 2:
        return ["left", "right"]
    return [f"slot{k}" for k in range(num_classes)]


def label_from_cx(cx: np.ndarray, image_size: int, num_classes: int) -> np.ndarray:
    """The class rule: slot index of ``u = cx / (S - 1)`` over [0.2, 0.8], as int64."""
    u = np.asarray(cx, dtype=np.float64) / (image_size - 1)
    k = np.floor(num_classes * (u - _U_LO) / (_U_HI - _U_LO))
    return np.clip(k, 0, num_classes - 1).astype(np.int64)


def generate(n: int, *, image_size: int = 32, num_classes: int = 2, noise: float = 0.03,
             seed: int = 0, split: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(images uint8 (n, S, S, 1), labels int64 (n,), params {name: float32 (n,)})``."""
    s = image_size
    rng = np.random.default_rng([seed, split])
    labels = rng.permutation(np.arange(n) % num_classes)
    width = (_U_HI - _U_LO) / num_classes
    offset = rng.uniform(_SLOT_MARGIN, 1.0 - _SLOT_MARGIN, n)
    u = _U_LO + (labels + offset) * width
    p = {
        "cx": u * (s - 1),
        "cy": rng.uniform(0.3, 0.7, n) * (s - 1),
        "scale": rng.uniform(0.06, 0.11, n) * s,
        "aspect": rng.uniform(0.4, 1.0, n),
        "angle": rng.uniform(0.0, np.pi, n),
        "amplitude": rng.uniform(0.6, 0.95, n),
        "background": rng.uniform(0.0, 0.1, n),
    }
    p = {k: v.astype(np.float32) for k, v in p.items()}  # the stored values define the image
    q = {k: v.astype(np.float64)[:, None, None] for k, v in p.items()}
    yy, xx = np.meshgrid(np.arange(s, dtype=np.float64), np.arange(s, dtype=np.float64),
                         indexing="ij")
    dx, dy = xx[None] - q["cx"], yy[None] - q["cy"]
    cos, sin = np.cos(q["angle"]), np.sin(q["angle"])
    a = dx * cos + dy * sin
    b = -dx * sin + dy * cos
    sa, sb = q["scale"], q["scale"] * q["aspect"]
    blob = np.exp(-0.5 * ((a / sa) ** 2 + (b / sb) ** 2))
    img = q["background"] + q["amplitude"] * blob + noise * rng.standard_normal((n, s, s))
    assert np.array_equal(label_from_cx(p["cx"], s, num_classes), labels)
    return to_uint8(img)[..., None], labels.astype(np.int64), p


class Synthetic(tfds.core.GeneratorBasedBuilder):
    """Procedural blobs whose class is their horizontal slot (see module docstring)."""

    name = "synthetic"
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "Initial release.",
                     "1.1.0": "Images stored as raw bytes: same pixels, faster to prepare."}
    BUILDER_CONFIGS = [
        SyntheticConfig(name="default", description="32x32, 2 classes (left/right), 4000/1000"),
        SyntheticConfig(name="small", num_train=400, num_test=100,
                        description="32x32, 2 classes, 400/100 (tests)"),
        SyntheticConfig(name="slots4", num_classes=4, description="32x32, 4 slots, 4000/1000"),
        SyntheticConfig(name="s64", image_size=64, description="64x64, 2 classes, 4000/1000"),
    ]
    DEFAULT_BUILDER_CONFIG_NAME = "default"

    def _info(self) -> tfds.core.DatasetInfo:
        c = self.builder_config
        feats = {
            "image": tfds.features.Tensor(shape=(c.image_size, c.image_size, 1), dtype=np.uint8,
                                            encoding=tfds.features.Encoding.BYTES),
            "label": tfds.features.ClassLabel(names=class_names(c.num_classes)),
        }
        feats.update({k: tfds.features.Scalar(dtype=np.float32) for k in PARAM_NAMES})
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict(feats),
            supervised_keys=("image", "label"),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        c = self.builder_config
        return {"train": self._generate_examples("train", c.num_train),
                "test": self._generate_examples("test", c.num_test)}

    def _generate_examples(self, split: str, n: int):
        c = self.builder_config
        images, labels, params = generate(n, image_size=c.image_size, num_classes=c.num_classes,
                                          noise=c.noise, seed=c.seed, split=_SPLIT_INDEX[split])
        for i in range(n):
            ex = {"image": images[i], "label": int(labels[i])}
            ex.update({k: params[k][i] for k in PARAM_NAMES})
            yield i, ex
