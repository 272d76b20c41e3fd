"""Compiled kernels of the 1-D windowed layers: convolution (weights shared across positions,
Keras ``Conv1D`` with padding "valid") and locally connected (weights of their own at every
position, tf.keras ``LocallyConnected1D``).

Layout (the conventions of nncli.kernels: outputs first, preallocated, ``d``-prefixed
gradients; float32 for training and float64 for gradcheck from the same source):

  X  (n, L*C)   rows of a signal of L positions x C channels, channels last: X[r, l*C + c]
  Z  (n, P*F)   P output positions x F filters, the same way: Z[r, p*F + f]
  conv:  W (k, C, F),     b (F,)
  local: W (P, k, C, F),  b (P, F)
  P = (L - k) // stride + 1; inputs past the last window (and between windows when
  stride > k) are never read, and get a zero gradient.

The window of position p is the contiguous slice X[r, p*s*C : (p*s + k)*C] (k*C values,
index t = j*C + c), so every layer is a set of products with W reshaped (k*C, F), and they run
through the register tiles of nncli.kernels_gemm, the windows read where they lie in X (an
implicit im2col: nothing is copied):

  conv forward   Z (n*P, F) = windows (n*P, k*C) @ W + b, one product whose rows are the
                 windows (gemm_gathered: each row of A at its own offset)
  conv dW        dW (k*C, F) = windows^T @ dZ (n*P, F), one product whose reduction steps are
                 the windows (gemm_gathered: each step at its own offset)
  local forward  Z[:, p] = windows of p (n, k*C: rows of X, evenly strided) @ W[p] + b[p]
  local dW       dW[p] = (windows of p)^T @ dZ[:, p]
  dX (both)      for each position p in order: dX[:, window p] += dZ[:, p] @ W[q]^T, the tiles
                 adding into dX (W^T copied once a call; q = 0 or p)
  db             sums of dZ's columns (sum_rows: one row of the tile), on one thread

The forward kernels store linear or relu into A as the tiles are stored (as dense_nn).
Internally the weights travel as W3 (Q, k*C, F) and the biases as B2 (Q, F), Q = 1 (shared) or
P (one set per position). Each call allocates the int64 offsets of the windows (n*P) and the
transposed weights: O(n*P + k*C*F) against the products' O(n*P*k*C*F).

Determinism: each element of Z and dW belongs to one tile, which sums it in the order of its
reduction index with one fused multiply-add per step (dW's steps: rows, then positions); each
element of dX is summed over positions p in order, each term over f in order; threads own
whole tiles (dX: whole rows of it); db is summed on one thread. So results are bit-identical
whatever the thread count and whatever the tile (8 x 32 with AVX-512, 6 x 16 without). Below
PARALLEL_MACS multiply-adds (nncli.kernel_flags) a kernel runs on one thread.

This module imports only numpy, numba, its compile flags (nncli.kernel_flags) and the tiles of
nncli.kernels_gemm, and reads no module globals other than those flags. Numba keys a cached
function on its own source file only; nncli's cache folder is keyed by a digest of every kernel
module and the flags (nncli.kernel_cache), so an edit to any of them recompiles.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from nncli.kernel_flags import PARALLEL, PARALLEL_MACS, SERIAL
from nncli.kernels_gemm import _int, gemm_gathered, panel, sum_rows, tile, tile_groups


# --------------------------------------------------------------------------- shape checks

# Positions P of a window of width k moved by stride over the rows of X (L*C wide); raises
# ValueError (instead of reading out of bounds) when Z, W3 or B2 do not fit that
@njit(**SERIAL)
def _positions(Z, X, W3, B2, k, C, stride):
    F = W3.shape[2]
    if stride < 1 or C < 1 or k < 1:
        raise ValueError("windowed layer: kernel width, channels and stride must be >= 1")
    if X.shape[1] % C != 0:
        raise ValueError("windowed layer: the width of X is not a multiple of the channels")
    L = X.shape[1] // C
    if L < k:
        raise ValueError("windowed layer: the window is wider than the input")
    P = (L - k) // stride + 1
    if Z.shape[0] != X.shape[0] or Z.shape[1] != P * F:
        raise ValueError("windowed layer: Z (or dZ) is not (n, positions * filters)")
    if W3.shape[1] != k * C or B2.shape[1] != F or B2.shape[0] != W3.shape[0]:
        raise ValueError("windowed layer: W and b do not fit each other")
    if W3.shape[0] != 1 and W3.shape[0] != P:
        raise ValueError("windowed layer: local weights are not one set per output position")
    return P


# --------------------------------------------------------------------------- index vectors
#
# Built in serial helpers: an array expression or np.arange inside a parallel function would
# become a parallel loop of its own, waking the threads.

# Offsets of the windows of X (n, L*C) flat: starts[r P + p] = r L*C + p sC
@njit(**SERIAL)
def _window_starts(n, P, LC, sC):
    starts = np.empty(n * P, np.int64)
    for r in range(n):
        for p in range(P):
            starts[r * P + p] = r * LC + p * sC
    return starts


# 0, 1, ..., count - 1: the offsets of the elements of one window
@njit(**SERIAL)
def _steps(count):
    steps = np.empty(count, np.int64)
    for i in range(count):
        steps[i] = i
    return steps


# WT[q, f, t] = W3[q, t, f]: the weights as the input gradient's products read them
@njit(**SERIAL)
def _transposed(W3):
    Q, kC, F = W3.shape
    WT = np.empty((Q, F, kC), W3.dtype)
    for q in range(Q):
        for t in range(kC):
            for f in range(F):
                WT[q, f, t] = W3[q, t, f]
    return WT


# --------------------------------------------------------------------------- groups of tiles

# dX rows r0..r1 = 0, then for each position p in order dX[r, p sC : p sC + kC] +=
# dZ[r, p F : (p+1) F] @ WT[q] (q = 0 shared or p): overlapping windows add up in the order of p,
# inputs no window reads stay 0
# dX (n, L*C), dZ (n, P*F), WT (Q, F, kC)
@njit(**SERIAL)
def _dx_group(dX, dZ, WT, sC, r0, r1):
    nr = tile(dX)[1]
    n, LC = dX.shape
    PF = dZ.shape[1]
    Q, F, kC = WT.shape
    zero = dX.dtype.type(0)
    for r in range(r0, r1):
        for i in range(LC):
            dX[r, i] = zero
    dx = dX.reshape(n * LC)
    wt = WT.reshape(Q * F * kC)
    for p in range(PF // F):
        q = 0 if Q == 1 else p
        for j0 in range(0, kC, nr):
            panel(dx, r0 * LC + p * sC + j0, LC, dZ.reshape(n * PF), r0 * PF + p * F, PF,
                  _int(1), None, None, wt, q * F * kC + j0, kC, F, r1 - r0, min(nr, kC - j0),
                  _int(1), wt, _int(0), dx, _int(-1))


# dX (n, L*C) from dZ (n, P*F) and W3 (Q, kC, F); threads own groups of rows
@njit(**PARALLEL)
def _windows_dx(dX, dZ, W3, sC):
    mr, nr = tile(dX)
    n = dZ.shape[0]
    WT = _transposed(W3)
    _, height, groups = tile_groups(n, 1, mr, nr)
    if n * dZ.shape[1] * W3.shape[1] < PARALLEL_MACS:
        for g in range(groups):
            _dx_group(dX, dZ, WT, sC, g * height, min(g * height + height, n))
    else:
        for g in prange(groups):
            _dx_group(dX, dZ, WT, sC, g * height, min(g * height + height, n))


# --------------------------------------------------------------------------- convolution

# Z[r, p, f] = b[f] + sum_{j, c} X[r, p*stride + j, c] W[j, c, f]   (windows share W), and
# A = act(Z) with act 0 (linear) or 1 (relu) as the tiles are stored; act -1 leaves A alone.
# One product of (n P) x (k C) windows by W (k C, F): its rows are the windows, read where they
# lie in X (gemm_gathered), so nothing is copied
# X (n, L*C), W (k, C, F), b (F,) -> Z, A (n, P*F), P = (L - k) // stride + 1
@njit(**PARALLEL)
def conv1d_forward(Z, A, X, W, b, stride, act):
    k, C, F = W.shape
    kC = k * C
    P = _positions(Z, X, W.reshape((1, kC, F)), b.reshape((1, F)), k, C, stride)
    n = X.shape[0]
    gemm_gathered(Z.reshape((n * P, F)), X.reshape(X.size),
                  _window_starts(n, P, X.shape[1], stride * C), _steps(kC), W.reshape((kC, F)),
                  _int(2), b, A.reshape((n * P, F)), act)


# dW[j, c, f] = sum_{r, p} X[r, p*stride + j, c] dZ[r, p, f]   db[f] = sum_{r, p} dZ[r, p, f]
# dX[r, p*stride + j, c] += sum_f dZ[r, p, f] W[j, c, f] over every window p (when with_dX)
# dW is windows^T dZ, a product whose reduction steps are the n P windows (gemm_gathered)
# dZ (n, P*F), X (n, L*C), W (k, C, F) -> dX (n, L*C), dW (k, C, F), db (F,)
@njit(**PARALLEL)
def conv1d_backward(dX, dW, db, dZ, X, W, stride, with_dX):
    k, C, F = W.shape
    kC = k * C
    sC = stride * C
    W3 = W.reshape((1, kC, F))
    P = _positions(dZ, X, W3, db.reshape((1, F)), k, C, stride)
    n = X.shape[0]
    dW2 = dW.reshape((kC, F))
    gemm_gathered(dW2, X.reshape(X.size), _steps(kC), _window_starts(n, P, X.shape[1], sC),
                  dZ.reshape((n * P, F)), _int(0), db, dW2, _int(-1))
    sum_rows(db, dZ.reshape(dZ.size), F)
    if with_dX:
        _windows_dx(dX, dZ, W3, sC)


# --------------------------------------------------------------------------- locally connected

# Rows r0..r1 of position p, columns j0..j0 + NR of Z = b[p] + windows @ W3[p], A = act(Z)
@njit(**SERIAL)
def _local_forward_group(Z, A, X, W3, B2, sC, p, r0, r1, j0, act):
    nr = tile(Z)[1]
    n, PF = Z.shape
    LC = X.shape[1]
    P, kC, F = W3.shape
    panel(Z.reshape(n * PF), r0 * PF + p * F + j0, PF, X.reshape(n * LC), r0 * LC + p * sC, LC,
          _int(1), None, None, W3.reshape(P * kC * F), p * kC * F + j0, F, kC, r1 - r0,
          min(nr, F - j0), _int(2), B2.reshape(P * F), p * F + j0, A.reshape(n * PF), act)


# Rows t0..t1, columns j0..j0 + NR of dW3[p] = windows of position p ^T @ dZ[:, p]
@njit(**SERIAL)
def _local_dw_group(dW3, X, dZ, sC, p, t0, t1, j0):
    nr = tile(dW3)[1]
    P, kC, F = dW3.shape
    n, LC = X.shape
    PF = dZ.shape[1]
    dw = dW3.reshape(P * kC * F)
    panel(dw, (p * kC + t0) * F + j0, F, X.reshape(n * LC), p * sC + t0, _int(1), LC, None, None,
          dZ.reshape(n * PF), p * F + j0, PF, n, t1 - t0, min(nr, F - j0), _int(0), dw, _int(0),
          dw, _int(-1))


# Z[r, p, f] = b[p, f] + sum_{j, c} X[r, p*stride + j, c] W[p, j, c, f]   (weights per position),
# A = act(Z) as conv1d_forward. P products of n x (k C) windows by W[p] (k C, F), the windows
# read in place (strided rows of X); threads own (rows, position, columns) groups
# X (n, L*C), W (P, k, C, F), b (P, F) -> Z, A (n, P*F), P = (L - k) // stride + 1
@njit(**PARALLEL)
def local1d_forward(Z, A, X, W, b, stride, act):
    P, k, C, F = W.shape
    W3 = W.reshape((P, k * C, F))
    _positions(Z, X, W3, b, k, C, stride)
    mr, nr = tile(Z)
    n = X.shape[0]
    panels, height, groups = tile_groups(n, F, mr, nr)
    if n * Z.shape[1] * W3.shape[1] < PARALLEL_MACS:
        for q in range(P * groups):
            g = q % groups // panels
            _local_forward_group(Z, A, X, W3, b, stride * C, q // groups, g * height,
                                 min(g * height + height, n), q % panels * nr, act)
    else:
        for q in prange(P * groups):
            g = q % groups // panels
            _local_forward_group(Z, A, X, W3, b, stride * C, q // groups, g * height,
                                 min(g * height + height, n), q % panels * nr, act)


# dW[p, j, c, f] = sum_r X[r, p*stride + j, c] dZ[r, p, f]   db[p, f] = sum_r dZ[r, p, f]
# dX[r, p*stride + j, c] += sum_f dZ[r, p, f] W[p, j, c, f] over every window p (when with_dX)
# dZ (n, P*F), X (n, L*C), W (P, k, C, F) -> dX (n, L*C), dW (P, k, C, F), db (P, F)
@njit(**PARALLEL)
def local1d_backward(dX, dW, db, dZ, X, W, stride, with_dX):
    P, k, C, F = W.shape
    kC = k * C
    sC = stride * C
    W3 = W.reshape((P, kC, F))
    dW3 = dW.reshape((P, kC, F))
    _positions(dZ, X, W3, db, k, C, stride)
    mr, nr = tile(dW)
    panels, height, groups = tile_groups(kC, F, mr, nr)
    if X.shape[0] * P * kC * F < PARALLEL_MACS:
        for q in range(P * groups):
            g = q % groups // panels
            _local_dw_group(dW3, X, dZ, sC, q // groups, g * height, min(g * height + height, kC),
                            q % panels * nr)
    else:
        for q in prange(P * groups):
            g = q % groups // panels
            _local_dw_group(dW3, X, dZ, sC, q // groups, g * height, min(g * height + height, kC),
                            q % panels * nr)
    sum_rows(db.reshape(P * F), dZ.reshape(dZ.size), P * F)
    if with_dX:
        _windows_dx(dX, dZ, W3, sC)
