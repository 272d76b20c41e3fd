"""Networks with conv and local layers end to end in the kernels: the layer table and the flat
parameter layout, Model's views and Keras's glorot fans, network_forward / _backward and
evaluate_rows against the plain-NumPy reference in tests/naive.py, scratch sizes, and
bit-identical training at 1 and 2 threads."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from nncli import kernels as K
from nncli.arch import ACTIVATIONS, LAYER_KINDS, param_shapes, parse_arch
from nncli.data import Dataset
from nncli.losses import PROB_EPSILON
from nncli.model import Model, Workspace, glorot_fans, layer_table
from nncli.train import TrainConfig, fit, prepare

try:
    import naive
except ImportError:                       # tests/ imported as a package
    from tests import naive

DTYPES = [np.float32, np.float64]

pytestmark = pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaPerformanceWarning")

# (arch, n_inputs, channels, loss, --logits, kernel loss code): each kind first, after a dense
# layer and last; strides 1, equal to and larger than the kernel; several channels; the
# lecture's network and the MNIST-1D check
NETWORKS = {
    "conv-local-dense": ("3conv3s2relu-2local2tanh-4linear", 13, 1, "cce", True, 3),
    "local-conv-channels": ("2local3s2sigmoid-3conv2relu-2sigmoid", 22, 2, "bce", False, 2),
    "dense-then-conv": ("12relu-2conv3s3tanh-3linear", 5, 1, "mse", False, 0),
    "conv-last": ("4conv2s2tanh-2conv3linear", 24, 3, "mse", False, 0),
    "stride-past-kernel": ("2local2s3relu-3softmax", 18, 2, "cce", False, 4),
    "lecture": ("1local20s10relu-1local5s2relu-1sigmoid", 100, 1, "bce", False, 2),
    "mnist1d": ("4conv5s2relu-8conv3s2relu-10linear", 40, 1, "cce", True, 3),
}


def rand(rng, shape, dtype, scale=1.0):
    return np.ascontiguousarray(rng.normal(0.0, scale, size=shape), dtype=dtype)


def targets(rng, code, n, k):
    if code == 0:
        return rng.normal(size=(n, k))
    if code in (1, 2):
        return rng.integers(0, 2, size=(n, k)).astype(float)
    Y = np.zeros((n, k))
    Y[np.arange(n), rng.integers(0, k, size=n)] = 1.0
    return Y


def reference_net(params, arch, n_inputs, channels):
    """[(kind, W, b, stride, activation)] cut from the documented flat layout: layer by layer,
    the kernel then the bias, in arch.param_shapes's shapes (not through Model's views)."""
    layers = parse_arch(arch)
    net, offset = [], 0
    for spec, (w_shape, b_shape) in zip(layers, param_shapes(layers, n_inputs, channels)):
        w_size, b_size = int(np.prod(w_shape)), int(np.prod(b_shape))
        W = params[offset:offset + w_size].reshape(w_shape)
        b = params[offset + w_size:offset + w_size + b_size].reshape(b_shape)
        net.append((spec.kind, W, b, spec.effective_stride, spec.activation))
        offset += w_size + b_size
    assert offset == params.size
    return net


def setup_network(key, dtype, n, seed=0):
    arch, n_inputs, channels, loss, logits, code = NETWORKS[key]
    model = Model.create(parse_arch(arch), n_inputs, loss, logits, seed=seed, channels=channels)
    rng = np.random.default_rng(seed + 23)
    # nonzero biases, so that a bias/kernel offset mix-up shows
    model.params[...] += rng.normal(0.0, 0.1, size=model.params.size).astype(np.float32)
    params = model.params.astype(dtype)
    X = rand(rng, (n, n_inputs), dtype)
    Y = np.ascontiguousarray(targets(rng, code, n, model.n_outputs), dtype=dtype)
    return model, params, X, Y, code


# --------------------------------------------------------------------------- layout

def test_layer_table_columns_of_a_windowed_network():
    # 22 inputs as 11 positions x 2: local k3 s2 -> 5 x 2; conv k2 -> 4 x 3 (flat 12); dense 2
    layers = parse_arch("2local3s2sigmoid-3conv2relu-2sigmoid")
    table = layer_table(layers, 22, channels=2)
    assert table.dtype == np.int64 and table.shape == (3, K.N_COLS) and K.N_COLS == 14
    cols = [K.KIND, K.N_IN, K.N_OUT, K.KERNEL, K.STRIDE, K.CHANNELS, K.POSITIONS, K.FILTERS]
    assert table[:, cols].tolist() == [
        [LAYER_KINDS["local"].code, 22, 10, 3, 2, 2, 5, 2],
        [LAYER_KINDS["conv"].code, 10, 12, 2, 1, 2, 4, 3],
        [LAYER_KINDS["dense"].code, 12, 2, 0, 1, 3, 2, 1],
    ]
    assert table[:, K.ACT].tolist() == [ACTIVATIONS[a] for a in ("sigmoid", "relu", "sigmoid")]
    sizes = [(5 * 3 * 2 * 2, 5 * 2), (2 * 2 * 3, 3), (12 * 2, 2)]
    offset = 0
    for row, (w, b) in zip(table, sizes):
        assert row[K.W_OFF] == offset and row[K.B_OFF] == offset + w
        offset += w + b
    assert table[:, K.A_OFF].tolist() == [0, 10, 22]


def test_kernel_kind_codes_match_the_layer_kind_table():
    assert (K.DENSE, K.CONV, K.LOCAL) == tuple(LAYER_KINDS[k].code
                                               for k in ("dense", "conv", "local"))
    assert sorted(kind.code for kind in LAYER_KINDS.values()) == list(range(len(LAYER_KINDS)))


def test_dense_layers_keep_their_table_columns():
    # the first seven columns of a dense network mean what they always meant
    table = layer_table(parse_arch("5relu-3linear"), 7)
    assert table[:, :7].tolist() == [[0, 7, 5, 1, 0, 35, 0], [0, 5, 3, 0, 40, 55, 5]]


def test_model_views_have_keras_shapes_and_share_the_flat_buffer():
    # 100 x 1 -> 9 x 1 -> 4 x 4 -> 1
    model = Model.create(parse_arch("1local20s10relu-4conv3s2relu-1sigmoid"), 100, "bce",
                         False, channels=1)
    assert model.channels == 1
    assert [model.kernel(i).shape for i in range(3)] == [(9, 20, 1, 1), (3, 1, 4), (16, 1)]
    assert [model.bias(i).shape for i in range(3)] == [(9, 1), (4,), (1,)]
    assert model.n_outputs == 1
    for i in range(3):
        assert np.shares_memory(model.kernel(i), model.params)
        assert np.shares_memory(model.bias(i), model.params)
    assert model.params.size == sum(model.kernel(i).size + model.bias(i).size for i in range(3))


def test_n_outputs_of_a_windowed_last_layer_is_its_flat_width():
    model = Model.create(parse_arch("4conv2s2tanh-2conv3linear"), 24, "mse", False, channels=3)
    assert model.n_outputs == 2 * 2             # 8 x 3 -> 4 x 4 -> 2 positions x 2 filters


def test_glorot_uses_keras_fans():
    assert glorot_fans("dense", (64, 25)) == (64, 25)
    assert glorot_fans("conv", (5, 3, 8)) == (15, 40)          # k*C, k*F
    assert glorot_fans("local", (9, 20, 2, 4)) == (360, 36)    # P*k*C, P*F
    # 100 x 3 -> 47 x 16 -> 43 x 8 -> 3
    model = Model.create(parse_arch("16conv7s2relu-8local5relu-3linear"), 300, "mse", False,
                         channels=3, seed=4)
    for i, (fan_in, fan_out) in enumerate([(7 * 3, 7 * 16), (43 * 5 * 16, 43 * 8),
                                           (43 * 8, 3)]):
        W = model.kernel(i)
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        assert np.abs(W).max() <= limit
        assert np.abs(W).max() > 0.95 * limit        # enough draws to come near the limit
        assert np.all(model.bias(i) == 0)


def test_scratch_is_sized_by_the_dense_layers_only():
    mixed = layer_table(parse_arch("32conv5relu-32conv3s2relu-10linear"), 40)
    dense = layer_table(parse_arch("10linear"), 17 * 32)
    assert K.scratch_size(mixed, 8) == K.scratch_size(dense, 8) == 544 * 10 + 8 * (544 + 10)
    assert K.scratch_size(layer_table(parse_arch("4conv5relu-2local3linear"), 20), 8) == 0


def test_dense_networks_run_the_dense_only_variant():
    # windowed=None lets Numba prune the conv and local branches (no conv kernel is compiled
    # for a dense network); a windowed layer reaching that variant is an error, not a wrong
    # answer
    assert Workspace(layer_table(parse_arch("5relu-3linear"), 7), 4, np.float32).windowed is None
    model, params, X, _, _ = setup_network("conv-local-dense", np.float64, 3)
    ws = Workspace(model.layer_table(), 3, np.float64)
    assert ws.windowed is True
    with pytest.raises(ValueError, match="dense only"):
        K.network_forward(ws.Z, ws.A, ws.T, params, ws.table, X, ws.cap, -1, None)
    dense = Model.create(parse_arch("5relu-3linear"), 7, "mse", False)
    Xd = rand(np.random.default_rng(0), (4, 7), np.float32)
    ws = Workspace(dense.layer_table(), 4, np.float32)
    naive.assert_close(K.network_forward(ws.Z, ws.A, ws.T, dense.params, ws.table, Xd, 4, -1, None),
                       K.network_forward(ws.Z, ws.A, ws.T, dense.params, ws.table, Xd, 4, -1, True),
                       np.float32)


# --------------------------------------------------------------------------- against NumPy

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,cap", [(1, 1), (5, 8), (64, 64)])
@pytest.mark.parametrize("key", list(NETWORKS))
def test_network_forward(dtype, key, n, cap):
    model, params, X, _, _ = setup_network(key, dtype, n)
    ws = Workspace(model.layer_table(), cap, dtype)
    out = K.network_forward(ws.Z, ws.A, ws.T, params, ws.table, X, ws.cap, -1, ws.windowed)
    net = reference_net(params, model.arch, model.n_inputs, model.channels)
    want = naive.forward_layers(net, X)[-1][1]
    assert out.shape == (n, model.n_outputs) and out.dtype == dtype
    naive.assert_close(out, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,cap", [(1, 1), (5, 8), (64, 64)])
@pytest.mark.parametrize("key", list(NETWORKS))
def test_network_forward_backward(dtype, key, n, cap):
    model, params, X, Y, code = setup_network(key, dtype, n, seed=n)
    ws = Workspace(model.layer_table(), cap, dtype)
    grads = np.full_like(params, np.nan)                  # every entry must be written
    loss_sum, correct = K.network_forward_backward(
        grads, ws.Z, ws.A, ws.dZ, ws.dA, ws.T, params, ws.table, X, Y, ws.cap, code, PROB_EPSILON,
        0, ws.windowed, None)
    net = reference_net(params, model.arch, model.n_inputs, model.channels)
    want_loss, want_grads, out = naive.forward_backward_layers(net, X, Y, code)
    flat = np.concatenate([np.concatenate([dW.ravel(), db.ravel()]) for dW, db in want_grads])
    naive.assert_close(loss_sum, want_loss, dtype)
    naive.assert_close(grads, flat, dtype)
    assert correct == naive.correct(code, out, Y)


@pytest.mark.parametrize("key", ["conv-local-dense", "local-conv-channels", "dense-then-conv",
                                 "stride-past-kernel"])
def test_reference_backprop_matches_finite_differences(key):
    """The reference itself: its gradient of the mean loss against central differences."""
    model, params, X, Y, code = setup_network(key, np.float64, 3, seed=5)

    def mean_loss(p):
        net = reference_net(p, model.arch, model.n_inputs, model.channels)
        return naive.loss(code, naive.forward_layers(net, X)[-1][1], Y)[0] / len(X)

    net = reference_net(params, model.arch, model.n_inputs, model.channels)
    _, grads, _ = naive.forward_backward_layers(net, X, Y, code)
    flat = np.concatenate([np.concatenate([dW.ravel(), db.ravel()]) for dW, db in grads])
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
@pytest.mark.parametrize("n,cap", [(13, 5), (1, 4), (70, 32)])
@pytest.mark.parametrize("key", ["conv-local-dense", "lecture", "conv-last"])
def test_evaluate_rows(dtype, key, n, cap):
    model, params, X, Y, code = setup_network(key, dtype, n, seed=3)
    s = model.predict_scratch(cap, dtype)      # P, T for cap rows a call
    dOut, Out = np.empty(cap * model.n_outputs, dtype), np.full((n, model.n_outputs), np.nan, dtype)
    loss_sum, correct = K.evaluate_rows(Out, s.P, dOut, s.T, params, s.table, X, Y, cap, code,
                                        PROB_EPSILON, s.windowed)
    # without Out (compiled without it): the same loss and count, bit for bit
    assert (loss_sum, correct) == K.evaluate_rows(None, s.P, dOut, s.T, params, s.table, X, Y,
                                                  cap, code, PROB_EPSILON, s.windowed)
    net = reference_net(params, model.arch, model.n_inputs, model.channels)
    out = naive.forward_layers(net, X)[-1][1]
    naive.assert_close(Out, out, dtype)
    want_loss, _ = naive.loss(code, out, Y)
    naive.assert_close(loss_sum, want_loss, dtype)
    assert correct == naive.correct(code, out, Y)


@pytest.mark.parametrize("key", list(NETWORKS))
def test_evaluate_outputs_are_model_outputs_bit_for_bit(key):
    model, _, X, Y, _ = setup_network(key, np.float32, 4100, seed=8)   # two chunks
    loss, accuracy, out = model.evaluate_outputs(X, Y)
    assert (loss, accuracy) == model.evaluate(X, Y)
    assert out.view(np.uint32).tolist() == model.outputs(X).view(np.uint32).tolist()


def test_model_outputs_match_the_reference():
    model, params, X, _, _ = setup_network("local-conv-channels", np.float32, 9, seed=6)
    net = reference_net(params, model.arch, model.n_inputs, model.channels)
    naive.assert_close(model.outputs(X), naive.forward_layers(net, X)[-1][1], np.float32)


# --------------------------------------------------------------------------- determinism

@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs at least 2 numba threads")
def test_training_a_conv_network_is_bit_identical_at_1_and_2_threads():
    # big enough that every conv kernel takes its multi-threaded branch (2^16 multiply-adds)
    rng = np.random.default_rng(8)
    X = rng.normal(size=(320, 80)).astype(np.float32)        # 40 positions x 2 channels
    y = rng.integers(0, 5, size=(320, 1)).astype(np.float32)
    config = TrainConfig(arch="16conv5relu-16conv3s2relu-8local3s2tanh-5linear",
                         loss="sparse_cce", logits=True, epochs=2, batch_size=64, channels=2)
    weights = []
    before = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            run = prepare(config, Dataset.from_arrays(X.copy(), y, "<random>"))
            initial = run.model.params.copy()
            list(fit(run))
            weights.append(run.model.params.copy())
    finally:
        numba.set_num_threads(before)
    assert not np.array_equal(weights[0], initial)
    assert np.array_equal(weights[0], weights[1])
