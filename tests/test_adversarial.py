"""PGD attacks, robust accuracy and adversarial training (lens_jax.adversarial)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lens_jax
from lens_jax import adversarial as A
from lens_jax import train as T

from conftest import sk_digits


@pytest.fixture(scope="module")
def digits16():
    """scikit-learn digits at 16x16 (600 train / 200 test)."""
    return sk_digits(16)


TINY = {"features": (8, 16), "hidden": 32}


@pytest.fixture(scope="module")
def tiny(digits16):
    """A small CNN trained 10 epochs on 16x16 digits: (apply_fn, params, model, test)."""
    train, test = digits16
    r = T.train_classifier("cnn", train, test, num_classes=10, epochs=10, batch_size=64,
                           lr=3e-3, progress=False, model_kwargs=TINY)
    assert r.test_accuracy > 0.8
    clf = lens_jax.classifier.as_classifier((r.model.apply, {"params": r.params}))
    return clf.apply, clf.params, r.model, test


def _losses(apply_fn, params, x, y):
    loss, wrong = A._per_example_loss(apply_fn, params, jnp.asarray(x), jnp.asarray(y))
    return np.asarray(loss), np.asarray(wrong)


def _l2(d):
    return np.sqrt((np.asarray(d, np.float64) ** 2).reshape(len(d), -1).sum(1))


# ----------------------------------------------------------------------------------
# Argument validation
# ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, exc, name", [
    (dict(norm="l1", eps=1.0, steps=3), ValueError, "norm"),
    (dict(norm="l2", eps=0.0, steps=3), ValueError, "eps"),
    (dict(norm="l2", eps=-1.0, steps=3), ValueError, "eps"),
    (dict(norm="l2", eps=float("nan"), steps=3), ValueError, "eps"),
    (dict(norm="l2", eps="2", steps=3), TypeError, "eps"),
    (dict(norm="l2", eps=1.0, steps=0), ValueError, "steps"),
    (dict(norm="l2", eps=1.0, steps=2.5), TypeError, "steps"),
    (dict(norm="l2", eps=1.0, steps=3, restarts=0), ValueError, "restarts"),
    (dict(norm="l2", eps=1.0, steps=3, step_size=0.0), ValueError, "step_size"),
    (dict(norm="l2", eps=1.0, steps=3, random_start="yes"), TypeError, "random_start"),
])
def test_pgd_validation(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        A.PGD(**kwargs)


def test_pgd_config_is_hashable_and_tagged():
    a, b = A.PGD("L2", 2, 7), A.PGD("l2", 2.0, 7)
    assert a == b and hash(a) == hash(b) and a.norm == "l2" and isinstance(a.eps, float)
    assert a.tag == "pgd-l2-2-7" and abs(a.alpha - 2.5 * 2 / 7) < 1e-12
    assert A.PGD("linf", 0.1, 10, step_size=0.02, restarts=2).tag == "pgd-linf-0.1-10-a0.02-r2"
    assert T.PGD is A.PGD and T.robust_accuracy is A.robust_accuracy
    assert A.default_attack("synthetic/small") == A.DEFAULT_ATTACKS["synthetic"]
    with pytest.raises(ValueError, match="dataset"):
        A.default_attack("cifar10")


def test_attack_input_validation(tiny):
    apply_fn, params, _, (x, y) = tiny
    atk = A.PGD("l2", 1.0, 2)
    with pytest.raises(TypeError, match="attack"):
        A.pgd_attack((apply_fn, params), x[:4], y[:4], {"norm": "l2"})
    with pytest.raises(ValueError, match="images"):
        A.pgd_attack((apply_fn, params), x[:4] * 2, y[:4], atk)
    with pytest.raises(ValueError, match="labels"):
        A.pgd_attack((apply_fn, params), x[:4], y[:3], atk)
    with pytest.raises(ValueError, match="batch_size"):
        A.robust_accuracy((apply_fn, params), x[:4], y[:4], atk, batch_size=0)
    with pytest.raises(TypeError, match="model"):
        A.robust_accuracy(3, x[:4], y[:4], atk)
    with pytest.raises(TypeError, match="adversary"):
        T.train_classifier("mlp", (x[:8], y[:8]), None, num_classes=10, epochs=1, progress=False,
                           adversary=("l2", 1.0, 3))
    with pytest.raises(ValueError, match="ramp_epochs"):
        T.train_classifier("mlp", (x[:8], y[:8]), None, num_classes=10, epochs=1, progress=False,
                           adversary=atk, ramp_epochs=-1)


# ----------------------------------------------------------------------------------
# The attack
# ----------------------------------------------------------------------------------

@pytest.mark.parametrize("norm, eps", [("l2", 1.5), ("linf", 0.1)])
@pytest.mark.parametrize("random_start", [None, True])
def test_attack_stays_in_ball_and_box(tiny, norm, eps, random_start):
    apply_fn, params, _, (x, y) = tiny
    atk = A.PGD(norm, eps, 5, restarts=2, random_start=random_start)
    xa = np.asarray(A.pgd_attack((apply_fn, params), x[:64], y[:64], atk,
                                 key=jax.random.PRNGKey(3)))
    assert xa.shape == x[:64].shape and xa.dtype == np.float32
    assert xa.min() >= 0.0 and xa.max() <= 1.0
    d = xa.astype(np.float64) - x[:64]
    if norm == "l2":
        assert _l2(d).max() <= eps * (1 + 1e-5)
        assert np.median(_l2(d)) > 0.5 * eps       # it moved, not a no-op
    else:
        assert np.abs(d).max() <= eps * (1 + 1e-5)
        assert np.median(np.abs(d).reshape(64, -1).max(1)) > 0.5 * eps


@pytest.mark.parametrize("norm, eps", [("l2", 1.0), ("linf", 0.05)])
def test_attack_increases_loss_beyond_noise(tiny, norm, eps):
    apply_fn, params, _, (x, y) = tiny
    x, y = x[:100], y[:100]
    xa = A.pgd_attack((apply_fn, params), x, y, A.PGD(norm, eps, 10))
    clean, _ = _losses(apply_fn, params, x, y)
    adv, adv_wrong = _losses(apply_fn, params, xa, y)
    # random noise of the same size (L2: norm eps; Linf: +-eps in every pixel)
    rng = np.random.default_rng(0)
    if norm == "l2":
        g = rng.normal(size=x.shape)
        noise = g / _l2(g)[:, None, None, None] * eps
    else:
        noise = eps * rng.choice([-1.0, 1.0], size=x.shape)
    noisy, _ = _losses(apply_fn, params, np.clip(x + noise, 0, 1).astype(np.float32), y)
    assert np.all(adv >= clean - 1e-6)            # the clean start is a candidate
    assert np.mean(adv > clean + 1e-3) > 0.95
    assert np.mean(adv > noisy) > 0.95 and adv.mean() > 2 * noisy.mean()
    _, clean_wrong = _losses(apply_fn, params, x, y)
    assert adv_wrong.sum() > clean_wrong.sum()


def _linear(params, x):
    w, b = params
    return x.reshape(x.shape[0], -1) @ w + b[None]


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_linear_classifier_matches_analytic_worst_case(norm):
    """Two-class linear model: the worst perturbation of the margin
    (w_y - w_o).x + b_y - b_o within the ball is -eps (w_y - w_o)/||w_y - w_o|| (L2)
    or -eps sign(w_y - w_o) (Linf), and the cross-entropy is monotone in the margin."""
    rng = np.random.default_rng(1)
    d, n = 64, 32
    w = rng.normal(size=(d, 2)).astype(np.float32)
    b = rng.normal(size=2).astype(np.float32)
    x = rng.uniform(0.35, 0.65, size=(n, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 2, n).astype(np.int32)
    u = (w[:, y] - w[:, 1 - y]).T                             # (n, d) margin gradients
    if norm == "l2":
        eps = 0.5
        expected = -eps * u / np.linalg.norm(u, axis=1, keepdims=True)
        assert np.abs(expected).max() < 0.35                  # the box stays inactive
    else:
        eps = 0.05
        expected = -eps * np.sign(u)
    apply_fn = _linear
    params = (jnp.asarray(w), jnp.asarray(b))
    xa = np.asarray(A.pgd_attack((apply_fn, params), x, y, A.PGD(norm, eps, 7)))
    delta = (xa - x).reshape(n, d)
    np.testing.assert_allclose(delta, expected, atol=2e-5)
    # the analytic worst-case loss: softplus(-(margin - eps ||u||_dual))
    margin = np.einsum("nd,nd->n", x.reshape(n, d), u) + b[y] - b[1 - y]
    dual = np.linalg.norm(u, axis=1) if norm == "l2" else np.abs(u).sum(1)
    worst = np.logaddexp(0.0, -(margin - eps * dual))
    got, _ = _losses(apply_fn, params, xa, y)
    np.testing.assert_allclose(got, worst, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("random_start", [None, True])
def test_restarts_never_worse_than_one_run(tiny, random_start):
    apply_fn, params, _, (x, y) = tiny
    x, y = x[:100], y[:100]
    key = jax.random.PRNGKey(7)
    one = A.PGD("l2", 1.0, 3, restarts=1, random_start=random_start)
    many = one.replace(restarts=4)
    l1, w1 = _losses(apply_fn, params, A.pgd_attack((apply_fn, params), x, y, one, key=key), y)
    l4, w4 = _losses(apply_fn, params, A.pgd_attack((apply_fn, params), x, y, many, key=key), y)
    assert np.all(w4 >= w1)                          # misclassified stays misclassified
    same = w4 == w1
    assert np.all(l4[same] >= l1[same] - 1e-5)       # and otherwise the loss only grows
    assert w4.sum() + np.sum(l4[same] > l1[same] + 1e-4) > 0   # restarts found something


def test_robust_accuracy_limits_and_batching(tiny):
    apply_fn, params, model, (x, y) = tiny
    clean = T.accuracy(np.asarray(apply_fn(params, x)), y)
    tiny_eps = A.robust_accuracy((apply_fn, params), x, y, A.PGD("l2", 1e-6, 3))
    assert tiny_eps == clean
    atk = A.PGD("l2", 1.5, 5)
    ra = A.robust_accuracy((apply_fn, params), x, y, atk, batch_size=64)   # 200 = 3*64 + 8
    xa = A.pgd_attack((apply_fn, params), x, y, atk)
    manual = np.mean((np.argmax(np.asarray(apply_fn(params, xa)), -1) == y)
                     & (np.argmax(np.asarray(apply_fn(params, x)), -1) == y))
    assert ra == pytest.approx(manual, abs=1e-12)
    assert ra < clean - 0.1
    # a make_logits_fn function (params unwrapped) and a plain callable agree
    fn = lens_jax.models.make_logits_fn(model, params["params"])
    assert A.robust_accuracy(fn, x, y, atk, batch_size=64) == ra
    assert A.robust_accuracy(lambda z: apply_fn(params, z), x, y, atk, batch_size=64) == ra


def test_params_are_traced_not_constants(tiny):
    apply_fn, params, _, (x, y) = tiny
    atk = A.PGD("l2", 1.0, 3)
    A.pgd_attack((apply_fn, params), x[:16], y[:16], atk)
    size = A._attack_jit._cache_size()
    other = jax.tree_util.tree_map(lambda p: p * 0.5 + 0.01, params)
    xa1 = A.pgd_attack((apply_fn, other), x[:16], y[:16], atk)
    xa2 = A.pgd_attack((apply_fn, params), x[:16], y[:16], atk.replace(eps=1.3))
    assert A._attack_jit._cache_size() == size       # new params and eps: no recompilation
    assert not np.array_equal(np.asarray(xa1), np.asarray(xa2))


# ----------------------------------------------------------------------------------
# Adversarial training
# ----------------------------------------------------------------------------------

def _leaves_equal(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(u), np.asarray(v))
                                      for u, v in zip(la, lb))


def test_adversarial_training_resumes_bit_equal(digits16, tmp_path):
    train, test = digits16
    train = (train[0][:256], train[1][:256])
    atk = A.PGD("l2", 1.0, 2, restarts=2)            # random starts exercise the PRNG path
    kw = dict(num_classes=10, epochs=2, batch_size=64, seed=2, progress=False,
              model_kwargs=TINY, adversary=atk, ramp_epochs=1)
    full = T.train_classifier("cnn", train, test, workdir=tmp_path / "full", **kw)
    assert [h["eps"] for h in full.history] == [1.0, 1.0]
    step = T._make_steps(full.model, T._optimizer(1e-3, 8, 1e-4), atk)
    assert step._cache_size() == 1                   # the eps ramp never recompiles

    def interrupt(epoch, record):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        T.train_classifier("cnn", train, test, workdir=tmp_path / "cut", callback=interrupt,
                           **kw)
    resumed = T.train_classifier("cnn", train, test, workdir=tmp_path / "cut", **kw)
    assert resumed.resumed_from == 1
    assert _leaves_equal(resumed.params, full.params)
    meta = T.restore_checkpoint(tmp_path / "cut")[2]
    assert meta["config"]["adversary"] == {**atk.to_dict(), "ramp_epochs": 1}
    # another attack (or ramp, or none) is another configuration
    for change in (dict(adversary=atk.replace(eps=2.0)), dict(ramp_epochs=2),
                   dict(adversary=None)):
        with pytest.raises(T.CheckpointMismatchError, match="adversary"):
            T.train_classifier("cnn", train, test, workdir=tmp_path / "cut", **{**kw, **change})
    # standard training differs from adversarial training with the same seed
    plain = T.train_classifier("cnn", train, test, **{**kw, "adversary": None})
    assert not _leaves_equal(plain.params, full.params)


def test_adversarial_training_ramp():
    atk = A.PGD("l2", 2.0, 7)
    eps = [T._ramp_eps(atk, 3, 10, t) for t in range(40)]
    assert eps[0] == pytest.approx(2.0 / 30) and eps[29] == 2.0 and eps[39] == 2.0
    assert np.all(np.diff(eps[:30]) > 0) and np.allclose(np.diff(eps[:30]), 2.0 / 30)
    assert T._ramp_eps(atk, 0, 10, 0) == 2.0


def test_load_or_train_adversary_has_own_folder(digits16, tmp_path, fake_data):
    train, test = digits16
    calls = fake_data({"train": (train[0][:128], train[1][:128]), "test": test})
    atk = A.PGD("l2", 1.0, 2)
    kw = dict(epochs=1, cache=tmp_path, progress=False, batch_size=64)
    _, p_std, i_std = T.load_or_train("mlp", "toy", **kw)
    _, p_adv, i_adv = T.load_or_train("mlp", "toy", adversary=atk, **kw)
    assert i_std["adversary"] is None and i_adv["adversary"]["eps"] == 1.0
    assert i_adv["workdir"] != i_std["workdir"] and i_adv["workdir"].endswith("pgd-l2-1-2")
    assert len(calls) == 4 and not _leaves_equal(p_std, p_adv)
    _, p_adv2, _ = T.load_or_train("mlp", "toy", adversary=atk, **kw)   # cached
    _, p_std2, _ = T.load_or_train("mlp", "toy", **kw)
    assert len(calls) == 4
    assert _leaves_equal(p_adv, p_adv2) and _leaves_equal(p_std, p_std2)
    _, _, i_ramp = T.load_or_train("mlp", "toy", adversary=atk, ramp_epochs=0, **kw)
    assert i_ramp["workdir"].endswith("_ramp0") and len(calls) == 6
    assert i_adv["adversary"]["ramp_epochs"] == 3     # the default for data sets not tabulated
    assert T.default_epochs("mnist5k", "cnn", adversarial=True) \
        == T.ADVERSARIAL_DEFAULTS[("mnist5k", "cnn")][0]


@pytest.mark.slow
def test_adversarial_training_buys_robustness(digits16):
    train, test = digits16
    atk = A.PGD("l2", 1.0, 5)
    kw = dict(num_classes=10, epochs=12, batch_size=64, lr=3e-3, progress=False,
              model_kwargs=TINY)
    plain = T.train_classifier("cnn", train, test, **kw)
    robust = T.train_classifier("cnn", train, test, adversary=atk, ramp_epochs=3, **kw)
    ev = A.PGD("l2", 1.0, 20, restarts=2)
    r_plain = A.robust_accuracy(plain.logits_fn, *test, ev)
    r_robust = A.robust_accuracy(robust.logits_fn, *test, ev)
    assert r_robust > r_plain + 0.1
