"""Public-API conventions (in the style of dm_pix's api test) and a light import.

Every public function of every public module (``lens_jax.__all__`` and each public module's
``__all__``, public methods of the public classes included) takes its data arguments first
and its options keyword-only: a positional parameter never has a default (``f(x, *, opt=1)``,
never ``f(x, opt=1)``), and no function takes ``*args``.  The docstring examples run in
``test_doctests.py``.
"""
import importlib
import inspect
import os
import pkgutil
import subprocess
import sys
import types

import pytest

import lens_jax as lj

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# every public module: no path component starts with "_" (walk_packages imports only the
# subpackages, to list their modules)
PUBLIC_MODULES = ["lens_jax"] + sorted(
    m.name for m in pkgutil.walk_packages(lj.__path__, "lens_jax.")
    if not any(part.startswith("_") for part in m.name.split(".")))

# Signatures that break the rule above and stay, each with its reason ("module:qualname").
# Keep it short; a stale entry (the function was fixed or removed) fails the test too.
ALLOWED = {
    # Python's entry-point convention: main(argv=None) reads sys.argv, main(argv) a list
    "lens_jax.cli:main": "argv is the data; None means sys.argv",
    # which split of the data set is part of the data's name, as in tfds's (name, split);
    # passed positionally throughout (data.load("mnist5k", "test"))
    "lens_jax.data:load": "split names the data; 'train' by default",
}


def _public_names(mod):
    return list(getattr(mod, "__all__", None)
                or [n for n in vars(mod) if not n.startswith("_")])


def _functions(modname):
    """``(qualified name, function)`` for the public functions the module defines or
    exports, and the public methods of its public classes."""
    mod = importlib.import_module(modname)
    out = {}
    for name in _public_names(mod):
        obj = getattr(mod, name)
        home = getattr(obj, "__module__", None) or ""
        # a re-exported name is checked in its own module (if that one is public)
        if home != modname and (home in PUBLIC_MODULES or not home.startswith("lens_jax")):
            continue
        if isinstance(obj, types.FunctionType):
            out[f"{obj.__module__}:{obj.__qualname__}"] = obj
        elif isinstance(obj, type):
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                if isinstance(member, (classmethod, staticmethod)):
                    member = member.__func__
                if isinstance(member, types.FunctionType):
                    out[f"{obj.__module__}:{member.__qualname__}"] = member
    return out


def _violation(fn):
    """Why ``fn``'s signature breaks the convention, or None."""
    params = list(inspect.signature(fn).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    defaulted = [p.name for p in positional if p.default is not p.empty]
    star = [p.name for p in params if p.kind is p.VAR_POSITIONAL]
    problems = []
    if defaulted:
        problems.append(f"options {defaulted} can be passed positionally (make them "
                        f"keyword-only after '*')")
    if star:
        problems.append(f"takes *{star[0]}")
    if any(p.name == "rng" for p in params):
        problems.append("names its PRNG key 'rng' (JAX says 'key')")
    return "; ".join(problems) or None


def test_public_modules_found():
    assert {"lens_jax.lens", "lens_jax.pyramid", "lens_jax.domains", "lens_jax.train",
            "lens_jax.metrics"} <= set(PUBLIC_MODULES)


def test_all_names_exist_and_are_public():
    assert len(set(lj.__all__)) == len(lj.__all__), "duplicates in __all__"
    for name in lj.__all__:
        assert not name.startswith("_"), name
        assert hasattr(lj, name), name


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_module_all_is_public_and_documented(module):
    mod = importlib.import_module(module)
    assert inspect.getdoc(mod), f"{module} has no docstring"
    assert hasattr(mod, "__all__"), f"{module} has no __all__"
    assert len(set(mod.__all__)) == len(mod.__all__), f"duplicates in {module}.__all__"
    for name in mod.__all__:
        assert not name.startswith("_"), f"{module}.__all__ lists the private {name}"
        assert hasattr(mod, name), f"{module}.__all__ lists {name}, which it lacks"
        obj = getattr(mod, name)
        if isinstance(obj, (types.FunctionType, type)) and obj.__module__.startswith("lens_jax"):
            assert inspect.getdoc(obj), f"{module}.{name} has no docstring"


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_data_first_options_keyword_only(module):
    """Every public function: data arguments first (positional, no defaults), options
    keyword-only."""
    bad = {name: why for name, fn in _functions(module).items()
           if (why := _violation(fn)) and name not in ALLOWED}
    assert not bad, "\n" + "\n".join(f"{n}: {w}" for n, w in sorted(bad.items()))


def test_allow_list_is_current():
    """Every allowed exception still exists and still breaks the rule (else drop it)."""
    found = {}
    for module in PUBLIC_MODULES:
        found.update(_functions(module))
    stale = [n for n in ALLOWED if n not in found or _violation(found[n]) is None]
    assert not stale, f"drop these from ALLOWED: {stale}"


def test_the_check_sees_violations():
    def good(x, y, *, opt=1):
        """ok"""

    def positional_option(x, opt=1):
        """not ok"""

    def star(x, *rest):
        """not ok"""

    assert _violation(good) is None
    assert "['opt']" in _violation(positional_option)
    assert "*rest" in _violation(star)


def test_lens_signatures_take_classifier_and_image_positionally():
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
    with pytest.raises(AttributeError):
        lj.no_such_name
