"""The register-tiled products of nncli.kernels_gemm against float64 NumPy: both orientations,
every edge (rows past a tile, columns past a panel, reductions past a block of 256), the
micro-kernel's accumulate and row-clamping contract, and bit-identity across thread counts."""

from __future__ import annotations

import os
import subprocess
import sys

import numba
import numpy as np
import pytest
from numba import njit

from nncli import kernels_gemm as G

try:
    import naive
except ImportError:                       # tests/ imported as a package
    from tests import naive

DTYPES = [np.float32, np.float64]
# (m, k, n): one element; less than a tile; exact tiles; ragged rows and columns; a reduction
# over two and three blocks of 256; more than one 64-row group; the parallel path (>= 2^16).
SHAPES = [(1, 1, 1), (3, 5, 7), (8, 16, 32), (16, 3, 64), (13, 300, 45), (70, 513, 33),
          (130, 40, 100), (32, 784, 128), (5, 1, 200), (32, 784, 25), (784, 32, 25)]


def rand(rng, shape, dtype):
    return np.ascontiguousarray(rng.standard_normal(shape), dtype=dtype)


@njit
def _tile_of(C):
    return G.tile(C)


@pytest.mark.parametrize("dtype", DTYPES)
def test_tile_fits_the_registers(dtype):
    mr, nr = _tile_of(np.empty((1, 1), dtype))
    lanes = nr // 2
    # two vectors a row, of 256 or 512 bits
    assert lanes * np.dtype(dtype).itemsize in (32, 64)
    assert mr in (6, 8)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_matmul_nn(dtype, m, k, n):
    rng = np.random.default_rng(m * 1000 + k + n)
    A, B = rand(rng, (m, k), dtype), rand(rng, (k, n), dtype)
    C = np.full((m, n), np.nan, dtype)
    G.matmul_nn(C, A, B)
    naive.assert_close(C, naive.f64(A) @ naive.f64(B), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_matmul_tn(dtype, m, k, n):
    rng = np.random.default_rng(m * 1000 + k + n + 1)
    A, B = rand(rng, (k, m), dtype), rand(rng, (k, n), dtype)
    C = np.full((m, n), np.nan, dtype)
    G.matmul_tn(C, A, B)
    naive.assert_close(C, naive.f64(A).T @ naive.f64(B), dtype)


@njit
def _micro(C, A, B, kc, rows, cols, accumulate, bias=None, D=None, act=-1):
    begin = 1 if accumulate else (0 if bias is None else 2)
    b = C.reshape(C.size) if bias is None else bias
    d = C.reshape(C.size) if D is None else D.reshape(D.size)
    G.micro_kernel(C.reshape(C.size), 0, C.shape[1], A.reshape(A.size), 0, A.shape[1], 1,
                   B.reshape(B.size), 0, B.shape[1], kc, rows, cols, begin, b, 0, d, 0, act)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("part", ["whole", "corner"])
def test_micro_kernel_contract(dtype, accumulate, part):
    """One tile: C[:rows, :cols] (+)= A[:rows, :kc] B[:kc, :cols]; the rest of C untouched."""
    mr, nr = _tile_of(np.empty((1, 1), dtype))
    rng = np.random.default_rng(7)
    kc = 37
    rows, cols = (mr, nr) if part == "whole" else (mr - 3, nr // 2 + 3)
    A, B = rand(rng, (mr, kc + 5), dtype), rand(rng, (kc + 5, nr), dtype)
    C0 = rand(rng, (mr, nr), dtype)
    C = C0.copy()
    _micro(C, A, B, kc, rows, cols, accumulate)
    want = naive.f64(C0)
    product = naive.f64(A)[:rows, :kc] @ naive.f64(B)[:kc, :cols]
    want[:rows, :cols] = product + (want[:rows, :cols] if accumulate else 0.0)
    naive.assert_close(C, want, dtype)
    assert np.array_equal(C[rows:], C0[rows:]) and np.array_equal(C[:, cols:], C0[:, cols:])


def test_micro_kernel_writes_nothing_past_its_columns():
    """A tile overhanging B and C: columns past cols (NaN in B) stay as they were in C."""
    mr, nr = _tile_of(np.empty((1, 1), np.float32))
    rng = np.random.default_rng(8)
    cols = 5
    A = rand(rng, (mr, 9), np.float32)
    B = np.full((9, nr), np.nan, np.float32)
    B[:, :cols] = rng.standard_normal((9, cols))
    C = np.full((mr, nr), 7.0, np.float32)
    _micro(C, A, B, 9, mr, cols, False)
    naive.assert_close(C[:, :cols], naive.f64(A) @ naive.f64(B[:, :cols]), np.float32)
    assert (C[:, cols:] == 7.0).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [-1, 0, 1])
def test_micro_kernel_bias_start_and_epilogue(dtype, act):
    """begin 2: the sums start from the bias; act 0/1: they also go to D, relu'd for 1."""
    mr, nr = _tile_of(np.empty((1, 1), dtype))
    rng = np.random.default_rng(9)
    kc, rows, cols = 11, mr - 1, nr - 5
    A, B = rand(rng, (mr, kc), dtype), rand(rng, (kc, nr), dtype)
    bias = rand(rng, nr, dtype)
    C = np.full((mr, nr), 7.0, dtype)
    D = np.full((mr, nr), 5.0, dtype)
    _micro(C, A, B, kc, rows, cols, False, bias, D, act)
    sums = naive.f64(A)[:rows] @ naive.f64(B)[:, :cols] + naive.f64(bias)[:cols]
    naive.assert_close(C[:rows, :cols], sums, dtype)
    if act == -1:
        assert (D == 5.0).all()
    else:
        want = np.where(sums > 0, sums, 0.0) if act == 1 else sums
        naive.assert_close(D[:rows, :cols], want, dtype)
        assert (D[rows:] == 5.0).all() and (D[:, cols:] == 5.0).all()
        assert act == 0 or (D[:rows, :cols] >= 0).all()
    assert (C[rows:] == 7.0).all() and (C[:, cols:] == 7.0).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [0, 1])
@pytest.mark.parametrize("m,k,n", [(5, 3, 20), (70, 513, 33), (33, 300, 64)])
def test_dense_nn_fuses_bias_and_activation(dtype, act, m, k, n):
    rng = np.random.default_rng(m + k + n + act)
    X, W, b = rand(rng, (m, k), dtype), rand(rng, (k, n), dtype), rand(rng, n, dtype)
    Z, A = np.full((m, n), np.nan, dtype), np.full((m, n), np.nan, dtype)
    G.dense_nn(Z, A, X, W, b, act)
    want = naive.dense(X, W, b)
    naive.assert_close(Z, want, dtype)
    naive.assert_close(A, naive.relu(want) if act == 1 else want, dtype)
    same = np.full((m, n), np.nan, dtype)            # A may be Z: the activations in place
    G.dense_nn(same, same, X, W, b, act)
    assert np.array_equal(same, A)


@pytest.mark.parametrize("dtype", DTYPES)
def test_micro_kernel_empty_reduction(dtype):
    """kc = 0 leaves the tile's sums empty: zeros, or C unchanged when accumulating."""
    mr, nr = _tile_of(np.empty((1, 1), dtype))
    A, B = np.ones((mr, 1), dtype), np.ones((1, nr), dtype)
    C = np.full((mr, nr), 3.0, dtype)
    _micro(C, A, B, 0, mr, nr, True)
    assert np.all(C == 3.0)
    _micro(C, A, B, 0, mr, nr, False)
    assert np.all(C == 0.0)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs at least 2 numba threads")
@pytest.mark.parametrize("product", ["nn", "tn"])
@pytest.mark.parametrize("m,k,n", [(150, 600, 100), (64, 300, 32)])
def test_bit_identical_across_thread_counts(product, m, k, n):
    rng = np.random.default_rng(3)
    A = rand(rng, (m, k) if product == "nn" else (k, m), np.float32)
    B = rand(rng, (k, n), np.float32)
    kernel = G.matmul_nn if product == "nn" else G.matmul_tn
    before = numba.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            C = np.empty((m, n), np.float32)
            kernel(C, A, B)
            results.append(C)
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(results[0], results[1])


# The 256-bit tile (6 x 16 floats, for CPUs without AVX-512) compiled and checked in a process
# of its own, whatever this machine has: LLVM is told the CPU is a Haswell.
NARROW_TARGET = """
import numpy as np
import nncli.model  # readies Numba: the cache folder of NNCLI_CACHE_DIR, not the checkout
from numba import njit
from nncli import kernels_gemm as G

tile = njit(lambda C: G.tile(C))
print(*tile(np.empty((1, 1), np.float32)), *tile(np.empty((1, 1), np.float64)))
rng = np.random.default_rng(0)
worst = 0.0
for dtype in (np.float32, np.float64):
    for m, k, n in [(3, 5, 7), (13, 300, 45), (70, 513, 33), (130, 40, 100), (784, 32, 25)]:
        A = rng.standard_normal((m, k)).astype(dtype)
        At = np.ascontiguousarray(A.T)
        B = rng.standard_normal((k, n)).astype(dtype)
        want = A.astype(np.float64) @ B
        C1 = np.full((m, n), np.nan, dtype)
        G.matmul_nn(C1, A, B)
        C2 = np.full((m, n), np.nan, dtype)
        G.matmul_tn(C2, At, B)
        scale = np.abs(want).max() * (1e-5 if dtype == np.float32 else 1e-12)
        worst = max(worst, np.abs(C1 - want).max() / scale, np.abs(C2 - want).max() / scale)
print(worst)
"""


def test_the_256_bit_tile_on_a_cpu_without_avx512(tmp_path):
    env = {**os.environ, "NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": "",
           "NNCLI_CACHE_DIR": str(tmp_path)}
    env.pop("NUMBA_CACHE_DIR", None)
    proc = subprocess.run([sys.executable, "-c", NARROW_TARGET], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    tiles, worst = proc.stdout.split("\n")[:2]
    assert tiles.split() == ["6", "16", "6", "8"]
    assert float(worst) < 1.0        # every element within the dtype's tolerance
