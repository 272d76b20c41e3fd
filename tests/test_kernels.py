"""The compiled kernels against the plain-NumPy float64 reference in tests/naive.py:
dense layer, activations (every code of the activation table), gathering rows, the whole
network forward/backward and evaluation, and bit-identical results whatever the thread count."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from nncli import kernels as K
from nncli.arch import ACTIVATIONS, LayerSpec
from nncli.losses import PROB_EPSILON
from nncli.model import Model, Workspace, layer_table

try:
    import naive
except ImportError:                       # tests/ imported as a package
    from tests import naive

DTYPES = [np.float32, np.float64]
# (n, n_in, n_out). The large ones reach the 4 x 4 dot-product tiles and transposes with ragged
# edges (products need reductions of 64 and more), the register tiles of nncli.kernels_gemm
# (32 or more outputs; dX through them from 32 rows) and the threaded paths.
SHAPES = [(1, 1, 1), (1, 4, 1), (7, 13, 5), (5, 3, 1), (3, 1, 6),
          (130, 67, 37), (37, 129, 70), (128, 64, 4), (66, 5, 131), (20, 40, 33), (33, 300, 20), (256, 25, 15),
          (40, 512, 10)]

# Numba warns that the wrapper kernels have nothing to parallelise (see nncli.kernels).
pytestmark = pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaPerformanceWarning")

SOFTMAX_0123 = [0.0320586, 0.08714432, 0.23688284, 0.64391428]


def rand(rng, shape, dtype, scale=1.0):
    return np.ascontiguousarray(rng.normal(0.0, scale, size=shape), dtype=dtype)


# --------------------------------------------------------------------------- dense layer

def scratch(n, n_in, n_out, dtype):
    """Scratch for W^T (or dW^T), X^T and dZ^T, filled with garbage: the kernels must not read it
    first."""
    return (np.full(n_in * n_out, np.nan, dtype), np.full((n_in, n), np.nan, dtype),
            np.full((n_out, n), np.nan, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,p", [(1, 1), (3, 5), (4, 4), (5, 33), (37, 70), (300, 301)])
def test_transpose_is_exact(dtype, m, p):
    A = rand(np.random.default_rng(m * p), (m, p), dtype)
    out = np.full((p, m), np.nan, dtype)
    K.transpose(out, A)
    assert np.array_equal(out, A.T)


@pytest.mark.parametrize("dtype", DTYPES)
# reductions in one partial vector (15), whole vectors only (16, 64), whole ones and a partial
@pytest.mark.parametrize("m,k,p", [(1, 1, 1), (6, 15, 10), (5, 16, 3), (5, 64, 3), (4, 70, 4),
                                   (9, 100, 7), (8, 25, 9), (33, 65, 130)])
def test_matmul_nt(dtype, m, k, p):
    rng = np.random.default_rng(m + k + p)
    A, B = rand(rng, (m, k), dtype), rand(rng, (p, k), dtype)
    C = np.full((m, p), np.nan, dtype)
    K.matmul_nt(C, A, B)
    naive.assert_close(C, naive.f64(A) @ naive.f64(B).T, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,n_in,n_out", SHAPES)
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_dense_forward(dtype, n, n_in, n_out, activation):
    rng = np.random.default_rng(n * 100 + n_in * 10 + n_out)
    X, W, b = rand(rng, (n, n_in), dtype), rand(rng, (n_in, n_out), dtype), rand(rng, n_out, dtype)
    Z = np.full((n, n_out), np.nan, dtype=dtype)          # every entry must be written
    A = np.full((n, n_out), np.nan, dtype=dtype)
    WT = np.empty((n_out, n_in), dtype)                   # scratch for W^T
    K.dense_forward(Z, A, X, W, b, WT, ACTIVATIONS[activation])
    want = naive.dense(X, W, b)
    naive.assert_close(Z, want, dtype)
    naive.assert_close(A, naive.ACT_FORWARD[activation](Z), dtype)
    # in place (prediction's ping-pong buffers): the same activations, bit for bit
    same = np.full((n, n_out), np.nan, dtype=dtype)
    K.dense_forward(same, same, X, W, b, WT, ACTIVATIONS[activation])
    assert np.array_equal(same, A)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,n_in,n_out", SHAPES)
def test_dense_backward(dtype, n, n_in, n_out):
    rng = np.random.default_rng(n * 100 + n_in * 10 + n_out + 1)
    X, W = rand(rng, (n, n_in), dtype), rand(rng, (n_in, n_out), dtype)
    dZ = rand(rng, (n, n_out), dtype)
    # garbage in the outputs: they are overwritten, never accumulated into
    dX = np.full((n, n_in), 7.0, dtype=dtype)
    dW = np.full((n_in, n_out), np.nan, dtype=dtype)
    db = np.full(n_out, np.nan, dtype=dtype)
    K.dense_backward(dX, dW, db, dZ, X, W, True, *scratch(n, n_in, n_out, dtype), W, W, -1, None)
    want_dX, want_dW, want_db = naive.dense_grads(dZ, X, W)
    naive.assert_close(dX, want_dX, dtype)
    naive.assert_close(dW, want_dW, dtype)
    naive.assert_close(db, want_db, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,n_in,n_out", [(130, 67, 37), (33, 300, 20), (256, 25, 15),
                                          (64, 512, 10), (40, 30, 300)])
def test_dense_backward_dX_is_the_same_bits_either_way_through_the_tiles(dtype, n, n_in, n_out):
    # dense_backward takes dZ W^T or (W dZ^T)^T by which transpose is smaller: both must sum each
    # element over the same steps in the same order (n_out 300: two reduction blocks), or the
    # bits of a model would depend on the batch size's side of that choice
    rng = np.random.default_rng(n + n_in + n_out)
    X, W = rand(rng, (n, n_in), dtype), rand(rng, (n_in, n_out), dtype)
    dZ = rand(rng, (n, n_out), dtype)
    direct = np.full((n, n_in), np.nan, dtype)
    K.matmul_nn(direct, dZ, np.ascontiguousarray(W.T))
    XT = np.full((n_in, n), np.nan, dtype)
    K.matmul_nn(XT, W, np.ascontiguousarray(dZ.T))
    assert np.array_equal(direct, XT.T)
    dX, dW, db = np.empty_like(X), np.empty_like(W), np.empty(n_out, dtype)
    K.dense_backward(dX, dW, db, dZ, X, W, True, *scratch(n, n_in, n_out, dtype), W, W, -1, None)
    assert np.array_equal(dX, direct)
    naive.assert_close(dX, naive.dense_grads(dZ, X, W)[0], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_backward_without_dX_leaves_dX_untouched(dtype):
    rng = np.random.default_rng(3)
    n, n_in, n_out = 7, 13, 5
    X, W, dZ = rand(rng, (n, n_in), dtype), rand(rng, (n_in, n_out), dtype), rand(rng, (n, n_out), dtype)
    sentinel = rand(rng, (n, n_in), dtype)
    dX = sentinel.copy()
    dW = np.zeros((n_in, n_out), dtype)
    db = np.zeros(n_out, dtype)
    K.dense_backward(dX, dW, db, dZ, X, W, False, *scratch(n, n_in, n_out, dtype), W, W, -1, None)
    assert np.array_equal(dX, sentinel)
    _, want_dW, want_db = naive.dense_grads(dZ, X, W)
    naive.assert_close(dW, want_dW, dtype)
    naive.assert_close(db, want_db, dtype)


# --------------------------------------------------------------------------- activations

def test_activation_table_has_a_reference_for_every_code():
    # a new activation without a NumPy reference (or a renamed one) fails here
    assert set(ACTIVATIONS) == set(naive.ACT_FORWARD)
    assert sorted(ACTIVATIONS.values()) == list(range(len(ACTIVATIONS)))


def act_inputs(rng, n, width, dtype):
    Z = rand(rng, (n, width), dtype, scale=2.0)
    Z[0, 0] = 0.0                        # relu exactly at the kink (subgradient 0, as TF)
    if width > 1:
        Z[0, 1] = -0.0
    return Z


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(ACTIVATIONS))
@pytest.mark.parametrize("n,width", [(1, 1), (7, 13), (5, 3), (700, 30)])
def test_act_forward(dtype, name, n, width):
    rng = np.random.default_rng(n * 31 + width)
    Z = act_inputs(rng, n, width, dtype)
    A = np.full_like(Z, np.nan)
    K.act_forward(A, Z, ACTIVATIONS[name])
    naive.assert_close(A, naive.ACT_FORWARD[name](Z), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(ACTIVATIONS))
@pytest.mark.parametrize("n,width", [(1, 1), (7, 13), (5, 3), (700, 30)])
def test_act_backward(dtype, name, n, width):
    rng = np.random.default_rng(n * 37 + width)
    Z = act_inputs(rng, n, width, dtype)
    dA = rand(rng, (n, width), dtype)
    A = np.empty_like(Z)
    K.act_forward(A, Z, ACTIVATIONS[name])
    dZ = np.full_like(Z, np.nan)
    K.act_backward(dZ, dA, A, Z, ACTIVATIONS[name])
    naive.assert_close(dZ, naive.act_grad(name, Z, dA), dtype)


def test_act_codes_mean_what_their_names_say():
    # distinguishing values, independent of the reference module
    Z = np.array([[-2.0, 0.5, 3.0]])
    expect = {
        "linear": [-2.0, 0.5, 3.0],
        "relu": [0.0, 0.5, 3.0],
        "sigmoid": [1 / (1 + np.exp(2.0)), 1 / (1 + np.exp(-0.5)), 1 / (1 + np.exp(-3.0))],
        "tanh": [np.tanh(-2.0), np.tanh(0.5), np.tanh(3.0)],
        "softmax": list(np.exp([-2.0, 0.5, 3.0]) / np.exp([-2.0, 0.5, 3.0]).sum()),
    }
    for name, code in ACTIVATIONS.items():
        A = np.empty_like(Z)
        K.act_forward(A, Z, code)
        np.testing.assert_allclose(A[0], expect[name], rtol=1e-12, err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_huge_logits(dtype):
    Z = np.array([[0, 1, 2, 3], [10000, 10001, 10002, 10003]], dtype=dtype)
    A = np.empty_like(Z)
    K.act_forward(A, Z, ACTIVATIONS["softmax"])
    np.testing.assert_allclose(A, [SOFTMAX_0123, SOFTMAX_0123], rtol=1e-6)
    exact = naive.softmax([0, 1, 2, 3])
    naive.assert_close(A[0], exact, dtype)
    naive.assert_close(A[1], exact, dtype)


def test_softmax_very_negative_logits_float32():
    Z = np.array([[-104, -104]], dtype=np.float32)
    A = np.empty_like(Z)
    K.act_forward(A, Z, ACTIVATIONS["softmax"])
    assert np.array_equal(A, [[0.5, 0.5]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_past_exp_overflow(dtype):
    # exp(89) overflows float32; shifted by the row max it never gets evaluated
    Z = np.array([[89, 0], [1000, -1000], [-1000, 1000]], dtype=dtype)
    A = np.empty_like(Z)
    K.act_forward(A, Z, ACTIVATIONS["softmax"])
    assert np.isfinite(A).all()
    np.testing.assert_allclose(A, [[1, 0], [1, 0], [0, 1]], atol=1e-38)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_and_tanh_extremes_are_finite(dtype):
    Z = np.array([[1000, -1000, 100, -100, 0]], dtype=dtype)
    for name, want in (("sigmoid", [1, 0, 1, 0, 0.5]), ("tanh", [1, -1, 1, -1, 0])):
        A = np.empty_like(Z)
        K.act_forward(A, Z, ACTIVATIONS[name])
        assert np.isfinite(A).all(), name
        np.testing.assert_allclose(A[0], want, atol=1e-40, err_msg=name)
        dZ = np.empty_like(Z)
        K.act_backward(dZ, np.ones_like(Z), A, Z, ACTIVATIONS[name])
        assert np.isfinite(dZ).all(), name
        np.testing.assert_allclose(dZ[0, :4], 0.0, atol=1e-40, err_msg=name)


# --------------------------------------------------------------------------- gather_rows

@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_rows(dtype):
    rng = np.random.default_rng(5)
    X = rand(rng, (7, 3), dtype)
    idx = np.array([6, 0, 0, 3, 5], dtype=np.int64)        # repeats and out of order
    Xb = np.full((8, 3), np.nan, dtype=dtype)               # bigger buffer: rows past n untouched
    K.gather_rows(Xb[:5], X, idx)
    assert np.array_equal(Xb[:5], X[idx])
    assert np.isnan(Xb[5:]).all()
    one = np.empty((1, 3), dtype=dtype)
    K.gather_rows(one, X, np.array([2], dtype=np.int64))
    assert np.array_equal(one, X[2:3])


# --------------------------------------------------------------------------- whole network

# (layers, n_inputs, loss name, --logits, kernel loss code)
NETWORKS = {
    "mse": ([LayerSpec(5, "relu"), LayerSpec(3, "linear")], 7, "mse", False, 0),
    "mse-1out": ([LayerSpec(4, "tanh"), LayerSpec(1, "linear")], 3, "mse", False, 0),
    "bce-logits": ([LayerSpec(6, "tanh"), LayerSpec(4, "sigmoid"), LayerSpec(3, "linear")],
                   7, "bce", True, 1),
    "bce-probs-1out": ([LayerSpec(5, "sigmoid"), LayerSpec(1, "sigmoid")], 4, "bce", False, 2),
    "cce-logits": ([LayerSpec(6, "relu"), LayerSpec(4, "tanh"), LayerSpec(3, "linear")],
                   5, "cce", True, 3),
    "cce-probs": ([LayerSpec(5, "tanh"), LayerSpec(3, "softmax")], 7, "cce", False, 4),
    # wide enough for the register tiles (relu and linear applied as the tiles are stored)
    "wide-cce-logits": ([LayerSpec(40, "relu"), LayerSpec(33, "linear"), LayerSpec(20, "relu"),
                         LayerSpec(4, "linear")], 70, "cce", True, 3),
    "wide-cce-probs": ([LayerSpec(36, "sigmoid"), LayerSpec(17, "softmax")], 9, "cce", False, 4),
}


def targets(rng, code, n, k):
    if code == 0:
        return rng.normal(size=(n, k))
    if code in (1, 2):
        return rng.integers(0, 2, size=(n, k)).astype(float)
    Y = np.zeros((n, k))
    Y[np.arange(n), rng.integers(0, k, size=n)] = 1.0
    return Y


def split_params(params, layers, n_inputs):
    """[(W, b), ...] from the documented flat layout: layer by layer, kernel (in, out), bias."""
    out, offset, n_in = [], 0, n_inputs
    for layer in layers:
        n_out = layer.units
        W = params[offset:offset + n_in * n_out].reshape(n_in, n_out)
        offset += n_in * n_out
        out.append((W, params[offset:offset + n_out]))
        offset += n_out
        n_in = n_out
    assert offset == params.size
    return out


def setup_network(key, dtype, n, seed=0):
    layers, n_inputs, loss, logits, code = NETWORKS[key]
    model = Model.create(layers, n_inputs, loss, logits, seed=seed)
    rng = np.random.default_rng(seed + 17)
    # nonzero biases, so that a bias/kernel offset mix-up shows
    model.params[...] += rng.normal(0.0, 0.1, size=model.params.size).astype(np.float32)
    params = model.params.astype(dtype)
    X = rand(rng, (n, n_inputs), dtype)
    Y = np.ascontiguousarray(targets(rng, code, n, layers[-1].units), dtype=dtype)
    return model, params, X, Y, code


def test_layer_table_matches_the_flat_layout():
    layers, n_inputs = NETWORKS["cce-logits"][:2]
    table = layer_table(layers, n_inputs)
    assert table.dtype == np.int64 and table.shape == (3, K.N_COLS)
    offset, rows, n_in = 0, 0, n_inputs
    for row, layer in zip(table, layers):
        assert row[K.N_IN] == n_in and row[K.N_OUT] == layer.units
        assert row[K.ACT] == ACTIVATIONS[layer.activation]
        assert row[K.W_OFF] == offset and row[K.B_OFF] == offset + n_in * layer.units
        assert row[K.A_OFF] == rows
        offset += n_in * layer.units + layer.units
        rows += layer.units
        n_in = layer.units


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,cap", [(1, 1), (5, 8), (6, 6)])
@pytest.mark.parametrize("key", list(NETWORKS))
def test_network_forward(dtype, key, n, cap):
    model, params, X, _, _ = setup_network(key, dtype, n)
    ws = Workspace(model.layer_table(), cap, dtype)
    out = K.network_forward(ws.Z, ws.A, ws.T, params, ws.table, X, ws.cap, -1, ws.windowed)
    weights = split_params(params, model.layers, model.n_inputs)
    acts = [layer.activation for layer in model.layers]
    want = naive.forward(weights, acts, X)[-1][1]
    assert out.shape == (n, model.n_outputs) and out.dtype == dtype
    naive.assert_close(out, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,cap", [(1, 1), (5, 8), (40, 40)])
@pytest.mark.parametrize("key", list(NETWORKS))
def test_network_predict_is_network_forward_in_two_buffers(dtype, key, n, cap):
    model, params, X, _, _ = setup_network(key, dtype, n)
    ws = Workspace(model.layer_table(), cap, dtype)
    want = K.network_forward(ws.Z, ws.A, ws.T, params, ws.table, X, ws.cap, -1, ws.windowed).copy()
    p_size, t_size = K.predict_sizes(ws.table, cap)
    widest = max(layer.units for layer in model.layers)
    assert (p_size, t_size) == (2 * cap * widest, max(int(r[K.N_IN] * r[K.N_OUT])
                                                      for r in ws.table))
    P, T = np.full(p_size, np.nan, dtype), np.full(t_size, np.nan, dtype)
    got = K.network_predict(P, T, params, ws.table, X, cap, ws.windowed)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,cap", [(1, 1), (5, 8), (6, 6), (40, 48)])
@pytest.mark.parametrize("key", list(NETWORKS))
def test_network_forward_backward(dtype, key, n, cap):
    model, params, X, Y, code = setup_network(key, dtype, n, seed=n)
    ws = Workspace(model.layer_table(), cap, dtype)
    grads = np.full_like(params, np.nan)                  # every entry must be written
    loss_sum, correct = K.network_forward_backward(
        grads, ws.Z, ws.A, ws.dZ, ws.dA, ws.T, params, ws.table, X, Y, ws.cap, code, PROB_EPSILON,
        0, ws.windowed, None)
    weights = split_params(params, model.layers, model.n_inputs)
    acts = [layer.activation for layer in model.layers]
    want_loss, want_grads, out = naive.forward_backward(weights, acts, X, Y, code)
    flat = np.concatenate([np.concatenate([dW.ravel(), db]) for dW, db in want_grads])
    naive.assert_close(loss_sum, want_loss, dtype)
    naive.assert_close(grads, flat, dtype)
    assert correct == naive.correct(code, out, Y)


@pytest.mark.parametrize("key", list(NETWORKS))
def test_naive_backprop_matches_finite_differences(key):
    """The reference itself: its gradient of the mean loss against central differences."""
    model, params, X, Y, code = setup_network(key, np.float64, 4, seed=2)
    acts = [layer.activation for layer in model.layers]

    def mean_loss(p):
        weights = split_params(p, model.layers, model.n_inputs)
        return naive.loss(code, naive.forward(weights, acts, X)[-1][1], Y)[0] / len(X)

    _, grads, _ = naive.forward_backward(split_params(params, model.layers, model.n_inputs),
                                         acts, X, Y, code)
    flat = np.concatenate([np.concatenate([dW.ravel(), db]) for dW, db in grads])
    numeric = np.empty_like(params)
    h = 1e-6
    for i in range(params.size):
        p = params.copy()
        p[i] += h
        up = mean_loss(p)
        p[i] -= 2 * h
        numeric[i] = (up - mean_loss(p)) / (2 * h)
    np.testing.assert_allclose(flat, numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,cap", [(13, 5), (13, 13), (1, 4), (10, 5)])
@pytest.mark.parametrize("key", ["mse", "bce-logits", "bce-probs-1out", "cce-logits", "cce-probs"])
def test_evaluate_rows(dtype, key, n, cap):
    model, params, X, Y, code = setup_network(key, dtype, n, seed=3)
    s = model.predict_scratch(cap, dtype)      # P, T for cap rows a call
    dOut, Out = np.empty(cap * model.n_outputs, dtype), np.full((n, model.n_outputs), np.nan, dtype)
    # (with Out None too in test_conv_network)
    loss_sum, correct = K.evaluate_rows(Out, s.P, dOut, s.T, params, s.table, X, Y, cap, code,
                                        PROB_EPSILON, s.windowed)
    weights = split_params(params, model.layers, model.n_inputs)
    acts = [layer.activation for layer in model.layers]
    out = naive.forward(weights, acts, X)[-1][1]
    naive.assert_close(Out, out, dtype)
    want_loss, _ = naive.loss(code, out, Y)
    naive.assert_close(loss_sum, want_loss, dtype)
    assert correct == naive.correct(code, out, Y)


# --------------------------------------------------------------------------- determinism

@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs at least 2 numba threads")
@pytest.mark.parametrize("n", [64, 150])
def test_gradients_bit_identical_across_thread_counts(n):
    layers = [LayerSpec(200, "relu"), LayerSpec(10, "linear")]
    model = Model.create(layers, 300, "cce", True, seed=11)
    rng = np.random.default_rng(11)
    X = rand(rng, (n, 300), np.float32)
    Y = np.ascontiguousarray(targets(rng, 3, n, 10), dtype=np.float32)
    table = model.layer_table()

    def run():
        ws = Workspace(table, n, np.float32)
        grads = np.zeros_like(model.params)
        loss_sum, correct = K.network_forward_backward(
            grads, ws.Z, ws.A, ws.dZ, ws.dA, ws.T, model.params, table, X, Y, n, 3, PROB_EPSILON,
            0, ws.windowed, None)
        return grads, loss_sum, correct

    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = run()
        numba.set_num_threads(2)
        two = run()
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(one[0], two[0])
    assert one[1] == two[1] and one[2] == two[2]
    assert np.abs(one[0]).max() > 0
