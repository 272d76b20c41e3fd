"""Products of narrow dense layers as dot products of rows, and the transposes they need.

A dense layer's products run through nncli.kernels_gemm's register tiles (the processor's peak)
whenever the output is at least half a tile wide (16 columns with AVX-512). The kernels here
serve the narrower ones (the last layer's 10 outputs), for nncli.kernels' dense_forward and
dense_backward: C = A @ B^T with A and B row-major (matmul_nt), so each output element is a dot
product of two contiguous rows and the reduction vectorises; the operand in the wrong
orientation is transposed into scratch first (transpose; O(rows x cols) against the product's
O(rows x cols x n)). Outputs come in 4 x 4 tiles: each step of the reduction loads 4 vectors of
A and 4 of B for 16 multiply-adds into 16 vector accumulators. Reductions shorter than 64 keep
4 x 1 tiles: there the 16 horizontal sums at the end of a tile cost more than its loop.

Conventions of nncli.kernels: outputs first, preallocated; float32 and float64 from the same
source. Determinism: threads own groups of 16 rows of C (stripes of 32 columns of a transpose)
and each element is summed in one fixed order, so results do not depend on the thread count.
Work below 2^16 multiply-adds stays on one thread: waking the others costs more than they save.

This module imports only numba and the compile flags (nncli.kernel_flags), and reads no module
globals other than those flags; nncli's cache folder is keyed by a digest of every kernel
module (nncli.kernel_cache), so an edit here recompiles nncli.kernels' functions too.
"""

from __future__ import annotations

from numba import njit, prange

from nncli.kernel_flags import FAST, PARALLEL, SERIAL


# C[i:i+4, j:j+4] = A[i:i+4] @ B[j:j+4]^T, sixteen dot products in one pass over the rows
@njit(fastmath=FAST, **SERIAL)
def _dot_tile(C, A, B, i, j):
    a0 = A[i]
    a1 = A[i + 1]
    a2 = A[i + 2]
    a3 = A[i + 3]
    b0 = B[j]
    b1 = B[j + 1]
    b2 = B[j + 2]
    b3 = B[j + 3]
    z = C.dtype.type(0)
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = z
    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = z
    for t in range(a0.shape[0]):
        x0 = a0[t]
        x1 = a1[t]
        x2 = a2[t]
        x3 = a3[t]
        y0 = b0[t]
        y1 = b1[t]
        y2 = b2[t]
        y3 = b3[t]
        s00 += x0 * y0
        s01 += x0 * y1
        s02 += x0 * y2
        s03 += x0 * y3
        s10 += x1 * y0
        s11 += x1 * y1
        s12 += x1 * y2
        s13 += x1 * y3
        s20 += x2 * y0
        s21 += x2 * y1
        s22 += x2 * y2
        s23 += x2 * y3
        s30 += x3 * y0
        s31 += x3 * y1
        s32 += x3 * y2
        s33 += x3 * y3
    C[i, j], C[i, j + 1], C[i, j + 2], C[i, j + 3] = s00, s01, s02, s03
    C[i + 1, j], C[i + 1, j + 1], C[i + 1, j + 2], C[i + 1, j + 3] = s10, s11, s12, s13
    C[i + 2, j], C[i + 2, j + 1], C[i + 2, j + 2], C[i + 2, j + 3] = s20, s21, s22, s23
    C[i + 3, j], C[i + 3, j + 1], C[i + 3, j + 2], C[i + 3, j + 3] = s30, s31, s32, s33


# c_r[j] = a_r . B[j] for r = 0..3: four rows of C, each row of B loaded once for all four
@njit(fastmath=FAST, **SERIAL)
def _dot4(c0, c1, c2, c3, a0, a1, a2, a3, B):
    zero = c0.dtype.type(0)
    for j in range(B.shape[0]):
        b = B[j]
        s0 = zero
        s1 = zero
        s2 = zero
        s3 = zero
        for t in range(b.shape[0]):
            bt = b[t]
            s0 += a0[t] * bt
            s1 += a1[t] * bt
            s2 += a2[t] * bt
            s3 += a3[t] * bt
        c0[j] = s0
        c1[j] = s1
        c2[j] = s2
        c3[j] = s3


@njit(fastmath=FAST, **SERIAL)
def _dot1(c0, a0, B):
    zero = c0.dtype.type(0)
    for j in range(B.shape[0]):
        b = B[j]
        s0 = zero
        for t in range(b.shape[0]):
            s0 += a0[t] * b[t]
        c0[j] = s0


# C = A @ B^T for a group of rows: 4 x 4 tiles (4 x 1 for short reductions), then the edges
@njit(**SERIAL)
def _dot_group(C, A, B):
    g = C.shape[0]
    g4 = g - g % 4
    p4 = B.shape[0] - B.shape[0] % 4 if B.shape[1] >= 64 else 0
    for j in range(0, p4, 4):
        for r in range(0, g4, 4):
            _dot_tile(C, A, B, r, j)
    for r in range(0, g4, 4):
        _dot4(C[r, p4:], C[r + 1, p4:], C[r + 2, p4:], C[r + 3, p4:],
              A[r], A[r + 1], A[r + 2], A[r + 3], B[p4:])
    for r in range(g4, g):
        _dot1(C[r], A[r], B)


# C = A @ B^T
# A (m, k), B (p, k) -> C (m, p)
@njit(**PARALLEL)
def matmul_nt(C, A, B):
    m = C.shape[0]
    if m * B.shape[0] * B.shape[1] < 65536:
        _dot_group(C, A, B)
        return
    for q in prange((m + 15) // 16):
        r0 = q * 16
        r1 = min(r0 + 16, m)
        _dot_group(C[r0:r1], A[r0:r1], B)


# out[j:j+4, i:i+4] = A[i:i+4, j:j+4]^T: sixteen loads of four short rows, then four short rows
# stored (the compiler turns them into vector shuffles: 0.35 ns an element here, against 0.7 for
# an element-by-element loop)
@njit(**SERIAL)
def _transpose4(out, A, i, j):
    r0 = A[i]
    r1 = A[i + 1]
    r2 = A[i + 2]
    r3 = A[i + 3]
    a00, a01, a02, a03 = r0[j], r0[j + 1], r0[j + 2], r0[j + 3]
    a10, a11, a12, a13 = r1[j], r1[j + 1], r1[j + 2], r1[j + 3]
    a20, a21, a22, a23 = r2[j], r2[j + 1], r2[j + 2], r2[j + 3]
    a30, a31, a32, a33 = r3[j], r3[j + 1], r3[j + 2], r3[j + 3]
    out[j, i], out[j, i + 1], out[j, i + 2], out[j, i + 3] = a00, a10, a20, a30
    out[j + 1, i], out[j + 1, i + 1], out[j + 1, i + 2], out[j + 1, i + 3] = a01, a11, a21, a31
    out[j + 2, i], out[j + 2, i + 1], out[j + 2, i + 2], out[j + 2, i + 3] = a02, a12, a22, a32
    out[j + 3, i], out[j + 3, i + 1], out[j + 3, i + 2], out[j + 3, i + 3] = a03, a13, a23, a33


# Columns j0..j1 of A into rows j0..j1 of out: 4 x 4 blocks, then the ragged edges
@njit(**SERIAL)
def _transpose_stripe(out, A, j0, j1):
    m = A.shape[0]
    m4 = m - m % 4
    j4 = j0 + (j1 - j0) - (j1 - j0) % 4
    for i in range(0, m4, 4):
        for j in range(j0, j4, 4):
            _transpose4(out, A, i, j)
    for i in range(m):
        for j in range(j4, j1):
            out[j, i] = A[i, j]
    for i in range(m4, m):
        for j in range(j0, j4):
            out[j, i] = A[i, j]


# out = A^T in stripes of 32 columns of A (a stripe's rows of out stay in L1); threads own stripes
# from 2^14 elements (a 32 x 784 batch already gains from a second thread)
# A (m, p) -> out (p, m)
@njit(**PARALLEL)
def transpose(out, A):
    m, p = A.shape
    stripes = (p + 31) // 32
    if m * p < 16384:
        for q in range(stripes):
            _transpose_stripe(out, A, q * 32, min(q * 32 + 32, p))
        return
    for q in prange(stripes):
        _transpose_stripe(out, A, q * 32, min(q * 32 + 32, p))
