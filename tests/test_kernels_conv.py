"""The 1-D convolution and locally connected kernels (nncli.kernels_conv) against a plain-NumPy
float64 reference written here from the definitions (windows cut with sliding_window_view,
products with einsum, the input gradient scattered window by window), central differences
through a two-layer stack, and bit-identical results at 1 and 2 threads."""

from __future__ import annotations

import os
import subprocess
import sys

import numba
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from nncli import kernels_conv as KC

try:
    import naive
except ImportError:                       # tests/ imported as a package
    from tests import naive

DTYPES = [np.float32, np.float64]

# (n, L, C, kernel, stride, filters): n=1, C=1 and 3, stride 1 and >1, a window as wide as the
# input, windows that leave inputs unread at the end or between them (stride > kernel), the
# lecture's first layer, sizes past the kernels' one-thread threshold (2^16 multiply-adds), and
# for the register tiles: rows and filters that are not a multiple of a tile (8 x 32 with
# AVX-512, 6 x 16 without), filters wider than a tile, windows of k*C > 256 (reductions in
# blocks of 256), MNIST-1D's second layer at an odd batch
CASES = [
    (1, 1, 1, 1, 1, 1),
    (1, 7, 1, 3, 1, 2),
    (5, 11, 3, 4, 3, 2),
    (4, 20, 1, 5, 2, 3),
    (3, 9, 2, 2, 3, 5),
    (6, 13, 3, 13, 1, 1),
    (2, 100, 1, 20, 10, 1),
    (64, 50, 3, 7, 2, 16),
    (33, 40, 4, 3, 2, 8),
    (7, 12, 40, 7, 2, 37),
    (13, 36, 32, 3, 2, 32),
]
IDS = ["n{}-L{}-C{}-k{}-s{}-F{}".format(*case) for case in CASES]


def positions(L, k, s):
    return (L - k) // s + 1


def rand(rng, shape, dtype):
    return np.ascontiguousarray(rng.normal(size=shape), dtype=dtype)


# --------------------------------------------------------------------------- NumPy reference

def windows(X, C, k, s):
    """(n, P, k, C) float64: window p of row r is X[r] read as (L, C), positions p*s .. p*s+k-1."""
    X = np.asarray(X, dtype=np.float64)
    n, L = X.shape[0], X.shape[1] // C
    P = positions(L, k, s)
    win = sliding_window_view(X.reshape(n, L, C), k, axis=1)     # (n, L-k+1, C, k)
    return win[:, ::s][:, :P].transpose(0, 1, 3, 2)


def ref_forward(kind, X, W, b, s):
    """Z (n, P*F): conv W (k, C, F), b (F,); local W (P, k, C, F), b (P, F)."""
    W, b = np.asarray(W, np.float64), np.asarray(b, np.float64)
    k, C = W.shape[-3], W.shape[-2]
    Xw = windows(X, C, k, s)
    spec = "npkc,kcf->npf" if kind == "conv" else "npkc,pkcf->npf"
    Z = np.einsum(spec, Xw, W) + b
    return Z.reshape(len(Z), -1)


def ref_backward(kind, dZ, X, W, s):
    """(dX, dW, db) of Z = ref_forward(kind, X, W, b, s) given dZ (n, P*F)."""
    X, W = np.asarray(X, np.float64), np.asarray(W, np.float64)
    k, C, F = W.shape[-3:]
    Xw = windows(X, C, k, s)
    n, P = Xw.shape[:2]
    dZ3 = np.asarray(dZ, np.float64).reshape(n, P, F)
    if kind == "conv":
        dW = np.einsum("npkc,npf->kcf", Xw, dZ3)
        db = dZ3.sum(axis=(0, 1))
    else:
        dW = np.einsum("npkc,npf->pkcf", Xw, dZ3)
        db = dZ3.sum(axis=0)
    dX = np.zeros((n, X.shape[1] // C, C))
    for p in range(P):
        Wp = W if kind == "conv" else W[p]
        dX[:, p * s:p * s + k, :] += np.einsum("nf,kcf->nkc", dZ3[:, p], Wp)
    return dX.reshape(n, -1), dW, db


def weight_shapes(kind, L, C, k, s, F):
    if kind == "conv":
        return (k, C, F), (F,)
    P = positions(L, k, s)
    return (P, k, C, F), (P, F)


FORWARD = {"conv": KC.conv1d_forward, "local": KC.local1d_forward}


def forward(kind, Z, X, W, b, stride):
    """Z = the layer's sums (act -1: no activation, A not written)."""
    FORWARD[kind](Z, Z, X, W, b, stride, -1)


BACKWARD = {"conv": KC.conv1d_backward, "local": KC.local1d_backward}


def setup(kind, case, dtype, seed=0):
    n, L, C, k, s, F = case
    rng = np.random.default_rng([seed, *case])
    w_shape, b_shape = weight_shapes(kind, L, C, k, s, F)
    X = rand(rng, (n, L * C), dtype)
    W = rand(rng, w_shape, dtype)
    b = rand(rng, b_shape, dtype)
    dZ = rand(rng, (n, positions(L, k, s) * F), dtype)
    return X, W, b, dZ


def test_reference_windows_by_hand():
    # L=5, C=2, k=2, s=2: windows at positions 0-1 and 2-3; position 4 is never read
    X = np.arange(10.0).reshape(1, 10)
    Xw = windows(X, 2, 2, 2)
    assert Xw.shape == (1, 2, 2, 2)
    assert Xw[0, 0].tolist() == [[0, 1], [2, 3]] and Xw[0, 1].tolist() == [[4, 5], [6, 7]]


# --------------------------------------------------------------------------- against the reference

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("kind", ["conv", "local"])
def test_forward(kind, case, dtype):
    X, W, b, dZ = setup(kind, case, dtype)
    Z = np.full(dZ.shape, np.nan, dtype=dtype)              # every entry must be written
    forward(kind, Z, X, W, b, case[4])
    assert Z.dtype == dtype
    naive.assert_close(Z, ref_forward(kind, X, W, b, case[4]), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [-1, 0, 1])
@pytest.mark.parametrize("kind", ["conv", "local"])
def test_forward_applies_linear_or_relu_as_it_stores(kind, act, dtype):
    case = (13, 36, 3, 3, 2, 37)             # two panels of filters, rows past a tile
    X, W, b, dZ = setup(kind, case, dtype, seed=5)
    Z = np.full(dZ.shape, np.nan, dtype=dtype)
    sentinel = rand(np.random.default_rng(5), dZ.shape, dtype)
    A = sentinel.copy()
    FORWARD[kind](Z, A, X, W, b, case[4], act)
    want = ref_forward(kind, X, W, b, case[4])
    naive.assert_close(Z, want, dtype)
    if act == -1:
        assert np.array_equal(A, sentinel)
    else:
        assert np.array_equal(A, np.maximum(Z, 0) if act == 1 else Z)
        assert (act == 1) == bool(np.any(A != Z))
    # in place, as prediction runs it: A is Z
    FORWARD[kind](A, A, X, W, b, case[4], 1)
    assert np.array_equal(A, np.maximum(Z, 0))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("kind", ["conv", "local"])
def test_backward(kind, case, dtype):
    X, W, b, dZ = setup(kind, case, dtype, seed=1)
    # garbage in the outputs: they are overwritten (dX zeroed, then windows accumulated)
    dX = np.full(X.shape, 7.0, dtype=dtype)
    dW = np.full(W.shape, np.nan, dtype=dtype)
    db = np.full(b.shape, np.nan, dtype=dtype)
    BACKWARD[kind](dX, dW, db, dZ, X, W, case[4], True)
    want_dX, want_dW, want_db = ref_backward(kind, dZ, X, W, case[4])
    naive.assert_close(dX, want_dX, dtype)
    naive.assert_close(dW, want_dW, dtype)
    naive.assert_close(db, want_db, dtype)


@pytest.mark.parametrize("kind", ["conv", "local"])
def test_unread_inputs_get_exactly_zero_gradient(kind):
    case = (3, 9, 2, 2, 3, 5)                 # windows at 0-1, 3-4, 6-7: inputs 2, 5 and 8 unread
    X, W, b, dZ = setup(kind, case, np.float64, seed=2)
    dX = np.full(X.shape, np.nan)
    BACKWARD[kind](dX, np.empty_like(W), np.empty_like(b), dZ, X, W, 3, True)
    dX3 = dX.reshape(3, 9, 2)
    assert np.all(dX3[:, [2, 5, 8]] == 0.0)
    assert np.all(dX3[:, [0, 1, 3, 4, 6, 7]] != 0.0)


@pytest.mark.parametrize("kind", ["conv", "local"])
def test_overlapping_windows_accumulate(kind):
    # k=3, s=1, one filter, all weights 1: input l is read by min(l+1, 3, L-l, P) windows
    n, L = 1, 6
    P = positions(L, 3, 1)
    W = np.ones((3, 1, 1)) if kind == "conv" else np.ones((P, 3, 1, 1))
    b = np.zeros(1) if kind == "conv" else np.zeros((P, 1))
    dX = np.empty((n, L))
    BACKWARD[kind](dX, np.empty_like(W), np.empty_like(b), np.ones((n, P)), np.ones((n, L)),
                   W, 1, True)
    assert dX.tolist() == [[1.0, 2.0, 3.0, 3.0, 2.0, 1.0]]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["conv", "local"])
def test_backward_without_dX_leaves_dX_untouched(kind, dtype):
    case = (5, 11, 3, 4, 3, 2)
    X, W, b, dZ = setup(kind, case, dtype, seed=3)
    sentinel = rand(np.random.default_rng(3), X.shape, dtype)
    dX = sentinel.copy()
    dW, db = np.empty_like(W), np.empty_like(b)
    BACKWARD[kind](dX, dW, db, dZ, X, W, case[4], False)
    assert np.array_equal(dX, sentinel)
    _, want_dW, want_db = ref_backward(kind, dZ, X, W, case[4])
    naive.assert_close(dW, want_dW, dtype)
    naive.assert_close(db, want_db, dtype)


def test_conv_is_local_with_the_same_weights_everywhere():
    case = (4, 20, 2, 5, 3, 3)
    X, W, b, _ = setup("conv", case, np.float64, seed=4)
    P = positions(20, 5, 3)
    Zc = np.empty((4, P * 3))
    Zl = np.empty((4, P * 3))
    KC.conv1d_forward(Zc, Zc, X, W, b, 3, -1)
    KC.local1d_forward(Zl, Zl, X, np.ascontiguousarray(np.broadcast_to(W, (P, 5, 2, 3))),
                       np.ascontiguousarray(np.broadcast_to(b, (P, 3))), 3, -1)
    np.testing.assert_allclose(Zc, Zl, rtol=1e-14)


@pytest.mark.parametrize("kind", ["conv", "local"])
def test_shapes_that_do_not_fit_raise_instead_of_reading_out_of_bounds(kind):
    X, W, b, dZ = setup(kind, (2, 10, 1, 3, 2, 2), np.float64)
    with pytest.raises(ValueError, match="positions"):
        forward(kind, np.empty((2, dZ.shape[1] + 2)), X, W, b, 2)
    with pytest.raises(ValueError, match="positions"):
        forward(kind, np.empty(dZ.shape), X, W, b, 1)        # stride 1 gives more positions
    with pytest.raises(ValueError, match="wider"):
        forward(kind, np.empty((2, 2)), np.ascontiguousarray(X[:, :2]), W, b, 2)
    with pytest.raises(ValueError, match="positions"):
        BACKWARD[kind](np.empty_like(X), np.empty_like(W), np.empty_like(b),
                       np.ascontiguousarray(dZ[:, :-2]), X, W, 2, True)


# --------------------------------------------------------------------------- finite differences

def stack_loss_and_grads(kinds, params, X, G, shape):
    """Scalar loss sum(G * tanh(layer2(tanh(layer1(X))))) through the kernels, with the
    kernels' gradients of it. shape = (C, (k1, s1, F1), (k2, s2, F2))."""
    C, (k1, s1, F1), (k2, s2, F2) = shape
    W1, b1, W2, b2 = params
    n = X.shape[0]
    P1 = positions(X.shape[1] // C, k1, s1)
    P2 = positions(P1, k2, s2)
    Z1 = np.empty((n, P1 * F1))
    forward(kinds[0], Z1, X, W1, b1, s1)
    A1 = np.tanh(Z1)
    Z2 = np.empty((n, P2 * F2))
    forward(kinds[1], Z2, A1, W2, b2, s2)
    A2 = np.tanh(Z2)
    loss = float((G * A2).sum())
    dZ2 = G * (1.0 - A2 ** 2)
    dA1, dW2, db2 = np.empty_like(A1), np.empty_like(W2), np.empty_like(b2)
    BACKWARD[kinds[1]](dA1, dW2, db2, dZ2, A1, W2, s2, True)
    dZ1 = dA1 * (1.0 - A1 ** 2)
    dX, dW1, db1 = np.empty_like(X), np.empty_like(W1), np.empty_like(b1)
    BACKWARD[kinds[0]](dX, dW1, db1, dZ1, X, W1, s1, True)
    return loss, [dW1, db1, dW2, db2], dX


@pytest.mark.parametrize("kinds", [("conv", "local"), ("local", "conv"), ("conv", "conv"),
                                   ("local", "local")])
def test_gradients_match_central_differences(kinds):
    C, l1, l2 = 2, (3, 2, 3), (2, 1, 2)       # 13 positions x 2 -> 6 x 3 -> 5 x 2
    L, n = 13, 3
    rng = np.random.default_rng(7)
    P1 = positions(L, l1[0], l1[1])
    shapes = [weight_shapes(kinds[0], L, C, *l1), weight_shapes(kinds[1], P1, l1[2], *l2)]
    params = [rng.normal(0, 0.5, size=shp) for pair in shapes for shp in pair]
    X = rng.normal(size=(n, L * C))
    G = rng.normal(size=(n, positions(P1, l2[0], l2[1]) * l2[2]))
    shape = (C, l1, l2)
    _, grads, dX = stack_loss_and_grads(kinds, params, X, G, shape)
    h = 1e-6
    for which, (value, grad) in enumerate(zip(params + [X], grads + [dX])):
        numeric = np.empty_like(value)
        for i in np.ndindex(value.shape):
            saved = value[i]
            value[i] = saved + h
            up = stack_loss_and_grads(kinds, params, X, G, shape)[0]
            value[i] = saved - h
            down = stack_loss_and_grads(kinds, params, X, G, shape)[0]
            value[i] = saved
            numeric[i] = (up - down) / (2 * h)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8,
                                   err_msg=f"{kinds}: {['dW1', 'db1', 'dW2', 'db2', 'dX'][which]}")


# --------------------------------------------------------------------------- determinism

@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs at least 2 numba threads")
@pytest.mark.parametrize("kind", ["conv", "local"])
def test_bit_identical_across_thread_counts(kind):
    case = (96, 60, 3, 7, 2, 16)              # far past the one-thread threshold
    X, W, b, dZ = setup(kind, case, np.float32, seed=11)

    def run():
        Z = np.empty(dZ.shape, np.float32)
        forward(kind, Z, X, W, b, case[4])
        dX, dW, db = np.empty_like(X), np.empty_like(W), np.empty_like(b)
        BACKWARD[kind](dX, dW, db, dZ, X, W, case[4], True)
        return Z, dX, dW, db

    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = run()
        numba.set_num_threads(2)
        two = run()
    finally:
        numba.set_num_threads(before)
    for a, c in zip(one, two):
        assert np.array_equal(a, c)
    assert all(np.abs(a).max() > 0 for a in one)


# The kernels compiled for a CPU without AVX-512 (LLVM told it is a Haswell: the 6 x 16 tile)
# give the same bits as this process's (8 x 32 with AVX-512): each element is summed in one
# order whatever the tile
OTHER_TARGET = """
import sys
import numpy as np
import nncli.model  # readies Numba: the cache folder of NNCLI_CACHE_DIR
from numba import njit
from nncli import kernels_conv as KC, kernels_gemm as G

print(*njit(lambda C: G.tile(C))(np.empty((1, 1), np.float32)))
data = np.load(sys.argv[1])
for kind, forward, backward in (("conv", KC.conv1d_forward, KC.conv1d_backward),
                                ("local", KC.local1d_forward, KC.local1d_backward)):
    X, W, b, dZ = (data[f"{kind}_{name}"] for name in ("X", "W", "b", "dZ"))
    Z, A = np.empty_like(dZ), np.empty_like(dZ)
    forward(Z, A, X, W, b, 2, 1)
    dX, dW, db = np.empty_like(X), np.empty_like(W), np.empty_like(b)
    backward(dX, dW, db, dZ, X, W, 2, True)
    for name, value in zip(("Z", "A", "dX", "dW", "db"), (Z, A, dX, dW, db)):
        print(kind, name, value.tobytes().hex())
"""


def test_a_cpu_without_avx512_gives_the_same_bits(tmp_path):
    case = (45, 40, 32, 3, 2, 32)           # MNIST-1D's second layer, 45 rows: no tile is whole
    arrays, want = {}, []
    for kind in ("conv", "local"):
        X, W, b, dZ = setup(kind, case, np.float32, seed=13)
        arrays.update({f"{kind}_X": X, f"{kind}_W": W, f"{kind}_b": b, f"{kind}_dZ": dZ})
        Z, A = np.empty_like(dZ), np.empty_like(dZ)
        FORWARD[kind](Z, A, X, W, b, 2, 1)
        dX, dW, db = np.empty_like(X), np.empty_like(W), np.empty_like(b)
        BACKWARD[kind](dX, dW, db, dZ, X, W, 2, True)
        want += [f"{kind} {name} {value.tobytes().hex()}"
                 for name, value in zip(("Z", "A", "dX", "dW", "db"), (Z, A, dX, dW, db))]
    np.savez(tmp_path / "data.npz", **arrays)
    env = {**os.environ, "NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": "",
           "NNCLI_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("NUMBA_CACHE_DIR", None)
    proc = subprocess.run([sys.executable, "-c", OTHER_TARGET, str(tmp_path / "data.npz")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    tile, *got = proc.stdout.splitlines()
    assert tile == "6 16"
    for line, expected in zip(got, want, strict=True):
        assert line == expected, line.split()[:2]
