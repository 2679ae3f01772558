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
