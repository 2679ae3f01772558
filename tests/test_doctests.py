"""The docstring examples of every lens_jax module that has them (``>>>``), private
modules included, run here under the suite's strict JAX configuration (conftest.py).

Modules are found from the package's files, so a new module's examples run without
editing this list; an example that needs a download or minutes of work is marked
``# doctest: +SKIP`` in its docstring.
"""
import doctest
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import pytest

import lens_jax

PACKAGE = Path(lens_jax.__file__).resolve().parent


def _modules_with_examples():
    names = ["lens_jax"] + sorted(m.name for m in pkgutil.walk_packages(
        lens_jax.__path__, "lens_jax.") if m.name != "lens_jax.__main__")
    found = []
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin and spec.origin.endswith(".py") \
                and ">>>" in Path(spec.origin).read_text(encoding="utf-8"):
            found.append(name)
    return found


MODULES = _modules_with_examples()
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def test_examples_are_found():
    assert {"lens_jax", "lens_jax.lens", "lens_jax.pyramid", "lens_jax.domains",
            "lens_jax.schedule", "lens_jax.classifier"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module):
    mod = importlib.import_module(module)
    if hasattr(mod, "__path__"):
        # a package: import its submodules first, so none is added to the namespace
        # while the finder walks it
        for sub in pkgutil.walk_packages(mod.__path__, module + "."):
            if not sub.name.endswith("__main__"):
                importlib.import_module(sub.name)
    tests = [t for t in doctest.DocTestFinder(exclude_empty=True).find(mod, module)
             if t.examples]
    # every example in the file is found (a docstring the finder cannot reach, e.g. of
    # an object whose __module__ is elsewhere, would silently never run)
    source = Path(importlib.util.find_spec(module).origin).read_text(encoding="utf-8")
    written = sum(line.lstrip().startswith(">>>") for line in source.splitlines())
    assert sum(len(t.examples) for t in tests) == written, \
        f"{module}: {written} '>>>' lines, but the doctest finder reaches fewer"
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for t in tests:
        runner.run(t)
    res = runner.summarize(verbose=False)
    assert res.failed == 0, f"{res.failed} of {res.attempted} examples failed in {module}"
