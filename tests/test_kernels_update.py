"""The optimizer step fused into the weight gradient's tiles (nncli.kernels_update): one step of
dense_weight_step against the Keras formulas in NumPy float64, and train_batches, which steps the
wide dense kernels inside the backward pass, against the whole backward pass followed by the
step, bit for bit (Adam and SGD with momentum, with and without penalties, dropout, a batch whose
reduction spans two blocks of the tiles, and a conv layer beside the dense ones)."""

from __future__ import annotations

import numpy as np
import pytest

from nncli import kernels as K
from nncli.arch import parse_arch
from nncli.kernels_update import adam_chunk
from nncli.losses import PROB_EPSILON
from nncli.model import FUSED_FROM_WEIGHTS, Model, Workspace, fused_step, layer_table
from nncli.optim import hyper_vector, settings

CODES = {"adam": K.ADAM, "sgd": K.SGD}


def _keras_step(w, g, m, v, optimizer, lr, t, l1, l2, momentum=0.0):
    """The Keras step on gradient g + the L1L2 penalty's, in float64, spelled out."""
    w, g, m, v = (np.asarray(a, np.float64) for a in (w, g, m, v))
    g = g + 2 * l2 * w + l1 * np.sign(w)
    if optimizer == "sgd":
        m = momentum * m - lr * g
        return w + m, m, v
    b1, b2, eps = 0.9, 0.999, 1e-7
    m = m + (1 - b1) * (g - m)
    v = v + (1 - b2) * (g * g - v)
    return w - lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (np.sqrt(v) + eps), m, v


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("n, n_in, n_out", [(32, 37, 48), (300, 9, 20), (5, 70, 16)])
def test_dense_weight_step_against_the_formula(optimizer, n, n_in, n_out):
    rng = np.random.default_rng(n)
    X = rng.normal(size=(n, n_in)).astype(np.float32)
    dZ = rng.normal(size=(n, n_out)).astype(np.float32)
    W = rng.normal(size=(n_in, n_out)).astype(np.float32)
    m = rng.normal(size=W.shape).astype(np.float32) * 0.1
    v = np.abs(rng.normal(size=W.shape)).astype(np.float32) * 0.01
    lr, t, l1, l2, momentum = 1e-2, 3, 1e-3, 2e-3, 0.5
    hyper = hyper_vector(settings(optimizer, lr, momentum if optimizer == "sgd" else 0.0), l1, l2)
    code = CODES[optimizer]
    want = _keras_step(W, X.T.astype(np.float64) @ dZ, m, v, optimizer, lr, t, l1, l2, momentum)
    # SGD keeps its velocity in m and does not read v: pass m twice, as train_batches does
    v_arg = v if optimizer == "adam" else m
    K.dense_weight_step(W, m, v_arg, X, dZ, code, K.update_coefficients(hyper, lr, t, code))
    for got, expected in zip((W, m, v), want):
        np.testing.assert_allclose(got, expected, rtol=2e-4, atol=1e-6)


NETS = {  # arch, inputs, channels, loss, logits, loss code
    "dense": ("24relu-dropout0.25-17tanh-3linear", 20, 1, "cce", True, 3),
    "conv-then-dense": ("3conv3relu-18relu-2sigmoid", 12, 1, "bce", False, 2),
}


def _setup(key, n_rows, seed=0):
    arch, n_inputs, channels, loss, logits, code = NETS[key]
    model = Model.create(parse_arch(arch), n_inputs, loss, logits, seed=seed, channels=channels)
    rng = np.random.default_rng(seed + 1)
    X = rng.normal(size=(n_rows, n_inputs)).astype(np.float32)
    n_out = int(model.layer_table()[-1, K.N_OUT])
    if code == 3:
        Y = np.eye(n_out, dtype=np.float32)[rng.integers(0, n_out, n_rows)]
    else:
        Y = rng.integers(0, 2, size=(n_rows, n_out)).astype(np.float32)
    return model, X, Y, code


def _unfused(params, m, v, ws, X, Y, perm, batch, loss_code, hyper, lr, opt):
    """Each batch's whole gradient first (network_forward_backward, penalty_backward), then the
    optimizer step over all parameters."""
    table = ws.table
    grads = np.zeros_like(params)
    loss_sum, step = 0.0, 0
    for s in range(0, len(perm), batch):
        idx = perm[s:s + batch]
        xb, yb = X[idx], Y[idx]
        batch_loss, _ = K.network_forward_backward(grads, ws.Z, ws.A, ws.dZ, ws.dA, ws.T, params,
                                                   table, xb, yb, batch, loss_code, PROB_EPSILON,
                                                   step, ws.windowed, None)
        if hyper[5] or hyper[6]:
            batch_loss += len(idx) * K.penalty_forward(params, table, hyper[5], hyper[6])
            K.penalty_backward(grads, params, table, hyper[5], hyper[6])
        loss_sum += batch_loss
        step += 1
        K.update_params(params, grads, m, v, opt, K.update_coefficients(hyper, lr, step, opt),
                        False)
    return loss_sum


@pytest.mark.parametrize("key", list(NETS))
@pytest.mark.parametrize("optimizer, momentum", [("adam", 0.0), ("sgd", 0.9)])
@pytest.mark.parametrize("l1, l2", [(0.0, 0.0), (1e-3, 1e-2)])
@pytest.mark.parametrize("batch, n_rows", [(7, 20), (300, 300)])
@pytest.mark.parametrize("fused", [True, None])
def test_fused_steps_are_the_bits_of_backward_then_step(key, optimizer, momentum, l1, l2, batch,
                                                         n_rows, fused):
    """Both variants of train_batches (fused True, as model.fused_step gives large networks,
    and None) against the reference, bit for bit."""
    model, X, Y, loss_code = _setup(key, n_rows)
    ws = Workspace(model.layer_table(), batch, np.float32)
    hyper = hyper_vector(settings(optimizer, 0.05, momentum), l1, l2)
    opt = CODES[optimizer]
    perm = np.random.default_rng(5).permutation(n_rows)
    steps = (n_rows + batch - 1) // batch

    ref = model.params.astype(np.float32)
    ref_m, ref_v = np.zeros_like(ref), np.zeros_like(ref)
    want_loss = _unfused(ref, ref_m, ref_v if optimizer == "adam" else ref_m, ws, X, Y, perm,
                         batch, loss_code, hyper, 0.05, opt)

    params = model.params.astype(np.float32)
    grads, m, v = (np.zeros_like(params) for _ in range(3))
    velocity = m if optimizer == "sgd" else None
    Xb, Yb = np.zeros((batch, X.shape[1]), np.float32), np.zeros((batch, Y.shape[1]), np.float32)
    loss_sum, _, step, diverged = K.train_batches(
        params, grads, m, v, velocity, Xb, Yb, ws.Z, ws.A, ws.dZ, ws.dA, ws.T, ws.table, X, Y,
        perm, 0, n_rows, batch, loss_code, PROB_EPSILON, hyper, np.full(steps, 0.05), 0,
        ws.windowed, None, None, fused)
    assert (step, diverged) == (steps, -1)
    assert any(K.steps_in_backward(params, row) for row in ws.table)  # a kernel to fuse
    assert params.tobytes() == ref.tobytes()
    assert m.tobytes() == ref_m.tobytes()
    if optimizer == "adam":
        assert v.tobytes() == ref_v.tobytes()
    assert loss_sum == want_loss
    assert not np.array_equal(params, model.params)        # it did step


def test_networks_fuse_from_a_size_whose_state_outgrows_l2():
    """fused_step: network C's two 512-wide kernels (663k weights) and B's one (100k) fuse; the
    digits network and A (784-25-15-10: 19.6k weights in its one wide kernel) keep the plain
    step; only kernels of 16 float32 outputs or more count (8 in float64)."""
    def table(arch, n_inputs):
        return layer_table(parse_arch(arch), n_inputs)

    assert fused_step(table("512relu-512relu-10linear", 784)) is True
    assert fused_step(table("128relu-10linear", 784)) is True
    assert fused_step(table("25relu-15relu-10linear", 784)) is None
    assert fused_step(table("25relu-15relu-10linear", 64)) is None
    wide = FUSED_FROM_WEIGHTS // 16
    assert fused_step(table(f"16relu-{wide}relu-15linear", 16)) is True     # 16 x wide
    assert fused_step(table(f"15relu-{wide}relu-15linear", 15)) is None     # 15 x wide short
    # float64 tiles are 8 columns wide, so the 8- and 15-wide kernels count there alone
    assert fused_step(table(f"8relu-{wide}relu-15linear", 16)) is None
    assert fused_step(table(f"8relu-{wide}relu-15linear", 16), 8) is True


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_stores_moments_that_would_be_subnormal_as_zero(dtype):
    """A decaying moment is kept while it is normal and stored as 0 below the dtype's smallest
    normal (subnormals cost Intel cores a microcode assist a value, and cannot move a weight
    at epsilon 1e-7): the formula's value, then 0."""
    tiny = np.finfo(dtype).tiny
    W = np.ones(2, dtype)
    G = np.zeros(2, dtype)
    m = np.array([2 * tiny, tiny * 1.05], dtype)       # 0.9 x: normal, then subnormal
    v = np.array([2 * tiny, tiny * 1.0005], dtype)     # 0.999 x: normal, then subnormal
    two = dtype(2 * tiny)
    adam_chunk(W, G, m, v, dtype(1e-3), dtype(0.1), dtype(0.001), dtype(1e-7))
    assert m[0] == two + (dtype(0) - two) * dtype(0.1) and m[0] >= tiny
    assert v[0] == two + (dtype(0) - two) * dtype(0.001) and v[0] >= tiny
    assert m[1] == 0.0 and v[1] == 0.0
