"""Shared test configuration: float64 available, strict JAX, CPU only.

Eight forced host (CPU) devices, so the sharded paths (``lens_jax.sweep``) run on a
real multi-device mesh; everything else keeps using the default device.
"""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_force_host_platform_device_count=8").strip()

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)


import numpy as np  # noqa: E402
import pytest  # noqa: E402


def sk_digits(size: int):
    """scikit-learn digits resized to ``size`` x ``size`` in [0, 1], shuffled with seed 0:
    ``((x_train, y_train), (x_test, y_test))`` with 600 / 200 images."""
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    d = sklearn_datasets.load_digits()
    x = jax.image.resize(d.images[:, :, :, None] / 16.0, (len(d.images), size, size, 1),
                         "bilinear")
    x = np.clip(np.asarray(x, np.float32), 0, 1)
    y = d.target.astype(np.int32)
    p = np.random.default_rng(0).permutation(len(x))
    x, y = x[p], y[p]
    return (x[:600], y[:600]), (x[600:800], y[600:800])


@pytest.fixture
def fake_data(monkeypatch):
    """Install a stand-in ``lens_jax.data`` (the training tests never need the real one):
    ``fake_data({"train": (x, y), "test": (x, y)})`` returns the list of ``(name, split)``
    calls its ``load`` records."""
    import sys
    import types

    import lens_jax

    def install(splits):
        calls = []

        def load(name, split, *, data_dir=None, with_info=False):
            calls.append((name, split))
            return splits[split]

        fake = types.ModuleType("lens_jax.data")
        fake.load = load
        fake.class_names = lambda name: [str(i) for i in range(10)]
        monkeypatch.setitem(sys.modules, "lens_jax.data", fake)
        monkeypatch.setattr(lens_jax, "data", fake, raising=False)
        return calls

    return install
