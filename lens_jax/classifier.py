"""Classifiers as ``(apply, params)``: parameters are data, never code.

Every entry point that takes a classifier (:func:`lens_jax.morph`,
:func:`lens_jax.morph_batch`, :func:`lens_jax.prepare_edit`,
:func:`lens_jax.metrics.transfer`, :func:`lens_jax.compare.compare_domains`) normalises
it with :func:`as_classifier` to a :class:`Classifier` ``(apply, params)``.  ``apply``
is static (hashable; it keys the compiled program) and ``params`` is a pytree passed to
the compiled program as an argument, so

* new parameter values of the same shapes reuse the compiled program;
* a flax ``nnx.Module`` updated in place (``net.fc.kernel.value = ...``) is seen on
  the next call (the module is split into graph and state on every call);
* a new ``lambda x: model.apply(params, x)`` made by the same line of code (new
  weights, a new closure) does not recompile: a plain callable is
  traced once per call (``jax.make_jaxpr``, milliseconds) and the arrays it closes
  over are hoisted out of the program as its ``params``; the program is keyed by the
  traced computation (its jaxpr text and shapes) and where the function's code was
  defined, not by the function object.

What is cached for a plain callable: programs are shared by the callables made by the
same code (file, line, bytecode) whose trace on a ``(1, H, W, C)`` batch prints the same
jaxpr.  Custom derivative rules
(``custom_jvp``/``custom_vjp``) appear in a jaxpr by name only, so a rule that closes
over arrays of its own is compiled in from the first such callable.  A callable whose
closed-over arrays sit inside a nested ``jax.jit`` cannot be hoisted; it is keyed by a
fingerprint of those arrays instead (see :func:`fold_params`), so changed weights are
still noticed (one compile per distinct set of weights).

What a closure freezes, exactly.  A plain callable (``lambda x: model((x - m) / s)``)
is traced afresh on every call of a lens_jax entry point (``morph``, ``morph_batch``,
``sweep``, ``predict``, ``metrics.transfer``, ...): every array it reads at that moment
(its closed-over arrays, an nnx module's weights) becomes a traced parameter, so an
update between two calls is seen.  Inside a function *you* transform (``jax.jit``,
``jax.vmap``, ``jax.grad``), the closure is traced when your function is traced, and
what it reads is frozen there, as for any ``jax.jit``: a jitted
``lambda img: lj.morph(closure, img, ...)`` keeps the weights of its first trace.  To
see updates there, pass the parameters as an argument of your function
(``jax.jit(lambda params, img: lj.morph((apply_fn, params), img, ...))``, or an nnx
``State`` with ``nnx.merge``).

Preprocessing without closures: :func:`with_preprocess` attaches a :class:`Preprocess`
(per-channel ``mean``/``std`` as pytree leaves, a static ``size`` to resize to and a
static ``channels_first`` for NCHW models) to any classifier form; the result is
normalised on every call like the form it wraps (an nnx module updated in place is
seen), with the preprocessing arrays traced parameters too.

Errors: a classifier that JAX cannot trace (NumPy on its input), an nnx module left in
training mode, and one that ignores the batch size of its input get a message that says
so (see :func:`checked_logits`).

Only ``jax`` and ``numpy`` are imported here (flax is recognised by duck typing).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import types
import weakref
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import ClosedJaxpr, Jaxpr

from ._batching import map_chunks

__all__ = ["Classifier", "as_classifier", "carries_params", "fold_params",
           "params_fingerprint", "guarded_softmax", "checked_logits", "predict",
           "predict_proba", "Preprocess", "WithPreprocess", "with_preprocess",
           "ClassifierError", "trace_with_consts"]


class Classifier(NamedTuple):
    """A classifier as ``apply(params, images) -> logits`` with ``params`` a pytree.

    ``apply`` is static (hashable: it keys the compiled program); ``params`` are traced
    arguments, so new values of the same shapes reuse the compiled program and are never
    baked into it as constants.  Build one with :func:`as_classifier`.

    >>> import jax.numpy as jnp
    >>> clf = Classifier(lambda p, x: x.reshape(len(x), -1) @ p, jnp.ones((4, 2)))
    >>> clf(jnp.ones((3, 2, 2, 1))).shape
    (3, 2)
    """
    apply: Callable[[Any, jax.Array], jax.Array]
    params: Any

    def __call__(self, images: jax.Array) -> jax.Array:
        return self.apply(self.params, images)


@dataclasses.dataclass(frozen=True)
class _CallApply:
    """``apply(params, x) = fn(x)`` for a callable with no separable parameters."""
    fn: Callable

    def __call__(self, params, x):
        with _explained():
            return self.fn(x)


@dataclasses.dataclass(frozen=True)
class _NNXApply:
    """``apply(state, x) = nnx.merge(graphdef, state)(x)`` for a flax ``nnx.Module``."""
    graphdef: Any

    def __call__(self, state, x):
        from flax import nnx       # flax is loaded when an nnx module is given
        with _explained():
            return nnx.merge(self.graphdef, state)(x)


@dataclasses.dataclass(frozen=True)
class _LinenApply:
    """``apply(variables, x) = module.apply(variables, x)``; equal modules share programs."""
    module: Any

    def __call__(self, variables, x):
        return self.module.apply(variables, x)


@dataclasses.dataclass(frozen=True, eq=False)
class _JaxprApply:
    """A plain callable with its closed-over arrays hoisted as ``params``.

    Equal (and so sharing compiled programs) when the traced computations print the
    same: ``key`` is the jaxpr text at a ``(1, H, W, C)`` batch plus the input and
    parameter shapes.  Other batch sizes re-trace the first callable at that size and
    feed it the hoisted params by position (when the arrays line up: same count and
    shapes), else evaluate the batch-1 program under ``vmap``.
    """
    key: str
    jaxpr: Any = dataclasses.field(compare=False)
    fn: Callable = dataclasses.field(compare=False)
    in_aval: Any = dataclasses.field(compare=False)
    traces: dict = dataclasses.field(compare=False, default_factory=dict)

    def __eq__(self, other):
        return isinstance(other, _JaxprApply) and self.key == other.key

    def __hash__(self):
        return hash(self.key)

    def __call__(self, params, x):
        shape = tuple(x.shape)
        if shape == tuple(self.in_aval.shape):
            return jax.core.eval_jaxpr(self.jaxpr, list(params), x)[0]
        if shape[1:] != tuple(self.in_aval.shape[1:]):
            raise ValueError(f"this classifier was traced for images {self.in_aval.shape[1:]}; "
                             f"got a batch of shape {shape}")
        key = str(jax.typeof(x))                 # shape, dtype and varying axes
        if key not in self.traces:
            cj = trace_with_consts(self.fn, (x,))
            same = (len(cj.consts) == len(params) and all(
                jnp.shape(a) == jnp.shape(b) and jnp.result_type(a) == jnp.result_type(b)
                for a, b in zip(cj.consts, params)))
            self.traces[key] = cj.jaxpr if same and len(cj.out_avals) == 1 else None
        jaxpr = self.traces[key]
        if jaxpr is not None:
            return jax.core.eval_jaxpr(jaxpr, list(params), x)[0]
        one = self.jaxpr
        return jax.vmap(lambda xi: jax.core.eval_jaxpr(one, list(params), xi[None])[0][0])(x)


@dataclasses.dataclass(frozen=True, eq=False)
class _FoldedApply:
    """``apply`` with its params compiled in as constants; equal (sharing a compiled
    program) when ``ident`` is: ``(apply, fingerprint of params)`` or, for a callable
    whose arrays could not be hoisted, ``(jaxpr text, fingerprint of its arrays)``."""
    apply: Any
    params: Any
    ident: tuple

    def __eq__(self, other):
        return isinstance(other, _FoldedApply) and self.ident == other.ident

    def __hash__(self):
        return hash(self.ident)

    def __call__(self, params, x):
        return self.apply(self.params, x)


def _consts_apart():
    """A context in which traced closures keep their closed-over arrays in
    ``ClosedJaxpr.consts``.  JAX's newer constant handling
    (``jax_use_simplified_jaxpr_constants``) writes them into the jaxpr's equations
    instead, where :func:`_hoist` would not find them and the printed jaxpr would not
    show their values: two closures with different weights would then share one
    compiled program (the first one's weights).  So every trace that hoists arrays or
    keys programs by jaxpr text runs in this context."""
    state = getattr(jax._src.config, "use_simplified_jaxpr_constants", None)  # JAX >= 0.7
    return state(False) if state is not None else contextlib.nullcontext()


def trace_with_consts(fn: Callable, args: tuple) -> ClosedJaxpr:
    """``jax.make_jaxpr(fn)(*args)`` with the closed-over arrays in ``.consts`` whatever
    JAX's constant handling (see :func:`_consts_apart`)."""
    with _consts_apart():
        return jax.make_jaxpr(fn)(*args)


def _is_nnx_module(obj: Any) -> bool:
    return any(c.__module__.startswith("flax.nnx") and c.__name__ == "Module"
               for c in type(obj).__mro__)


def _nested_consts(jaxpr) -> list:
    """The constants carried by sub-jaxprs of ``jaxpr`` (e.g. a jitted closure's
    arrays): :func:`jax.make_jaxpr` does not hoist those."""
    found: list = []

    def visit(v) -> None:
        if isinstance(v, ClosedJaxpr):
            found.extend(v.consts)
            visit(v.jaxpr)
        elif isinstance(v, Jaxpr):
            for e in v.eqns:
                for p in e.params.values():
                    visit(p)
        elif isinstance(v, (tuple, list)):
            for p in v:
                visit(p)
    visit(jaxpr)
    return found


_MIX = np.uint32(0x9E3779B1)


@jax.jit
def _checksum(leaves):
    """Two 32-bit position-weighted sums of every leaf's bits (any change of one word
    changes both; see :func:`params_fingerprint`)."""
    h1 = jnp.uint32(0)
    h2 = jnp.uint32(0x85EBCA6B)
    for leaf in leaves:
        a = jnp.asarray(leaf)
        if jnp.iscomplexobj(a):
            a = jnp.stack([jnp.real(a), jnp.imag(a)])
        if a.dtype == jnp.bool_:
            w = a.astype(jnp.uint32).ravel()
        elif a.dtype.itemsize < 4:
            u = jnp.uint8 if a.dtype.itemsize == 1 else jnp.uint16
            w = jax.lax.bitcast_convert_type(a, u).astype(jnp.uint32).ravel()
        else:
            w = jax.lax.bitcast_convert_type(a, jnp.uint32).ravel()
        w = w ^ (w >> 16)
        i = jnp.arange(w.size, dtype=jnp.uint32)
        h1 = h1 * _MIX + jnp.sum(w * (2 * i + 1))
        h2 = h2 * jnp.uint32(0x27D4EB2F) + jnp.sum(
            (w * _MIX) * (2 * (i ^ jnp.uint32(0x5bd1e995)) + 1))
    return h1, h2


def params_fingerprint(params: Any) -> tuple:
    """A cheap fingerprint of a parameter pytree: its structure, shapes, dtypes and a
    64-bit checksum of the values (computed on device).  Changing any single array
    element always changes it; other changes collide with probability about 2**-64.

    >>> import jax.numpy as jnp
    >>> params_fingerprint({"w": jnp.ones(3)}) == params_fingerprint({"w": jnp.ones(3)})
    True
    >>> params_fingerprint({"w": jnp.ones(3)}) == params_fingerprint({"w": jnp.zeros(3)})
    False
    """
    leaves, treedef = jax.tree.flatten(params)
    avals = tuple((tuple(jnp.shape(l)), str(jnp.result_type(l))) for l in leaves)
    if not leaves:
        return (treedef, avals)
    # jax arrays are immutable: the same array objects have the same values.  The cache
    # holds weak references only (it never keeps a parameter set alive: a few bytes per
    # entry); a reference that no longer resolves to the same object is a miss, so a
    # reused id is never mistaken for the old array.  numpy arrays are mutable and
    # always checksummed.
    ids = tuple(id(l) for l in leaves)
    cacheable = all(isinstance(l, jax.Array) for l in leaves)
    hit = _FINGERPRINTS.get(ids) if cacheable else None
    if hit is not None and all(r() is l for r, l in zip(hit[0], leaves)):
        return hit[1]
    h1, h2 = _checksum(leaves)
    fp = (treedef, avals, int(h1), int(h2))
    if cacheable:
        try:
            refs = [weakref.ref(l) for l in leaves]
        except TypeError:              # an array type without weak references
            return fp
        if len(_FINGERPRINTS) >= _FINGERPRINTS_MAX:
            _FINGERPRINTS.pop(next(iter(_FINGERPRINTS)))
        _FINGERPRINTS[ids] = (refs, fp)
    return fp


#: fingerprints of recently seen parameter sets, by the ids of their leaves (weak
#: references: the arrays are never kept alive by this cache)
_FINGERPRINTS: dict = {}
_FINGERPRINTS_MAX = 64


def fold_params(model: Any) -> Classifier:
    """Opt-in: a :class:`Classifier` whose parameters are compiled into the program as
    constants (XLA can then pre-pack the weights), keyed by :func:`params_fingerprint`.

    Changed weights are noticed (a new fingerprint compiles a new program); the price is
    one compilation per distinct set of weights and the weights held by the compile
    cache.  Never the default: use it for many calls with the same weights where
    ``benchmarks/bench_lens.py`` shows it helps on your machine.

    >>> import jax.numpy as jnp
    >>> clf = fold_params((lambda p, x: x.reshape(len(x), -1) @ p, jnp.ones((4, 2))))
    >>> clf.params, clf(jnp.ones((1, 2, 2, 1))).tolist()
    ((), [[4.0, 4.0]])
    """
    clf = as_classifier(model)
    if isinstance(clf.apply, _FoldedApply):
        return clf
    if any(isinstance(l, jax.core.Tracer) for l in jax.tree.leaves(clf.params)):
        return clf                      # under a caller's trace: nothing to fold
    ident = (clf.apply, params_fingerprint(clf.params))
    return Classifier(_FoldedApply(clf.apply, clf.params, ident), ())


def _code_identity(fn: Any, _depth: int = 0) -> str:
    """Where ``fn``'s code was defined (file, line, name and a hash of its bytecode), and
    the same for every function it closes over or binds (``lambda x: f(x, w)``,
    ``functools.partial(f, w=w)``).

    Part of a plain callable's program key beside its batch-1 jaxpr: two different
    functions can trace to the same program at batch 1 and differ at other batch sizes
    (``x[:1].reshape(1, -1) @ w`` against ``x.reshape(len(x), -1) @ w``: the slice
    vanishes at batch 1), and the program for another batch size re-traces the first
    function of a key.  New closures made by the same code around the same functions
    (the same ``lambda`` called with new weights) still share programs."""
    inner = []                # functions bound by partials / closed over, keyed too
    for _ in range(8):        # partials, jitted / wrapped functions, methods, objects
        if isinstance(fn, functools.partial):
            inner += [v for v in (*fn.args, *fn.keywords.values()) if _is_function(v)]
            fn = fn.func
        elif hasattr(fn, "__wrapped__"):
            fn = fn.__wrapped__
        elif hasattr(fn, "__func__"):
            fn = fn.__func__
        elif not hasattr(fn, "__code__") and hasattr(type(fn).__call__, "__code__"):
            fn = type(fn).__call__
        else:
            break
    code = getattr(fn, "__code__", None)
    if code is None:
        return f"{type(fn).__module__}.{type(fn).__qualname__}"
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            v = cell.cell_contents
        except ValueError:        # an empty cell (a name not yet bound)
            continue
        if _is_function(v) and v is not fn:
            inner.append(v)
    ident = (f"{code.co_filename}:{code.co_firstlineno}:"
             f"{getattr(code, 'co_qualname', code.co_name)}:"
             f"{hashlib.sha256(code.co_code).hexdigest()[:12]}")
    if inner and _depth < 4:
        ident += "(" + ",".join(_code_identity(v, _depth + 1) for v in inner) + ")"
    return ident


def _is_function(v: Any) -> bool:
    """A Python function, method, partial or jitted function (not a class, module or
    array): what :func:`_code_identity` follows into closures."""
    return (isinstance(v, (types.FunctionType, types.MethodType, functools.partial))
            or (callable(v) and hasattr(v, "__wrapped__") and not isinstance(v, type)))


def _hoist(fn: Callable, example) -> Classifier:
    """Trace ``fn`` on ``example`` (a ``(1, H, W, C)`` array, tracer or
    ShapeDtypeStruct; a tracer keeps its sharding / varying-axes type) and hoist the
    arrays it closes over as params.

    ``make_jaxpr`` caches traces by the function object (as ``jax.jit`` does), which
    would freeze the closed-over arrays at the first trace; a fresh wrapper per call
    reads them afresh (a module updated in place, a dict entry replaced)."""
    with _explained():
        cj = trace_with_consts(lambda x: fn(x), (example,))
    if len(cj.out_avals) != 1:
        raise ValueError("logits_fn must return one array of logits (N, num_classes); "
                         f"it returned {len(cj.out_avals)} outputs")
    aval = cj.in_avals[0]
    nested = _nested_consts(cj.jaxpr)
    if nested:
        # arrays inside a nested jit: compile them in, keyed by their fingerprint
        ident = (_code_identity(fn), str(aval), str(cj.jaxpr),
                 params_fingerprint(list(cj.consts) + nested))
        return Classifier(_FoldedApply(_CallApply(fn), (), ident), ())
    consts = list(cj.consts)
    key = "\n".join([_code_identity(fn), str(aval), str(cj.jaxpr),
                     repr([(jnp.shape(c), str(jnp.result_type(c))) for c in consts])])
    return Classifier(_JaxprApply(key, cj.jaxpr, fn, aval), tuple(consts))


def carries_params(model: Any) -> bool:
    """Whether ``model`` is a form with separate parameters (a :class:`Classifier`, a
    pair ``(apply_fn, params)``, a flax ``nnx.Module`` or a
    :func:`lens_jax.models.make_logits_fn` function), as opposed to a plain callable.

    >>> carries_params(lambda x: x), carries_params((lambda p, x: x, ()))
    (False, True)
    """
    return (isinstance(model, (Classifier, tuple, WithPreprocess)) or _is_nnx_module(model)
            or isinstance(getattr(model, "__lens_classifier__", None), Classifier))


def _is_linen_module(obj: Any) -> bool:
    return any(c.__module__.startswith("flax.linen") and c.__name__ == "Module"
               for c in type(obj).__mro__)


def as_classifier(model: Any, *, example: Any = None) -> Classifier:
    """Normalise a classifier to :class:`Classifier` ``(apply, params)``.

    Accepts a :class:`Classifier`; a pair ``(apply_fn, params)`` meaning
    ``apply_fn(params, images)`` (e.g. a linen ``(module.apply, variables)``); a flax
    ``nnx.Module`` (split into graph and state on every call, so a module updated in
    place is seen); a function from :func:`lens_jax.models.make_logits_fn`; or any
    callable ``logits_fn(images)``.

    Args:
      model: the classifier, in any of the forms above.
      example: for a plain callable, an input batch ``(1, H, W, C)`` (array or
        ``jax.ShapeDtypeStruct``): the callable is traced on it and the arrays it closes
        over become ``params`` (see the module docstring).  Without ``example`` a plain
        callable is wrapped as is (its closed-over arrays are compile-time constants,
        programs keyed by the function object).

    With ``example`` given and nothing traced, the classifier is also checked once per
    program and shapes (``jax.eval_shape`` on a batch of 2): it must be traceable by JAX,
    return float logits ``(N, num_classes)`` and keep the batch size of its input.

    Raises:
      TypeError: ``model`` is none of the accepted forms, or is not traceable by JAX.
      ValueError: (with ``example``) it ignores the batch size, returns non-float
        logits, or is an nnx module in training mode (call ``model.eval()``).

    >>> import jax.numpy as jnp
    >>> clf = as_classifier((lambda p, x: x.reshape(len(x), -1) @ p, jnp.ones((4, 2))))
    >>> clf(jnp.ones((3, 2, 2, 1))).shape
    (3, 2)
    >>> w = jnp.ones((4, 2))
    >>> clf = as_classifier(lambda x: x.reshape(len(x), -1) @ w,
    ...                     example=jnp.zeros((1, 2, 2, 1)))
    >>> clf.params[0] is w
    True
    """
    clf = _normalise(model, example)
    if example is not None:
        _check_batched(clf, example)
    return clf


def _normalise(model: Any, example: Any) -> Classifier:
    """:func:`as_classifier` without the check."""
    if isinstance(model, Classifier):
        return model
    if isinstance(model, WithPreprocess):
        pre = model.preprocess
        inner_example = None if example is None else jax.eval_shape(pre, example)
        inner = as_classifier(model.model, example=inner_example)
        return Classifier(_PreprocessedApply(inner.apply), (inner.params, pre))
    if isinstance(model, tuple):
        if len(model) != 2 or not callable(model[0]):
            raise TypeError("a classifier tuple must be (apply_fn, params) with "
                            f"apply_fn(params, images) -> logits; got a {len(model)}-tuple")
        apply_fn, params = model
        module = getattr(apply_fn, "__self__", None)
        if module is not None and _is_linen_module(module) \
                and getattr(apply_fn, "__name__", "") == "apply":
            # a bound ``module.apply``: bound methods compare their module by identity, so
            # key the program by the module's value (equal modules share programs)
            return Classifier(_LinenApply(module), params)
        return Classifier(apply_fn, params)
    if _is_nnx_module(model):
        from flax import nnx       # flax is loaded when an nnx module is given
        graphdef, state = nnx.split(model)
        return Classifier(_NNXApply(graphdef), state)
    made = getattr(model, "__lens_classifier__", None)
    if isinstance(made, Classifier):
        return made
    if callable(model):
        if example is None:
            return Classifier(_CallApply(model), ())
        return _hoist(model, example)
    raise TypeError("model must be a callable logits_fn(images), a pair (apply_fn, params), "
                    f"a flax nnx.Module or a Classifier; got {type(model).__name__}")


# ----------------------------------------------------------------------------------
# applying a classifier: the checks, the guarded softmax, the one jit cache
# ----------------------------------------------------------------------------------

def guarded_softmax(logits: jax.Array, *, where: Any = None) -> tuple[jax.Array, jax.Array]:
    """Softmax over the last axis that never invents a probability: ``(probs, ok)``.

    ``ok = all(isfinite(logits), axis=-1)`` (and ``where``, a boolean mask of shape
    ``logits.shape[:-1]``, when given); ``probs`` is the softmax where ``ok`` and NaN in
    every entry of a row where not (a NaN or infinite logit has no defined softmax; the
    finite-looking value ``jax.nn.softmax`` would give is never returned).  The one
    softmax of lens_jax: every module calls this.  Pure and jit/vmap/grad-safe (the
    gradient is finite where ``ok``).

    >>> import jax.numpy as jnp
    >>> p, ok = guarded_softmax(jnp.array([[0.0, 0.0], [1.0, jnp.nan]]))
    >>> p.tolist(), ok.tolist()
    ([[0.5, 0.5], [nan, nan]], [True, False])
    """
    logits = jnp.asarray(logits)
    if logits.ndim < 1:
        raise ValueError(f"logits must have a class axis; got shape {logits.shape}")
    if not jnp.issubdtype(logits.dtype, jnp.floating):
        raise ValueError(f"logits must be floating point; got {logits.dtype}")
    ok = jnp.all(jnp.isfinite(logits), axis=-1)
    if where is not None:
        ok = ok & jnp.asarray(where, bool).reshape(ok.shape)
    probs = jax.nn.softmax(jnp.where(ok[..., None], logits, 0), axis=-1)
    return jnp.where(ok[..., None], probs, jnp.nan), ok


_CHECKED: dict = {}


def _check_batched(clf: Classifier, example: Any) -> None:
    """Once per (apply, parameter shapes, image shape): the classifier maps a batch of 2
    to float logits (2, K) (abstractly: ``jax.eval_shape``).  Skipped under a trace."""
    leaves, treedef = jax.tree.flatten(clf.params)
    if isinstance(example, jax.core.Tracer) or any(isinstance(l, jax.core.Tracer)
                                                   for l in leaves):
        return
    try:
        key = (clf.apply, treedef, tuple((jnp.shape(l), str(jnp.result_type(l)))
                                         for l in leaves),
               tuple(example.shape), str(example.dtype))
        hash(key)
    except TypeError:
        key = None
    if key is not None and key in _CHECKED:
        return
    two = jax.ShapeDtypeStruct((2,) + tuple(example.shape[1:]), example.dtype)
    with _explained():
        out = jax.eval_shape(clf.apply, clf.params, two)
    _check_logits(out, two.shape)
    if key is not None:
        if len(_CHECKED) > 256:
            _CHECKED.clear()
        _CHECKED[key] = True


_UNTRACEABLE = ("TracerArrayConversionError", "ConcretizationTypeError",
                "TracerBoolConversionError", "TracerIntegerConversionError")


@contextlib.contextmanager
def _explained():
    """Re-raise the classifier mistakes JAX and flax report obscurely with a message
    that names the fix (see :func:`_explain`)."""
    try:
        yield
    except ClassifierError:
        raise
    except Exception as e:                                  # re-raised, explained
        better = _explain(e)
        if better is None:
            raise
        raise better from e


class ClassifierError(TypeError, ValueError):
    """A classifier JAX cannot use as given (not traceable, an nnx module in training
    mode), with the fix in its message.  Both a TypeError and a ValueError."""


def _explain(err: Exception) -> Exception | None:
    """A clear error for the classifier mistakes JAX and flax report obscurely."""
    name = type(err).__name__
    if name in _UNTRACEABLE:
        return ClassifierError(
            "the classifier must be traceable with JAX: it converted a traced array to a "
            f"NumPy/Python value ({name}: e.g. np.asarray, .numpy(), float() or an `if` on "
            "an array inside the classifier).  Write it with jax.numpy operations (the "
            "lens differentiates it), or wrap NumPy code in jax.pure_callback (no "
            "gradient).")
    if name == "TraceContextError" and type(err).__module__.startswith("flax"):
        return ClassifierError(
            "the flax nnx classifier updates its state while called (a BatchNorm or "
            "Dropout in training mode): call model.eval() before passing it to lens_jax "
            f"(and model.train() to resume training).  flax said: {str(err).splitlines()[0]}")
    return None


def checked_logits(classifier: Any, images: jax.Array) -> jax.Array:
    """``classifier``'s logits ``(N, K)`` on ``images`` ``(N, H, W, C)``, checked.

    Works eagerly and under any trace (``jit``, ``vmap``, ``grad``).  Accepts every form
    :func:`as_classifier` does (a plain callable is called as is).

    Raises:
      TypeError: the classifier is not traceable with JAX (it calls NumPy on its input).
      ValueError: an nnx module in training mode (call ``model.eval()``); logits that are
        not floating point or not ``(N, num_classes)`` -- e.g. a classifier that ignores
        the batch size of its input.

    >>> import jax.numpy as jnp
    >>> checked_logits(lambda x: x.reshape(len(x), -1), jnp.ones((3, 1, 2, 1))).shape
    (3, 2)
    """
    clf = as_classifier(classifier)
    images = jnp.asarray(images)
    with _explained():
        z = clf.apply(clf.params, images)
    return _check_logits(z, images.shape)


def _check_logits(z: Any, shape: tuple) -> jax.Array:
    n = shape[0]
    zs = getattr(z, "shape", None)
    if zs is None or len(zs) != 2 or zs[0] != n:
        got = zs if zs is not None else type(z).__name__
        raise ValueError(
            f"the classifier must map a batch (N, H, W, C) to logits (N, num_classes); for "
            f"images of shape {tuple(shape)} it returned {got}.  It must keep the batch size "
            "of its input (e.g. x.reshape(len(x), -1), not x.reshape(1, -1) or a fixed "
            "batch size).")
    if not jnp.issubdtype(z.dtype, jnp.floating):
        raise ValueError(f"the classifier returned {z.dtype} logits; return float logits "
                         "(integer outputs have no gradient)")
    return z


def _apply_unjitted(apply, params, x):
    clf = Classifier(apply, params)
    return checked_logits(clf, x)


_apply_jit = jax.jit(_apply_unjitted, static_argnums=0)


def _prepare(classifier: Any, images: Any) -> tuple[Classifier, Any]:
    if not isinstance(images, (np.ndarray, jax.Array)):
        images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be a batch (N, H, W, C); got shape {images.shape}")
    example = jax.ShapeDtypeStruct((1,) + tuple(images.shape[1:]), images.dtype)
    with _explained():
        clf = as_classifier(classifier, example=example)
    return clf, images


def predict(classifier: Any, images: Any, *, batch_size: int | None = None) -> jax.Array:
    """Logits ``(N, K)`` of any classifier form on ``images`` ``(N, H, W, C)``.

    The one way lens_jax applies a classifier outside a morph: the classifier is
    normalised by :func:`as_classifier` (a plain callable is batched,
    ``f(images (N, H, W, C)) -> (N, K)``, and traced on every call so the arrays it
    closes over are read afresh), applied by one jitted program per ``apply`` (new
    parameter values reuse it), checked by :func:`checked_logits`, and run in chunks
    of ``batch_size`` images (the last one padded: one compile; all dispatched before
    any is read back).  Usable under ``jit``/``grad`` too.

    Args:
      classifier: any form :func:`as_classifier` accepts.
      images: ``(N, H, W, C)`` (NumPy or JAX).
      batch_size: images per call; None: all at once.

    Raises:
      ValueError / TypeError: see :func:`checked_logits`; ``images`` not 4-D;
        ``batch_size`` not a positive integer.

    >>> import jax.numpy as jnp
    >>> w = jnp.ones((4, 2))
    >>> predict(lambda x: x.reshape(len(x), -1) @ w, jnp.ones((5, 2, 2, 1)),
    ...         batch_size=2).tolist()[-1]
    [4.0, 4.0]
    """
    clf, images = _prepare(classifier, images)
    try:
        hash(clf.apply)
        fn = _apply_jit
    except TypeError:                        # an unhashable apply: one program per call
        fn = jax.jit(_apply_unjitted, static_argnums=0)
    apply, params = clf.apply, clf.params
    return map_chunks(lambda x: fn(apply, params, x), (images,), chunk=batch_size)


def predict_proba(classifier: Any, images: Any, *,
                  batch_size: int | None = None) -> jax.Array:
    """:func:`guarded_softmax` of :func:`predict`: probabilities ``(N, K)``, NaN in the
    rows whose logits are not finite.

    >>> import jax.numpy as jnp
    >>> predict_proba(lambda x: x.reshape(len(x), -1), jnp.zeros((1, 1, 2, 1))).tolist()
    [[0.5, 0.5]]
    """
    return guarded_softmax(predict(classifier, images, batch_size=batch_size))[0]


# ----------------------------------------------------------------------------------
# preprocessing as part of the pytree
# ----------------------------------------------------------------------------------

_RESIZE = ("nearest", "linear", "cubic", "lanczos3", "lanczos5")


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class Preprocess:
    """Preprocessing between lens_jax's images and a model, as a pytree.

    ``images (N, H, W, C)`` in [0, 1] -> resized to ``size`` (``jax.image.resize``,
    ``method``, antialiased when shrinking) -> ``(x - mean) / std`` per channel ->
    transposed to ``(N, C, H, W)`` when ``channels_first`` (torch-style models).

    ``mean`` and ``std`` (scalars or ``(C,)``) are pytree leaves: traced parameters,
    never compiled in (new values reuse the compiled program, and ``jax.grad`` reaches
    them).  ``size``, ``channels_first`` and ``method`` are static (they change shapes).

    >>> import jax.numpy as jnp
    >>> pre = Preprocess(mean=[0.5], std=[0.25], size=(2, 2), channels_first=True)
    >>> out = pre(jnp.ones((1, 4, 4, 1)))
    >>> out.shape, round(float(out[0, 0, 0, 0]), 4)
    ((1, 1, 2, 2), 2.0)
    """
    mean: Any = None
    std: Any = None
    size: Any = None
    channels_first: bool = False
    method: str = "linear"

    def __post_init__(self):
        for name in ("mean", "std"):
            v = getattr(self, name)
            if v is None or isinstance(v, jax.core.Tracer) or type(v) is object:
                continue
            a = np.asarray(v)
            if a.ndim > 1 or not np.issubdtype(a.dtype, np.number) \
                    or np.issubdtype(a.dtype, np.complexfloating):
                raise ValueError(f"Preprocess {name} must be a real scalar or one value per "
                                 f"channel (C,); got {v!r}")
            if not np.all(np.isfinite(a)) or (name == "std" and np.any(a <= 0)):
                must = "finite and > 0" if name == "std" else "finite"
                raise ValueError(f"Preprocess {name} must be {must}; got {v!r}")
            object.__setattr__(self, name, jnp.asarray(v, jnp.float32) if not isinstance(
                v, jax.Array) else v)
        if self.size is not None:
            size = (self.size, self.size) if isinstance(self.size, (int, np.integer)) \
                else tuple(self.size)
            if len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer))
                                     or v < 1 for v in size):
                raise ValueError(f"Preprocess size must be an int or (height, width) of "
                                 f"positive ints; got {self.size!r}")
            object.__setattr__(self, "size", tuple(int(v) for v in size))
        if not isinstance(self.channels_first, (bool, np.bool_)):
            raise ValueError(f"Preprocess channels_first must be a bool; got "
                             f"{self.channels_first!r}")
        if self.method not in _RESIZE:
            raise ValueError(f"Preprocess method must be one of {_RESIZE}; got {self.method!r}")

    def tree_flatten(self):
        return (self.mean, self.std), (self.size, bool(self.channels_first), self.method)

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        for k, v in zip(("mean", "std", "size", "channels_first", "method"),
                        (*children, *aux)):
            object.__setattr__(obj, k, v)
        return obj

    def __call__(self, images: jax.Array) -> jax.Array:
        x = jnp.asarray(images)
        if x.ndim != 4:
            raise ValueError(f"Preprocess expects a batch (N, H, W, C); got shape {x.shape}")
        if self.size is not None and tuple(x.shape[1:3]) != self.size:
            x = jax.image.resize(x, (x.shape[0], *self.size, x.shape[3]), method=self.method)
        c = x.shape[-1]
        for v, op in ((self.mean, jnp.subtract), (self.std, jnp.divide)):
            if v is None:
                continue
            v = jnp.asarray(v).astype(x.dtype)
            if v.ndim == 1 and v.shape[0] not in (1, c):
                raise ValueError(f"Preprocess mean/std have {v.shape[0]} values; the images "
                                 f"have {c} channels")
            x = op(x, v.reshape((1, 1, 1, -1)))
        if self.channels_first:
            x = jnp.transpose(x, (0, 3, 1, 2))
        return x


@dataclasses.dataclass(frozen=True)
class _PreprocessedApply:
    """``apply((params, preprocess), x) = inner(params, preprocess(x))``."""
    apply: Any

    def __call__(self, params, x):
        inner, pre = params
        return self.apply(inner, pre(x))


@dataclasses.dataclass(frozen=True, eq=False)
class WithPreprocess:
    """A classifier form: ``model`` (any form :func:`as_classifier` accepts) behind a
    :class:`Preprocess`.  Normalised on every call like ``model`` itself (an nnx module
    updated in place is seen); build it with :func:`with_preprocess`."""
    model: Any
    preprocess: Preprocess

    def __call__(self, images: jax.Array) -> jax.Array:
        return as_classifier(self)(images)


def with_preprocess(model: Any, *, mean: Any = None, std: Any = None, size: Any = None,
                    channels_first: bool = False, method: str = "linear") -> WithPreprocess:
    """``model`` with its preprocessing attached as part of the pytree (no closure).

    ``model``: any form :func:`as_classifier` accepts (``(apply_fn, params)``, an nnx
    module, a batched callable, a Classifier).  Images go through :class:`Preprocess`
    (resize to ``size``, ``(x - mean) / std`` per channel, NCHW when ``channels_first``)
    before the model; ``mean`` and ``std`` are traced parameters.

    >>> import jax.numpy as jnp
    >>> net = (lambda p, x: x.reshape(len(x), -1) @ p, jnp.ones((4, 2)))
    >>> clf = with_preprocess(net, mean=0.5, std=0.5)
    >>> clf(jnp.ones((1, 2, 2, 1))).tolist()
    [[4.0, 4.0]]
    """
    return WithPreprocess(model, Preprocess(mean, std, size, channels_first, method))
