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
index t = j*C + c), so every position is a small dense product with W reshaped (k*C, F): the
conv weights for every p, the local weights W[p] for position p. Internally the weights travel
as W3 (Q, k*C, F) and the biases as B2 (Q, F), Q = 1 (shared) or P (one set per position).

Determinism: forward and dX give each batch row to one thread; dW gives each thread whole rows
of W reshaped (k*C, F) (conv) or whole (position, t) rows (local) and sums over batch rows and
positions in one fixed order; db is summed on one thread. Results are bit-identical whatever the
thread count. Below 2^16 multiply-adds a kernel runs on one thread through the same row
functions (waking threads costs more than it saves).

This module imports only numba and its compile flags (nncli.kernel_flags), and reads no module
globals other than those flags. Numba keys a cached function on its own source file only;
nncli's cache folder is keyed by a digest of every kernel module and the flags
(nncli.kernel_cache), so an edit to any of them recompiles.
"""

from __future__ import annotations

from numba import njit, prange

from nncli.kernel_flags import FAST, PARALLEL, SERIAL


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


# --------------------------------------------------------------------------- row functions

# z (P*F,) = for each position p: B2[q] + x[p*sC : p*sC + kC] @ W3[q], q = 0 or p
@njit(fastmath=FAST, **SERIAL)
def _forward_row(z, x, W3, B2, sC):
    kC = W3.shape[1]
    F = W3.shape[2]
    P = z.shape[0] // F
    for p in range(P):
        q = 0 if W3.shape[0] == 1 else p
        W2 = W3[q]
        bq = B2[q]
        zp = z[p * F:(p + 1) * F]
        for f in range(F):
            zp[f] = bq[f]
        base = p * sC
        for t in range(kC):
            xv = x[base + t]
            w = W2[t]
            for f in range(F):
                zp[f] += xv * w[f]


# dx (L*C,) = sum over positions p of dz[p*F : (p+1)*F] @ W3[q]^T placed at window p
# (overlapping windows add up; inputs no window reads stay 0)
@njit(fastmath=FAST, **SERIAL)
def _dx_row(dx, dz, W3, sC):
    kC = W3.shape[1]
    F = W3.shape[2]
    P = dz.shape[0] // F
    zero = dx.dtype.type(0)
    for i in range(dx.shape[0]):
        dx[i] = zero
    for p in range(P):
        q = 0 if W3.shape[0] == 1 else p
        W2 = W3[q]
        dzp = dz[p * F:(p + 1) * F]
        base = p * sC
        for t in range(kC):
            w = W2[t]
            s = zero
            for f in range(F):
                s += dzp[f] * w[f]
            dx[base + t] += s


# dw (F,) = sum over rows r, then positions p0 <= p < p1, of X[r, p*sC + t] * dZ[r, p*F : (p+1)*F]
@njit(fastmath=FAST, **SERIAL)
def _dw_row(dw, X, dZ, t, p0, p1, sC):
    F = dw.shape[0]
    for f in range(F):
        dw[f] = 0
    for r in range(X.shape[0]):
        x = X[r]
        dz = dZ[r]
        for p in range(p0, p1):
            xv = x[p * sC + t]
            o = p * F
            for f in range(F):
                dw[f] += xv * dz[o + f]


# --------------------------------------------------------------------------- shared drivers

# Z (n, P*F) = windows of X (n, L*C) times W3 (Q, kC, F) plus B2 (Q, F); one row per thread
@njit(**PARALLEL)
def _windows_forward(Z, X, W3, B2, sC):
    n = X.shape[0]
    if n * Z.shape[1] * W3.shape[1] < 65536:
        for r in range(n):
            _forward_row(Z[r], X[r], W3, B2, sC)
    else:
        for r in prange(n):
            _forward_row(Z[r], X[r], W3, B2, sC)


# dX (n, L*C) from dZ (n, P*F) and W3 (Q, kC, F); one row per thread
@njit(**PARALLEL)
def _windows_dx(dX, dZ, W3, sC):
    n = dZ.shape[0]
    if n * dZ.shape[1] * W3.shape[1] < 65536:
        for r in range(n):
            _dx_row(dX[r], dZ[r], W3, sC)
    else:
        for r in prange(n):
            _dx_row(dX[r], dZ[r], W3, sC)


# --------------------------------------------------------------------------- convolution

# Z[r, p, f] = b[f] + sum_{j, c} X[r, p*stride + j, c] W[j, c, f]   (windows share W)
# X (n, L*C), W (k, C, F), b (F,) -> Z (n, P*F), P = (L - k) // stride + 1
@njit(**PARALLEL)
def conv1d_forward(Z, X, W, b, stride):
    k, C, F = W.shape
    W3 = W.reshape((1, k * C, F))
    B2 = b.reshape((1, F))
    _positions(Z, X, W3, B2, k, C, stride)
    _windows_forward(Z, X, W3, B2, stride * C)


# dW[j, c, f] = sum_{r, p} X[r, p*stride + j, c] dZ[r, p, f]   db[f] = sum_{r, p} dZ[r, p, f]
# dX[r, p*stride + j, c] += sum_f dZ[r, p, f] W[j, c, f] over every window p (when with_dX)
# dZ (n, P*F), X (n, L*C), W (k, C, F) -> dX (n, L*C), dW (k, C, F), db (F,)
@njit(**PARALLEL)
def conv1d_backward(dX, dW, db, dZ, X, W, stride, with_dX):
    k, C, F = W.shape
    kC = k * C
    sC = stride * C
    W3 = W.reshape((1, kC, F))
    dW2 = dW.reshape((kC, F))
    P = _positions(dZ, X, W3, db.reshape((1, F)), k, C, stride)
    n = X.shape[0]
    if n * P * kC * F < 65536:
        for t in range(kC):
            _dw_row(dW2[t], X, dZ, t, 0, P, sC)
    else:
        for t in prange(kC):
            _dw_row(dW2[t], X, dZ, t, 0, P, sC)
    for f in range(F):
        db[f] = 0
    for r in range(n):
        for p in range(P):
            for f in range(F):
                db[f] += dZ[r, p * F + f]
    if with_dX:
        _windows_dx(dX, dZ, W3, sC)


# --------------------------------------------------------------------------- locally connected

# Z[r, p, f] = b[p, f] + sum_{j, c} X[r, p*stride + j, c] W[p, j, c, f]   (weights per position)
# X (n, L*C), W (P, k, C, F), b (P, F) -> Z (n, P*F), P = (L - k) // stride + 1
@njit(**PARALLEL)
def local1d_forward(Z, X, W, b, stride):
    P, k, C, F = W.shape
    W3 = W.reshape((P, k * C, F))
    _positions(Z, X, W3, b, k, C, stride)
    _windows_forward(Z, X, W3, b, stride * C)


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
    n = X.shape[0]
    if n * P * kC * F < 65536:
        for q in range(P * kC):
            _dw_row(dW3[q // kC, q % kC], X, dZ, q % kC, q // kC, q // kC + 1, sC)
    else:
        for q in prange(P * kC):
            _dw_row(dW3[q // kC, q % kC], X, dZ, q % kC, q // kC, q // kC + 1, sC)
    db2 = db.reshape(P * F)
    for i in range(P * F):
        db2[i] = 0
    for r in range(n):
        dz = dZ[r]
        for i in range(P * F):
            db2[i] += dz[i]
    if with_dX:
        _windows_dx(dX, dZ, W3, sC)
