"""The optimizer kernels against the Keras update formulas written out in NumPy float64, and
the optimizer table (defaults and errors) in nncli.optim."""

from __future__ import annotations

import numpy as np
import pytest

from nncli import kernels as K
from nncli.errors import UsageError
from nncli.optim import OPTIMIZERS, get_optimizer, hyper_vector, settings

try:
    import naive
except ImportError:                       # tests/ imported as a package
    from tests import naive

DTYPES = [np.float32, np.float64]
SIZES = [1, 13]


def start(rng, size, dtype, steps):
    """Weights and a list of gradients of mixed scale, including a zero gradient."""
    w = rng.normal(size=size).astype(dtype)
    grads = [rng.normal(size=size) * rng.choice([1e-4, 1.0, 30.0], size=size)
             for _ in range(steps)]
    grads[0][0] = 0.0
    return w, [g.astype(dtype) for g in grads]


# --------------------------------------------------------------------------- Adam

def adam_kernel(w, grads, lr=1e-3, b1=0.9, b2=0.999, eps=1e-7):
    W = w.copy()
    m, v = np.zeros_like(W), np.zeros_like(W)
    for t, g in enumerate(grads, start=1):
        K.adam_update(W, g, m, v, lr, b1, b2, eps, t)
    return W, m, v


def adam_by_hand_two_steps(w, g1, g2, lr, b1, b2, eps):
    """The Keras formula, each step spelled out (no loop, no shared helper)."""
    w, g1, g2 = (np.asarray(a, dtype=np.float64) for a in (w, g1, g2))
    m1 = (1 - b1) * g1
    v1 = (1 - b2) * g1 * g1
    w1 = w - lr * np.sqrt(1 - b2) / (1 - b1) * m1 / (np.sqrt(v1) + eps)
    m2 = b1 * m1 + (1 - b1) * g2
    v2 = b2 * v1 + (1 - b2) * g2 * g2
    w2 = w1 - lr * np.sqrt(1 - b2 ** 2) / (1 - b1 ** 2) * m2 / (np.sqrt(v2) + eps)
    return (w1, m1, v1), (w2, m2, v2)


def assert_weights(got, want, w0, dtype):
    """float64: the update itself (w - w0) to 1e-10 relative; float32: w within one ulp of w
    plus 1e-5 of the update (the final w += step rounds to float32)."""
    got, want, w0 = (np.asarray(a, dtype=np.float64) for a in (got, want, w0))
    if dtype == np.float64:
        np.testing.assert_allclose(got - w0, want - w0, rtol=1e-10, atol=1e-17)
    else:
        ulp = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
        bound = ulp + 1e-5 * np.abs(want - w0)
        assert (np.abs(got - want) <= bound).all(), (got - want, bound)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
def test_adam_one_and_two_steps(dtype, size):
    rng = np.random.default_rng(size)
    w0, (g1, g2) = start(rng, size, dtype, 2)
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-7
    (w1, m1, v1), (w2, m2, v2) = adam_by_hand_two_steps(w0, g1, g2, lr, b1, b2, eps)

    W, m, v = adam_kernel(w0, [g1], lr, b1, b2, eps)
    assert W.dtype == m.dtype == v.dtype == dtype
    assert_weights(W, w1, w0, dtype)
    naive.assert_close(m, m1, dtype, scale=np.abs(m1).max())
    naive.assert_close(v, v1, dtype, scale=np.abs(v1).max())

    W, m, v = adam_kernel(w0, [g1, g2], lr, b1, b2, eps)
    assert_weights(W, w2, w0, dtype)
    naive.assert_close(m, m2, dtype, scale=np.abs(m2).max())
    naive.assert_close(v, v2, dtype, scale=np.abs(v2).max())
    # the loop-form reference agrees with the spelled-out one
    np.testing.assert_allclose(naive.adam_steps(w0, [g1, g2], lr, b1, b2, eps)[0], w2,
                               rtol=1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_other_hyperparameters_and_many_steps(dtype):
    rng = np.random.default_rng(9)
    w0, grads = start(rng, 7, dtype, 5)
    hp = dict(lr=0.05, b1=0.8, b2=0.99, eps=1e-3)
    W, m, v = adam_kernel(w0, grads, **hp)
    want_w, want_m, want_v = naive.adam_steps(w0, grads, **hp)
    if dtype == np.float64:
        assert_weights(W, want_w, w0, dtype)
    else:
        np.testing.assert_allclose(W, want_w, rtol=1e-5, atol=1e-6)
    naive.assert_close(m, want_m, dtype, scale=np.abs(want_m).max())
    naive.assert_close(v, want_v, dtype, scale=np.abs(want_v).max())


def test_adam_first_step_is_lr_times_sign():
    # Keras form at t = 1: alpha m / sqrt(v) = lr g / |g| (eps aside), whatever the scale of g
    w0 = np.zeros(4)
    g = np.array([3.0, -0.5, 250.0, -7.0])
    W, _, _ = adam_kernel(w0, [g], lr=1e-3)
    np.testing.assert_allclose(W, -1e-3 * np.sign(g), rtol=1e-4)
    W, _, _ = adam_kernel(w0, [np.zeros(4)])
    assert np.array_equal(W, w0)                      # zero gradient: no move, no NaN


# --------------------------------------------------------------------------- SGD

def sgd_kernel(w, grads, lr, momentum):
    W = w.copy()
    vel = np.zeros_like(W)
    for g in grads:
        K.sgd_update(W, g, vel, lr, momentum)
    return W, vel


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
def test_sgd_step_without_momentum(dtype, size):
    rng = np.random.default_rng(size + 1)
    w0, (g,) = start(rng, size, dtype, 1)
    W, vel = sgd_kernel(w0, [g], 0.01, 0.0)
    want = w0.astype(np.float64) - 0.01 * g.astype(np.float64)
    assert_weights(W, want, w0, dtype)
    naive.assert_close(vel, -0.01 * g.astype(np.float64), dtype, scale=np.abs(g).max() * 0.01)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
def test_sgd_steps_with_momentum(dtype, size):
    rng = np.random.default_rng(size + 2)
    w0, (g1, g2) = start(rng, size, dtype, 2)
    lr, mu = 0.05, 0.9
    # by hand: velocity = momentum velocity - lr g; w += velocity
    vel1 = -lr * g1.astype(np.float64)
    w1 = w0.astype(np.float64) + vel1
    vel2 = mu * vel1 - lr * g2.astype(np.float64)
    w2 = w1 + vel2
    W, vel = sgd_kernel(w0, [g1], lr, mu)
    assert_weights(W, w1, w0, dtype)
    W, vel = sgd_kernel(w0, [g1, g2], lr, mu)
    assert_weights(W, w2, w0, dtype)
    naive.assert_close(vel, vel2, dtype, scale=np.abs(vel2).max())
    np.testing.assert_allclose(naive.sgd_steps(w0, [g1, g2], lr, mu)[0], w2, rtol=1e-14)


# --------------------------------------------------------------------------- the table

def test_settings_defaults_are_keras():
    assert settings("adam", None, 0.0) == {"name": "adam", "learning_rate": 1e-3,
                                           "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}
    assert settings("sgd", None, 0.0) == {"name": "sgd", "learning_rate": 0.01,
                                          "momentum": 0.0}
    assert settings("sgd", 0.1, 0.9) == {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9}
    assert settings("adam", 3e-4, 0.0)["learning_rate"] == 3e-4
    assert get_optimizer("adam").code == 1 and get_optimizer("sgd").code == 0
    assert set(OPTIMIZERS) == {"adam", "sgd"}


def test_hyper_vector_order():
    hv = hyper_vector(settings("adam", None, 0.0))
    assert hv.dtype == np.float64
    assert hv.tolist() == [1e-3, 0.9, 0.999, 1e-7, 0.0, 0.0, 0.0]   # no penalties: l1, l2 0
    assert hyper_vector(settings("sgd", 0.2, 0.5)).tolist() == [0.2, 0.0, 0.0, 0.0, 0.5, 0.0,
                                                                0.0]


@pytest.mark.parametrize("name,lr,momentum,match", [
    ("adam", None, 0.9, "momentum"),
    ("adam", 0.0, 0.0, "lr"),
    ("sgd", -0.1, 0.0, "lr"),
    ("sgd", float("nan"), 0.0, "lr"),
    ("sgd", None, 1.0, "momentum"),
    ("sgd", None, -0.5, "momentum"),
    ("rmsprop", None, 0.0, "unknown optimizer"),
])
def test_settings_errors(name, lr, momentum, match):
    with pytest.raises(UsageError, match=match):
        settings(name, lr, momentum)
