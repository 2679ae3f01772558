"""Public-API conventions (in the style of dm_pix's api test), a light import, and the
library's docstring examples."""
import doctest
import importlib
import inspect
import os
import subprocess
import sys
import types

import pytest

import lens_jax as lj

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_all_names_exist_and_are_public():
    assert len(set(lj.__all__)) == len(lj.__all__), "duplicates in __all__"
    for name in lj.__all__:
        assert not name.startswith("_"), name
        assert hasattr(lj, name), name


def test_public_callables_and_classes_have_docstrings():
    for name in lj.__all__:
        obj = getattr(lj, name)
        if isinstance(obj, (types.FunctionType, type, types.ModuleType)):
            assert inspect.getdoc(obj), f"lens_jax.{name} has no docstring"


@pytest.mark.parametrize("module", ["lens", "classifier", "schedule", "domains"])
def test_module_all_is_public_and_documented(module):
    mod = importlib.import_module(f"lens_jax.{module}")
    for name in mod.__all__:
        assert not name.startswith("_")
        obj = getattr(mod, name)
        if isinstance(obj, (types.FunctionType, type)):
            assert inspect.getdoc(obj), f"lens_jax.{module}.{name} has no docstring"
            if isinstance(obj, types.FunctionType):
                # options are keyword-only after the leading data arguments
                sig = inspect.signature(obj)
                assert all(p.kind is not p.VAR_POSITIONAL for p in sig.parameters.values())


def test_lens_signatures_are_keyword_only():
    for fn in (lj.morph, lj.morph_batch, lj.prepare_edit):
        params = list(inspect.signature(fn).parameters.values())
        positional = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
        assert positional == [params[0].name, params[1].name], (fn.__name__, positional)


def test_import_is_light():
    code = ("import lens_jax, sys; heavy = ['matplotlib', 'PIL', 'optax', 'tensorflow_datasets', "
            "'tensorflow', 'tqdm', 'flax', 'torch', 'orbax']; "
            "print(' '.join(m for m in heavy if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"import lens_jax loaded: {out.stdout.strip()}"


def test_lazy_names_load_on_use():
    assert callable(lj.compare_domains)
    assert lj.DOMAIN_LABELS["csp_phase"] == lj.REGISTRY["csp_phase"].label
    assert lj.metrics.__name__ == "lens_jax.metrics"
    assert callable(lj.sweep)                       # the function, not the module
    with pytest.raises(AttributeError):
        lj.no_such_name


# modules whose examples run here (fast, no data downloads); sweep/data/train/pretrained
# are exercised by their own tests
DOCTEST_MODULES = ["lens_jax", "lens_jax.lens", "lens_jax.classifier", "lens_jax.schedule",
                   "lens_jax.domains", "lens_jax.pyramid", "lens_jax.models",
                   "lens_jax.compare", "lens_jax.metrics", "lens_jax.warp"]


@pytest.mark.parametrize("module", DOCTEST_MODULES)
def test_docstring_examples_run(module):
    mod = importlib.import_module(module)
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                          verbose=False, report=True)
    assert res.failed == 0, f"{res.failed} of {res.attempted} examples failed in {module}"
