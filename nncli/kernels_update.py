"""The optimizers and the weight penalties: element by element, and fused into the weight
gradient's products.

An optimizer step reads and writes every weight and its moments, and an unfused step also writes
the whole gradient and reads it back; at batch 32 a step of network C moves more bytes than it
does arithmetic, and on a core whose L2 holds none of it (2 MiB on the Intel Xeons here against
a working set of 11 MB) those bytes are the step's cost. dense_weight_step therefore applies the
step to each band of the weight gradient's rows as the register tiles finish it, while it is
still in cache: the gradient of a wide dense kernel never reaches memory. Adam keeps no
subnormal moment (adam_chunk), which on Intel cores cost more than all of that.

One step, two ways, the same bits: the update of one element is one function of (w, g, m, v) and
the step's coefficients, compiled without fastmath (so neither contraction nor reassociation can
make a vectorised loop round differently from a scalar one or from another call site), and the
fused tiles sum each gradient element as matmul_tn does (nncli.kernels_gemm.tn_band).

Optimizer codes (nncli.optim): 1 Adam with moments m, v; 0 SGD with its velocity in m (v is not
read; pass m again). A step's coefficients, update_coefficients' vector: Adam (alpha, 1 - beta1,
1 - beta2, epsilon), SGD (lr, momentum, 0, 0), then the penalties (l1, 2 l2) in both.

This module imports only numpy, numba, the compile flags (nncli.kernel_flags) and
nncli.kernels_gemm; nncli's cache folder is keyed by a digest of it (nncli.kernel_cache).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from nncli.kernel_flags import PARALLEL, PARALLEL_MACS, SERIAL
from nncli.kernels_gemm import tile, tn_band

ADAM, SGD = 1, 0
# Below this many elements a flat update runs on one thread (waking the other costs more)
_PARALLEL_FROM = 65536
_CHUNK = 8192


# --------------------------------------------------------------------------- element by element

# Keras Adam: m += (1-b1)(g-m); v += (1-b2)(g^2-v); w -= alpha m / (sqrt(v) + eps)
# W, G, m, v flat and of one length (G read only). Moments below the dtype's smallest normal
# are stored as 0: late in training v decays into subnormals, each of which costs an Intel core
# a microcode assist (about 100 cycles) in every later step (on a 2-vCPU Intel Xeon, C/32 fell
# from 15.7k to 7.9k samples/s by its fourth epoch), while alpha m / (sqrt(v) + eps) at
# eps = 1e-7 cannot see them
@njit(**SERIAL)
def adam_chunk(W, G, m, v, alpha, b1c, b2c, eps):
    tiny = np.finfo(W.dtype).tiny
    zero = W.dtype.type(0.0)
    for i in range(W.shape[0]):
        g = G[i]
        mi = m[i] + (g - m[i]) * b1c
        vi = v[i] + (g * g - v[i]) * b2c
        mi = mi if abs(mi) >= tiny else zero
        vi = vi if vi >= tiny else zero
        m[i] = mi
        v[i] = vi
        W[i] -= alpha * mi / (np.sqrt(vi) + eps)


# Keras SGD: velocity = momentum velocity - lr g; w += velocity (w -= lr g at momentum 0)
# W, G, velocity flat and of one length
@njit(**SERIAL)
def sgd_chunk(W, G, velocity, lr, mu):
    for i in range(W.shape[0]):
        velocity[i] = mu * velocity[i] - lr * G[i]
        W[i] += velocity[i]


# The gradient of Keras's L1L2 kernel penalty l2 sum(w^2) + l1 sum(|w|):
# G += 2 l2 w + l1 sign(w), sign(0) = 0 as TensorFlow's; c1 = l1, c2 = 2 l2; G, W flat
@njit(**SERIAL)
def penalty_chunk(G, W, c1, c2):
    f = W.dtype.type
    for i in range(W.shape[0]):
        w = W[i]
        sign = f(1.0) if w > 0 else (f(-1.0) if w < 0 else f(0.0))
        G[i] += c2 * w + c1 * sign


# One step of optimizer `code` on flat W with gradient G (plus the kernel penalty's gradient
# when `penalised` and coef has one: G then holds it afterwards); coef as update_coefficients
@njit(**SERIAL)
def update_chunk(W, G, m, v, code, coef, penalised):
    f = W.dtype.type
    if penalised and (coef[4] != 0.0 or coef[5] != 0.0):
        penalty_chunk(G, W, f(coef[4]), f(coef[5]))
    if code == ADAM:
        adam_chunk(W, G, m, v, f(coef[0]), f(coef[1]), f(coef[2]), f(coef[3]))
    else:
        sgd_chunk(W, G, m, f(coef[0]), f(coef[1]))


# update_chunk over a flat range, in chunks of 8192 shared between threads from 65536 elements
@njit(**PARALLEL)
def update_params(W, G, m, v, code, coef, penalised):
    size = W.shape[0]
    if size < _PARALLEL_FROM:
        update_chunk(W, G, m, v, code, coef, penalised)
        return
    for q in prange((size + _CHUNK - 1) // _CHUNK):
        s, e = q * _CHUNK, min(q * _CHUNK + _CHUNK, size)
        update_chunk(W[s:e], G[s:e], m[s:e], v[s:e], code, coef, penalised)


# The coefficients of optimizer step t (1, 2, ...) at learning rate lr; hyper as
# nncli.optim.HYPER: (lr, beta1, beta2, eps, momentum, l1, l2) -> (6,) float64
@njit(**SERIAL)
def update_coefficients(hyper, lr, t, code):
    coef = np.zeros(6)
    if code == ADAM:
        coef[0] = lr * np.sqrt(1.0 - hyper[2] ** t) / (1.0 - hyper[1] ** t)
        coef[1] = 1.0 - hyper[1]
        coef[2] = 1.0 - hyper[2]
        coef[3] = hyper[3]
    else:
        coef[0] = lr
        coef[1] = hyper[4]
    coef[4] = hyper[5]
    coef[5] = 2.0 * hyper[6]
    return coef


# Keras Adam on flat arrays of one length at step t (1, 2, ...):
# alpha = lr sqrt(1 - b2^t) / (1 - b1^t), then adam_chunk's update of every element
@njit(**PARALLEL)
def adam_update(W, dW, m, v, lr, beta1, beta2, eps, t):
    hyper = np.array([lr, beta1, beta2, eps, 0.0, 0.0, 0.0])
    update_params(W, dW, m, v, ADAM, update_coefficients(hyper, lr, t, ADAM), False)


# Keras SGD on flat arrays of one length: velocity = momentum velocity - lr g; w += velocity
@njit(**PARALLEL)
def sgd_update(W, dW, velocity, lr, momentum):
    hyper = np.array([lr, 0.0, 0.0, 0.0, momentum, 0.0, 0.0])
    update_params(W, dW, velocity, velocity, SGD, update_coefficients(hyper, lr, 1, SGD), False)


# --------------------------------------------------------------------------- fused with dW

# One step of optimizer `code` on a dense kernel with gradient X^T dZ (+ the penalty's), a band
# of rows at a time: the band's gradient is summed by the register tiles into a buffer of about
# 64 KiB and stepped at once, so it never reaches memory (the same bits as matmul_tn, then
# update_params with penalised=True); bands long enough for the update's vector loop, and at
# least 16 of them where the rows allow, so that two threads share them evenly
# X (n, n_in), dZ (n, n_out); W, m, v (n_in, n_out) C-contiguous; coef as update_coefficients
@njit(**PARALLEL)
def dense_weight_step(W, m, v, X, dZ, code, coef):
    mr = tile(W)[0]
    M, N = W.shape
    height = max(mr, min(16384 // N, M // 16) // mr * mr)
    bands = (M + height - 1) // height
    if M * N * X.shape[0] < PARALLEL_MACS:
        for q in range(bands):
            _weight_band(W, m, v, X, dZ, code, coef, q * height, min(q * height + height, M))
        return
    for q in prange(bands):
        _weight_band(W, m, v, X, dZ, code, coef, q * height, min(q * height + height, M))


# Rows r0..r1 of dense_weight_step
@njit(**SERIAL)
def _weight_band(W, m, v, X, dZ, code, coef, r0, r1):
    N = W.shape[1]
    band = np.empty((r1 - r0) * N, W.dtype)
    tn_band(band, X, dZ, r0, r1)
    s, e = r0 * N, r1 * N
    update_chunk(W.reshape(W.size)[s:e], band, m.reshape(m.size)[s:e], v.reshape(v.size)[s:e],
                 code, coef, True)
