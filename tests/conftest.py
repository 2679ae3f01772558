"""Shared test configuration: the tests run as the JAX anchors run theirs (equinox's conftest).

* **Strict JAX**: ``jax_numpy_dtype_promotion="strict"`` and ``jax_numpy_rank_promotion="raise"``
  in the test processes.  A library code path that mixes float and complex or ranks
  implicitly fails here.
* **Third-party code that is not strict-clean** (two named functions of optax and flax,
  below) runs with standard promotion; nothing else is exempt.
* **float32 by default.**  A test that needs float64 says so with ``@pytest.mark.x64``; it
  runs inside ``jax.enable_x64(True)`` (``x64`` fixture below).  Nothing turns x64 on globally.
* **Warnings are errors** (``filterwarnings`` in ``pyproject.toml``, with each exception named
  and justified there).
* **Quick CPU code generation** (``QUICK_CODEGEN`` below): the same HLO, machine code
  generated about 2.4x faster; in the test processes LLVM runs at -O0 except while a
  classifier trains or is attacked (a flow-domain morph compiles about 2.4x faster again);
  ``LENS_JAX_TEST_CODEGEN=default`` restores XLA's defaults.
* **CPU only**, eight forced host devices, so the sharded paths (``lens_jax.sweep``) run on
  a real multi-device mesh; everything else keeps using the default device.
* **A persistent XLA compilation cache** in ``$LENS_JAX_CACHE/jax_compile`` (default
  ``<repo>/.cache/jax_compile``, the Makefile's cache folder), shared by the xdist workers
  and by later runs (subprocesses use ``jax_compile_subprocess`` beside it).  Most tests
  build a fresh closure around the same small classifier, so ``jax.jit``'s in-memory cache
  misses while the compiled program is identical: the persistent cache turns those
  recompilations into reads.  Entries are keyed by the program, the JAX version and the
  flags, so a stale cache is never used wrongly.  It has no size cap while the tests run
  (JAX's cap rescans the folder on every write) and is pruned to 1 GiB at the start of a
  session that finds it above 2 GiB.
"""
import functools
import os
import re
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("LENS_JAX_CACHE") or ROOT / ".cache")

#: XLA's quick CPU code generation: the elemental fusion emitter and LLVM -O1.  Compilation
#: is most of this suite's time; these flags cut it about 2.4x (a csp_flow_joint and a
#: csp_joint morph at 16x16: 5.9 s -> 2.5 s) and the programs run as fast (4 epochs of the
#: CNN on 512 28x28 images: 1.7 s -> 1.8 s; -O0 compiled faster still but ran training 2x
#: slower).  They change only how machine code is generated from the same optimised HLO,
#: never what is computed; tests/test_lens.py checks that morphs compiled with XLA's
#: defaults (what users run) equal these.  LENS_JAX_TEST_CODEGEN=default runs the suite
#: with XLA's defaults.
QUICK_CODEGEN = "--xla_cpu_use_fusion_emitters=false --xla_backend_optimization_level=1"


def xla_flags(devices: int | None = None, *, codegen: str | None = None) -> str:
    """``XLA_FLAGS`` for a test's subprocess: ``devices`` forced host devices (None: XLA's
    one) and the suite's code generation (``"quick"`` or ``"default"``)."""
    codegen = codegen or os.environ.get("LENS_JAX_TEST_CODEGEN", "quick")
    if codegen not in ("quick", "default"):
        raise ValueError(f"LENS_JAX_TEST_CODEGEN must be 'quick' or 'default'; got {codegen!r}")
    flags = [QUICK_CODEGEN] if codegen == "quick" else []
    if devices is not None:
        flags.append(f"--xla_force_host_platform_device_count={devices}")
    return " ".join(flags)


os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + xla_flags(8)).strip()
# every compiled program is cached (0 s minimum; -1: no minimum entry size).  The test
# processes share one folder WITHOUT a size cap: with a cap, JAX scans the whole folder
# (stat and read every entry) under a file lock on every write, which is quadratic in the
# number of entries (thousands per run: minutes of system time; cold pytest took 1,477 s
# before both changes, 1,106 s with the quick code generation alone, 535 s with both).
# Writes are made atomic below instead; the folder is pruned once per session
# (``pytest_configure``).
# Programs compiled in subprocesses (the CLI, the main job, multi-process sweeps) go to a
# folder of their own with JAX's locked, capped cache (they cannot take the patch below),
# holding only programs that took at least 0.25 s to compile, so it stays small to scan.
COMPILE_CACHE = Path(os.environ.get("LENS_JAX_TEST_COMPILE_CACHE") or CACHE / "jax_compile")
COMPILE_CACHE_BYTES = 2 << 30
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(CACHE / "jax_compile_subprocess"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.25")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(COMPILE_CACHE_BYTES))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

# strict in this process (subprocesses started by tests run JAX's defaults: the exemptions
# below would not reach them)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_enable_x64", False)
jax.config.update("jax_compilation_cache_dir", str(COMPILE_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
jax.config.update("jax_compilation_cache_max_size", -1)       # no scan, no lock: see above
# Large closed-over arrays (the pyramid's filter masks: 175 MB of program text in a 255x255
# height-5 undecimated round trip) become arguments of the compiled program instead of constants
# written into it.  Embedded, the persistent cache hashes and stores every byte of them:
# that program's compile took 4.5 s with the cache against 0.8 s without; hoisted, 0.2 s.
# Arrays up to 64 KiB stay embedded (the 16x16 morphs of most tests are unchanged).  The
# large-size pyramid tests still assert exact reconstruction; subprocesses keep JAX's
# default (and tests/test_classifier.py runs the closure checks under both settings).
jax.config.update("jax_use_simplified_jaxpr_constants", True)
jax.config.update("jax_embedded_constants_max_bytes", 64 << 10)


def _atomic_cache_writes():
    """JAX's uncapped cache writes an entry in place; a second worker could read it half
    written.  Write to a temporary file and rename it into place (atomic on POSIX)."""
    from jax._src import lru_cache

    plain_put = lru_cache.LRUCache.put

    def put(self, key, value):
        if self.eviction_enabled or not key:
            return plain_put(self, key, value)
        path = Path(str(self.path)) / f"{key}-cache"
        if path.exists():
            return None
        tmp = path.with_name(f".{key}.{os.getpid()}.tmp")
        tmp.write_bytes(value)
        os.replace(tmp, path)
        return None

    lru_cache.LRUCache.put = put


_atomic_cache_writes()


def _prune_compile_cache(folder: Path, max_bytes: int) -> None:
    """Once per session: oldest entries (by modification time) go until the folder holds
    at most half of ``max_bytes`` (JAX's capped cache would scan it on every write)."""
    try:
        entries = [(p.stat().st_mtime, p.stat().st_size, p) for p in folder.iterdir()
                   if p.is_file()]
    except FileNotFoundError:
        return
    total = sum(size for _, size, _ in entries)
    if total <= max_bytes:
        return
    for _, size, p in sorted(entries):
        if total <= max_bytes // 2:
            break
        p.unlink(missing_ok=True)
        total -= size


def pytest_configure(config):
    if not hasattr(config, "workerinput"):        # the controller, before any worker runs
        _prune_compile_cache(COMPILE_CACHE, COMPILE_CACHE_BYTES)


# Third-party code that is not strict-clean runs with standard promotion; the library's
# own code stays strict.  Each exception names the upstream code (remove it once fixed):
# * optax: the update of adam/adamw/chain: bias correction computes ``1 - decay ** count``
#   (Python float ** int32, optax/tree_utils/_tree_math.py) and the schedules compare
#   ``jnp.minimum(count, float_steps)`` (optax/schedules/_schedule.py);
# * flax.linen.avg_pool divides by ``np.prod(window_shape)`` (float32 / int64 scalar,
#   flax/linen/pooling.py).
def _standard_promotion(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with jax.numpy_dtype_promotion("standard"):
            return fn(*args, **kwargs)
    return wrapper


def _standard_update(make):
    @functools.wraps(make)
    def wrapper(*args, **kwargs):
        tx = make(*args, **kwargs)
        return tx._replace(update=_standard_promotion(tx.update))
    return wrapper


def _exempt_third_party():
    import flax.linen
    import flax.linen.pooling
    import optax

    for name in ("adam", "adamw", "chain"):
        setattr(optax, name, _standard_update(getattr(optax, name)))
    flax.linen.avg_pool = flax.linen.pooling.avg_pool = _standard_promotion(
        flax.linen.pooling.avg_pool)


_exempt_third_party()


# Unoptimised machine code for the tests' own programs, optimised code for training.
# Compilation is most of this suite's time.  A csp_flow_joint and a csp_joint morph at 16x16
# (fresh process, 3 runs): backend compile 4.3-6.8 s at -O1, 1.7-2.1 s at -O0; the morph
# then runs in 0.8-1.1 ms instead of 0.5-0.7 ms, nothing for the tests' small morphs.
# Training is the exception: 1 epoch of the CNN on mnist5k took 7.8 s at -O0 vs 6.6 s at
# -O1 at 28 px and 39.8 vs 28.0 s at 56 px (and with -O0 everywhere the main job's quick
# training ran past 12 CPU-minutes).  So every program compiled in a test process gets
# ``xla_backend_optimization_level=0`` except those compiled while a classifier trains or
# is attacked (``train_classifier``, ``pgd_attack``, ``robust_accuracy``: they run their
# programs many times), which keep QUICK_CODEGEN's -O1.  As with QUICK_CODEGEN, only how
# machine code is made from the same optimised HLO changes, never what is computed; the
# cache key includes the option, so a program made one way is never read back for the
# other; subprocesses run QUICK_CODEGEN; tests/test_lens.py checks that morphs compiled
# here equal those compiled with XLA's defaults; LENS_JAX_TEST_CODEGEN=default turns this
# off too.
_OPTIMISED = threading.local()


def _unoptimised_test_programs():
    if os.environ.get("LENS_JAX_TEST_CODEGEN", "quick") != "quick":
        return
    import lens_jax.adversarial
    import lens_jax.train
    from jax._src import compiler

    plain = compiler.get_compile_options
    level = "xla_backend_optimization_level"

    def get_compile_options(*args, **kwargs):
        options = plain(*args, **kwargs)
        overrides = dict(options.env_option_overrides)
        if not getattr(_OPTIMISED, "depth", 0) and level not in overrides:
            options.env_option_overrides = [*overrides.items(), (level, 0)]
        return options

    def optimised(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            _OPTIMISED.depth = getattr(_OPTIMISED, "depth", 0) + 1
            try:
                return fn(*args, **kwargs)
            finally:
                _OPTIMISED.depth -= 1
        return wrapper

    compiler.get_compile_options = get_compile_options
    for module, name in ((lens_jax.train, "train_classifier"),
                         (lens_jax.adversarial, "pgd_attack"),
                         (lens_jax.adversarial, "robust_accuracy")):
        plain_fn = getattr(module, name)
        wrapped = optimised(plain_fn)
        for m in (lens_jax.train, lens_jax.adversarial):     # and where it is re-exported
            if getattr(m, name, None) is plain_fn:
                setattr(m, name, wrapped)


_unoptimised_test_programs()


def pytest_xdist_make_scheduler(config, log):
    """``make test`` (``-n 2``): tests are balanced one by one, except that a test module
    defining a module-scoped fixture (a trained model, a prepared data set, a browser)
    runs on one worker, so the fixture is built once rather than once per worker.
    (xdist's own ``loadgroup`` cannot do this under pytest 9: it renames node ids.)"""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    shared = {f"tests/{p.name}" for p in (ROOT / "tests").glob("test_*.py")
              if re.search(r"scope=[\"'](module|package)[\"']", p.read_text(encoding="utf-8"))}

    class OneWorkerPerSharedFixture(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            module = nodeid.split("::", 1)[0]
            return module if module in shared else nodeid

    return OneWorkerPerSharedFixture(config, log)


def pytest_runtest_makereport(item, call):
    """Name the fix when a test fails because it asked for float64 without x64."""
    if call.excinfo is not None and "Explicitly requested dtype float64" in str(
            call.excinfo.value):
        item.add_report_section(
            call.when, "hint", "this test uses float64 arrays: mark it @pytest.mark.x64 "
            "(tests/conftest.py runs only marked tests with jax_enable_x64)")


@pytest.fixture(autouse=True)
def x64(request):
    """Float64 for the tests marked ``@pytest.mark.x64`` (and only for them)."""
    if request.node.get_closest_marker("x64") is None:
        yield False
        return
    with jax.enable_x64(True):
        yield True


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One ``LENS_JAX_CACHE`` for the tests that run the studies' ``--quick`` paths (the CLI's
    ``run --quick``, the experiment scripts, the resolution study), shared by the xdist
    workers of this run: the prepared mnist5k data set and the quick 1-epoch models are
    made once per run instead of once per test module (``load_or_train`` holds a lock per
    model, so a second worker waits for the first and loads its model).  Fresh each run."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    path = root / "shared_cache"
    path.mkdir(exist_ok=True)
    return path


def sk_digits(size: int):
    """scikit-learn digits resized to ``size`` x ``size`` in [0, 1], shuffled with seed 0:
    ``((x_train, y_train), (x_test, y_test))`` with 600 / 200 images."""
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    d = sklearn_datasets.load_digits()
    x = jax.image.resize(np.asarray(d.images[:, :, :, None] / 16.0, np.float32),
                         (len(d.images), size, size, 1), "bilinear")
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
