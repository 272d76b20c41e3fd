"""Every compiled function of nncli (with nncli.kernels_conv, nncli.kernels_dot,
nncli.kernels_gemm, nncli.kernels_preprocess, nncli.kernels_text and nncli.kernels_update, whose
kernels it imports), and nothing else.

Conventions (as in llm.c): arrays are row-major ``(batch, features)``; dense kernels are
``(in, out)`` like Keras kernels; outputs come first in a signature and are preallocated;
gradients carry a ``d`` prefix. Each function compiles for float32 (training) and float64
(gradcheck) from the same source.

Determinism: every parallel loop gives each output element to exactly one thread and sums in a
fixed order, so results are bit-identical whatever the thread count; no sum is compiled with
fastmath and the products sum in the same order on every CPU (nncli.kernels_dot,
nncli.kernels_gemm), so they are bit-identical on any x86-64 CPU with AVX2 or AVX-512 too.

This module imports only numpy, numba, the compile flags of every kernel (nncli.kernel_flags)
and the kernels of nncli.kernels_conv, nncli.kernels_dot, nncli.kernels_gemm,
nncli.kernels_preprocess, nncli.kernels_text and nncli.kernels_update (which import nothing else
of nncli but nncli.kernels_gemm), and reads no module globals other than those flags, the layer
table's column names and kind codes (below) and the optimizer codes. Numba freezes such globals
into the machine code as constants; an edit to them is an edit to this file, which changes
nncli's cache key (nncli.kernel_cache).

Integer codes (decided in nncli.arch / nncli.losses / nncli.optim, documented here):
  activation: 0 linear, 1 relu, 2 sigmoid, 3 tanh, 4 softmax
  loss:       0 mse, 1 bce from logits, 2 bce from probabilities, 3 cce from logits,
              4 cce from probabilities (sparse labels arrive one-hot)
  layer kind: 0 DENSE, 1 CONV, 2 LOCAL, 3 DROPOUT (nncli.arch.LAYER_KINDS)
  optimizer:  1 ADAM, 0 SGD (nncli.optim's codes, named in nncli.kernels_update)
  layer table columns, named by the constants below: 0 KIND, 1 N_IN, 2 N_OUT (flattened row
                       widths), 3 ACT (activation), 4 W_OFF (weight offset), 5 B_OFF (bias
                       offset), 6 A_OFF (activation-buffer offset, in units of rows), 7 KERNEL
                       (width k), 8 STRIDE, 9 CHANNELS (input channels C), 10 POSITIONS (output
                       positions P), 11 FILTERS (F). A dense layer has k = 0, stride 1,
                       C = its input's channels, P = n_out and F = 1 (arch.layer_shapes); a
                       conv or local layer reads n_in = L*C and writes n_out = P*F, its
                       weights (k, C, F) or (P, k, C, F) and biases (F,) or (P, F) flat at the
                       offsets (nncli.kernels_conv has the layout). 12 KEY and 13 THRESHOLD:
                       a dropout layer's mask key and rate * 2^53 (nncli.model.layer_table);
                       it has n_out = n_in, ACT linear and no parameters.

Windowed layers (conv, local) run through nncli.kernels_conv, wide products through
nncli.kernels_gemm and narrow ones through nncli.kernels_dot, imported below (and reachable as
this module's names, e.g. ``kernels.matmul_nt``); so are the preprocessing pass of
nncli.kernels_preprocess and the CSV formatter of nncli.kernels_text, which the network
functions do not call but whose callers take every kernel from here, once Numba is ready
(nncli.model). Numba keys a cached function on its own source file only; nncli's cache folder
is keyed by a digest of all these modules and the flags (nncli.kernel_cache), so an edit to any
of them recompiles the network functions here too.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from nncli.kernel_flags import FAST, PARALLEL, SERIAL
from nncli.kernels_conv import conv1d_backward, conv1d_forward, local1d_backward, local1d_forward
from nncli.kernels_dot import matmul_nt, transpose
from nncli.kernels_gemm import TILE_BYTES, dense_nn, fills_a_tile, matmul_nn, matmul_tn
from nncli.kernels_preprocess import fill_standardise
from nncli.kernels_text import MAX_CELL, format_parts, format_rows, powers_of_ten
from nncli.kernels_update import (ADAM, SGD, adam_update, dense_weight_step, penalty_chunk,
                                  sgd_update, update_coefficients, update_params)

# Layer-table columns and the kind column's codes (see the module docstring).
(KIND, N_IN, N_OUT, ACT, W_OFF, B_OFF, A_OFF, KERNEL, STRIDE, CHANNELS, POSITIONS, FILTERS,
 KEY, THRESHOLD) = range(14)
N_COLS = 14
DENSE, CONV, LOCAL, DROPOUT = 0, 1, 2, 3  # nncli.arch.LAYER_KINDS[kind].code
GOLDEN = 0x9E3779B97F4A7C15  # 2^64 / golden ratio: SplitMix64's increment
_GOLDEN = np.uint64(GOLDEN)


# --------------------------------------------------------------------------- dense layer
#
# Helpers with array loops written out: inside a parallel=True function Numba turns an array
# expression such as `db += dZ[r]` into a parallel loop of its own, waking the threads per row.

@njit(fastmath=FAST, **SERIAL)
def _add_row(Z, b):
    for r in range(Z.shape[0]):
        z = Z[r]
        for j in range(b.shape[0]):
            z[j] += b[j]


@njit(**SERIAL)
def _column_sums(out, Z):
    for j in range(out.shape[0]):
        out[j] = 0.0
    for r in range(Z.shape[0]):
        z = Z[r]
        for j in range(out.shape[0]):
            out[j] += z[j]


@njit(**SERIAL)
def _copy_rows(out, A, idx):
    for r in range(idx.shape[0]):
        src = A[idx[r]]
        dst = out[r]
        for j in range(src.shape[0]):
            dst[j] = src[j]


# Z = X @ W + b, A = act(Z) (code as in the module docstring; A may be Z itself). Register tiles
# (nncli.kernels_gemm) when n_out fills one, with the bias as the sums' start and linear or relu
# applied as the tiles are stored; else dot products of rows as X @ (W^T)^T with W^T written
# into the scratch WT, then the bias and the activation
# X (n, n_in), W (n_in, n_out), b (n_out,), WT (n_out, n_in) scratch -> Z, A (n, n_out)
@njit(**PARALLEL)
def dense_forward(Z, A, X, W, b, WT, code):
    if fills_a_tile(Z, W.shape[1]):
        fused = code == 0 or code == 1
        dense_nn(Z, A, X, W, b, code if fused else -1)
        if not fused:
            act_forward(A, Z, code)
        return
    transpose(WT, W)
    matmul_nt(Z, X, WT)
    _add_row(Z, b)
    act_forward(A, Z, code)


# dW = X^T dZ, db = sum over rows of dZ, dX = dZ W^T (skipped unless with_dX). Register tiles
# wherever one side of a product is wide enough, transposing whichever is smaller:
# - dX: dZ (W^T) when n_in fills a tile and W is smaller than the two activations, else
#   (W dZ^T)^T when the batch does; both sum each element over the same n_out steps in the same
#   order, so the choice never changes a bit; else dot products of rows;
# - dW: X^T dZ directly when n_out fills a tile; (dZ^T X)^T when only n_in does (a classifier's
#   last layer: 10 outputs), through WT; else dot products of the transposed activations.
# With coef not None a kernel wide enough for the tiles takes a step of optimizer opt (a code of
# nncli.kernels_update) at once (dense_weight_step: m, v its moments, coef the step's
# coefficients) and dW is not written; dX is computed first, from the weights before the step.
# (coef None is resolved while compiling, as `windowed`: training compiles only the fused
# product, gradcheck only the plain one.)
# dZ (n, n_out), X (n, n_in), W (n_in, n_out); WT (n_in n_out,) at least, XT (n_in, n),
#   dZT (n_out, n) scratch -> dX (n, n_in), dW (n_in, n_out), db (n_out,)
@njit(**PARALLEL)
def dense_backward(dX, dW, db, dZ, X, W, with_dX, WT, XT, dZT, m, v, opt, coef):
    n, n_in = X.shape
    n_out = dZ.shape[1]
    _column_sums(db, dZ)
    have_dZT = False
    if with_dX:
        if fills_a_tile(dX, n_in) and n_in * n_out <= n * (n_in + n_out):
            transposed_W = WT[:n_out * n_in].reshape((n_out, n_in))
            transpose(transposed_W, W)
            matmul_nn(dX, dZ, transposed_W)
        elif fills_a_tile(dX, n):
            transpose(dZT, dZ)
            have_dZT = True
            matmul_nn(XT, W, dZT)
            transpose(dX, XT)
        else:
            matmul_nt(dX, dZ, W)
    if not fills_a_tile(dW, n_out):
        if fills_a_tile(dW, n_in):
            dWT = WT[:n_out * n_in].reshape((n_out, n_in))
            matmul_tn(dWT, dZ, X)
            transpose(dW, dWT)
        else:
            transpose(XT, X)
            if not have_dZT:
                transpose(dZT, dZ)
            matmul_nt(dW, XT, dZT)
    elif coef is None:
        matmul_tn(dW, X, dZ)
    else:
        dense_weight_step(W, m, v, X, dZ, opt, coef)


# True when a layer's kernel takes its optimizer step inside dense_backward (coef given): a
# dense kernel whose rows fill a tile (the same test as dense_backward's, on params' dtype)
@njit(**SERIAL)
def steps_in_backward(params, layer):
    return layer[KIND] == DENSE and fills_a_tile(params, layer[N_OUT])


# --------------------------------------------------------------------------- dropout
#
# Masks from a counter-based hash: unit j of row r in the batch of optimizer step `step` is
# dropped when the top 53 bits of mix(mix(mix(key + step G) + r G) + j G) are below the
# threshold (rate * 2^53), with mix SplitMix64's finaliser and G its increment. A mask is a
# function of (key, step, row, unit) alone: any thread count, and a resumed run, draw the same.

@njit(**SERIAL)
def _mix64(x):
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@njit(fastmath=FAST, **SERIAL)
def _dropout_rows(M, A, X, batch_key, threshold, scale, r0, r1):
    zero = scale - scale
    for r in range(r0, r1):
        row_key = _mix64(batch_key + np.uint64(r) * _GOLDEN)
        for j in range(X.shape[1]):
            bits = _mix64(row_key + np.uint64(j) * _GOLDEN) >> np.uint64(11)
            m = scale if bits >= threshold else zero
            M[r, j] = m
            A[r, j] = X[r, j] * m


# Inverted dropout in training (Keras Dropout): M = the mask, 0 for a dropped unit and
# 1 / (1 - rate) for a kept one; A = X * M. Rows over threads when many.
# X (n, width) -> M, A (n, width); key the layer's (int64 bits), step >= 0, threshold rate * 2^53
@njit(**PARALLEL)
def dropout_forward(M, A, X, key, step, threshold):
    n, width = X.shape
    f = X.dtype.type
    scale = f(1.0 / (1.0 - threshold * 2.0 ** -53))
    limit = np.uint64(threshold)
    batch_key = _mix64(np.uint64(key) + np.uint64(step) * _GOLDEN)
    if n * width < 16384:
        _dropout_rows(M, A, X, batch_key, limit, scale, 0, n)
        return
    for q in prange((n + 15) // 16):
        _dropout_rows(M, A, X, batch_key, limit, scale, q * 16, min(q * 16 + 16, n))


# A = X, element by element (an array expression here would become a parallel loop of its own)
# X (n, width) -> A (n, width)
@njit(**SERIAL)
def _copy(A, X):
    for r in range(X.shape[0]):
        for j in range(X.shape[1]):
            A[r, j] = X[r, j]


# dX = dA * M, M the mask of dropout_forward; dA, M (n, width) -> dX (n, width)
@njit(fastmath=FAST, **SERIAL)
def dropout_backward(dX, dA, M):
    for r in range(dA.shape[0]):
        for j in range(dA.shape[1]):
            dX[r, j] = dA[r, j] * M[r, j]


# --------------------------------------------------------------------------- activations

@njit(**SERIAL)
def sigmoid(z):
    """1 / (1 + e^-z), evaluated on the side of zero where exp cannot overflow."""
    if z >= 0:
        return 1.0 / (1.0 + np.exp(-z))
    e = np.exp(z)
    return e / (1.0 + e)


@njit(**SERIAL)
def _act_forward_row(a, z, code):
    width = z.shape[0]
    if code == 0:
        for j in range(width):
            a[j] = z[j]
    elif code == 1:
        for j in range(width):
            a[j] = z[j] if z[j] > 0 else 0.0
    elif code == 2:
        for j in range(width):
            a[j] = sigmoid(z[j])
    elif code == 3:
        for j in range(width):
            a[j] = np.tanh(z[j])
    else:
        m = z[0]
        for j in range(1, width):
            m = max(m, z[j])
        s = 0.0
        for j in range(width):
            e = np.exp(z[j] - m)
            a[j] = e
            s += e
        for j in range(width):
            a[j] = a[j] / s


# Elementwise codes run over the rows as one flat array in units of 4096 elements (rows of 10
# or 25 cost more to dispatch than to compute); softmax runs row by row. Units q0..q1. (Callers
# pass `q + 0` for a prange index: an int64 like range's, where prange's own unsigned index
# would compile these helpers a second time.)
@njit(**SERIAL)
def _act_forward_units(A, Z, code, q0, q1):
    n, width = Z.shape
    a = A.reshape(n * width)
    z = Z.reshape(n * width)
    for q in range(q0, q1):
        if code == 4:
            _act_forward_row(A[q], Z[q], code)
        else:
            _act_forward_row(a[q * 4096:q * 4096 + 4096], z[q * 4096:q * 4096 + 4096], code)


# The number of units (above) of an (n, width) array
@njit(**SERIAL)
def _act_units(n, width, code):
    return n if code == 4 else (n * width + 4095) // 4096


# A = act(Z) elementwise; softmax row-wise with the row max subtracted
# Z, A (n, width) C-contiguous; code as in the module docstring; units over threads when many
@njit(**PARALLEL)
def act_forward(A, Z, code):
    n, width = Z.shape
    units = _act_units(n, width, code)
    if n * width < 16384:
        for q in range(units):
            _act_forward_units(A, Z, code, q, q + 1)
        return
    for q in prange(units):
        _act_forward_units(A, Z, code, q + 0, q + 1)


@njit(**SERIAL)
def _act_backward_row(dz, da, a, z, code):
    width = z.shape[0]
    if code == 0:
        for j in range(width):
            dz[j] = da[j]
    elif code == 1:
        for j in range(width):
            dz[j] = da[j] if z[j] > 0 else 0.0
    elif code == 2:
        for j in range(width):
            dz[j] = da[j] * a[j] * (1.0 - a[j])
    elif code == 3:
        for j in range(width):
            dz[j] = da[j] * (1.0 - a[j] * a[j])
    else:
        s = 0.0
        for j in range(width):
            s += a[j] * da[j]
        for j in range(width):
            dz[j] = a[j] * (da[j] - s)


@njit(**SERIAL)
def _act_backward_units(dZ, dA, A, Z, code, q0, q1):
    size = Z.shape[0] * Z.shape[1]
    dz = dZ.reshape(size)
    da = dA.reshape(size)
    a = A.reshape(size)
    z = Z.reshape(size)
    for q in range(q0, q1):
        if code == 4:
            _act_backward_row(dZ[q], dA[q], A[q], Z[q], code)
        else:
            s, e = q * 4096, q * 4096 + 4096
            _act_backward_row(dz[s:e], da[s:e], a[s:e], z[s:e], code)


# dZ = dA * act'(Z); softmax: dZ_k = A_k (dA_k - sum_j A_j dA_j)
# dA, A, Z, dZ (n, width) C-contiguous; split as in act_forward
@njit(**PARALLEL)
def act_backward(dZ, dA, A, Z, code):
    n, width = Z.shape
    units = _act_units(n, width, code)
    if n * width < 16384:
        for q in range(units):
            _act_backward_units(dZ, dA, A, Z, code, q, q + 1)
        return
    for q in prange(units):
        _act_backward_units(dZ, dA, A, Z, code, q + 0, q + 1)


# --------------------------------------------------------------------------- losses

# Fused loss and gradient. Reduction (Keras): mean over rows; bce and mse also mean over outputs.
# With row weights w (n,) (Keras's sample_weight and class_weight) row r's loss and its dOut
# row are multiplied by w[r], the mean still over the n rows (Keras's sum_over_batch_size);
# w None compiles without them (Numba prunes `w is None`), bit-identical to the unweighted loss.
# Out, Y (n, k) -> dOut = d(mean loss)/dOut; returns (sum over rows of row losses, n correct)
# One thread: sharing the rows between threads (in blocks, their sums added in order) saved about
# 10 us a step of a batch of 256 x 10 on two threads and cost 0.8 s of the first compile.
@njit(**SERIAL)
def loss_forward_backward(dOut, Out, Y, code, eps, w):
    n, k = Out.shape
    total = 0.0
    correct = 0
    scale_rows = 1.0 / n
    scale_all = 1.0 / (n * k)
    for r in range(n):
        o = Out[r]
        y = Y[r]
        d = dOut[r]
        if code == 0:
            row = 0.0
            for j in range(k):
                diff = o[j] - y[j]
                row += diff * diff
                d[j] = 2.0 * diff * scale_all
            row = row / k
        elif code == 1:
            row = 0.0
            for j in range(k):
                z = o[j]
                row += max(z, 0.0) - z * y[j] + np.log1p(np.exp(-abs(z)))
                d[j] = (sigmoid(z) - y[j]) * scale_all
                correct += (z > 0.0) == (y[j] >= 0.5)
            row = row / k
        elif code == 2:
            row = 0.0
            for j in range(k):
                p = min(max(o[j], eps), 1.0 - eps)
                row -= y[j] * np.log(p) + (1.0 - y[j]) * np.log(1.0 - p)
                inside = eps < o[j] < 1.0 - eps
                d[j] = ((1.0 - y[j]) / (1.0 - p) - y[j] / p) * scale_all if inside else 0.0
                correct += (o[j] > 0.5) == (y[j] >= 0.5)
            row = row / k
        elif code == 3:
            # lse = log(1 + sum over the others of e^(o_j - m)) with log1p: a confident, correct
            # row keeps its tiny loss instead of rounding 1 + tiny to 1
            top = 0
            for j in range(1, k):
                if o[j] > o[top]:
                    top = j
            m = o[top]
            # e^(o_j - m) kept in d until the gradient overwrites it: one exp per logit, not two
            # (the same values, so the same bits)
            others = 0.0
            for j in range(k):
                if j != top:
                    d[j] = np.exp(o[j] - m)
                    others += d[j]
            d[top] = 1.0
            s = 1.0 + others
            lse = np.log1p(others)
            ysum = 0.0
            for j in range(k):
                ysum += y[j]
            row = 0.0
            for j in range(k):
                # log p_j = (o_j - m) - lse, kept apart so equal huge logits give exactly ln k
                if y[j] != 0.0:
                    row += y[j] * (lse - (o[j] - m))
                d[j] = (d[j] / s * ysum - y[j]) * scale_rows
            correct += np.argmax(o) == np.argmax(y)
        else:
            s = 0.0
            for j in range(k):
                s += o[j]
            # g_j = dL/dq_j for q = clip(o / s); then through the normalisation q = o / s
            gq = 0.0
            row = 0.0
            for j in range(k):
                q = o[j] / s
                p = min(max(q, eps), 1.0 - eps)
                if y[j] != 0.0:
                    row -= y[j] * np.log(p)
                g = -y[j] / p if eps < q < 1.0 - eps else 0.0
                d[j] = g
                gq += g * q
            for j in range(k):
                d[j] = (d[j] - gq) / s * scale_rows
            correct += np.argmax(o) == np.argmax(y)
        if w is not None:
            row *= w[r]
            for j in range(k):
                d[j] *= w[r]
        total += row
    return total, correct


# --------------------------------------------------------------------------- weight penalties

# Keras kernel_regularizer L1L2(l1, l2) on every layer's kernel (biases untouched):
# penalty = l2 sum(w^2) + l1 sum(|w|) over the kernels, summed in float64 in the table's order
# (serial: the same sum at any thread count). params flat, layers the layer table -> the penalty
@njit(**SERIAL)
def penalty_forward(params, layers, l1, l2):
    total = 0.0
    for l in range(layers.shape[0]):
        for i in range(layers[l, W_OFF], layers[l, B_OFF]):
            w = np.float64(params[i])
            total += l2 * w * w + l1 * abs(w)
    return total


# grads += d(penalty)/d(params) = 2 l2 w + l1 sign(w) on the kernels (sign(0) = 0, as
# TensorFlow's); biases untouched. grads, params flat and of one length
@njit(**SERIAL)
def penalty_backward(grads, params, layers, l1, l2):
    f = params.dtype.type
    for l in range(layers.shape[0]):
        w, b = layers[l, W_OFF], layers[l, B_OFF]
        penalty_chunk(grads[w:b], params[w:b], f(l1), f(2.0 * l2))


# --------------------------------------------------------------------------- whole network

@njit(**SERIAL)
def _view(buf, cap, row_offset, n, width):
    start = cap * row_offset
    return buf[start:start + n * width].reshape((n, width))


# A dense layer's kernel (n_in, n_out) and bias (n_out,) in the flat params
@njit(**SERIAL)
def _weights(params, layer):
    n_in, n_out, w_off, b_off = layer[N_IN], layer[N_OUT], layer[W_OFF], layer[B_OFF]
    return params[w_off:w_off + n_in * n_out].reshape((n_in, n_out)), params[b_off:b_off + n_out]


# A conv layer's kernel (k, C, F) and bias (F,) in the flat params
@njit(**SERIAL)
def _conv_weights(params, layer):
    k, C, F = layer[KERNEL], layer[CHANNELS], layer[FILTERS]
    w_off, b_off = layer[W_OFF], layer[B_OFF]
    return params[w_off:w_off + k * C * F].reshape((k, C, F)), params[b_off:b_off + F]


# A local layer's kernel (P, k, C, F) and bias (P, F) in the flat params
@njit(**SERIAL)
def _local_weights(params, layer):
    k, C, P, F = layer[KERNEL], layer[CHANNELS], layer[POSITIONS], layer[FILTERS]
    w_off, b_off = layer[W_OFF], layer[B_OFF]
    return (params[w_off:w_off + P * k * C * F].reshape((P, k, C, F)),
            params[b_off:b_off + P * F].reshape((P, F)))


# (largest n_in * n_out, largest n_in, largest n_out) over the dense layers: only they use the
# scratch (conv and local layers read their weights and inputs in place)
@njit(**SERIAL)
def _dense_widths(layers):
    w_max = 0
    in_max = 0
    out_max = 0
    for l in range(layers.shape[0]):
        if layers[l, KIND] == DENSE:
            w_max = max(w_max, layers[l, N_IN] * layers[l, N_OUT])
            in_max = max(in_max, layers[l, N_IN])
            out_max = max(out_max, layers[l, N_OUT])
    return w_max, in_max, out_max


@njit(**SERIAL)
def _scratch(T, layers, cap, n):
    """Views of the scratch buffer T: W^T (or dW^T: dense_backward), X^T and dZ^T of the largest
    dense layer (see scratch_size)."""
    w_max, in_max, _ = _dense_widths(layers)
    return T[:w_max], T[w_max:w_max + cap * in_max], T[w_max + cap * in_max:]


# Scratch elements network_forward_backward needs for `cap` rows (0 without dense layers)
@njit(**SERIAL)
def scratch_size(layers, cap):
    w_max, in_max, out_max = _dense_widths(layers)
    return w_max + cap * (in_max + out_max)


# (P, T) elements network_predict needs for `cap` rows: two halves as wide as the widest layer,
# and the W^T scratch of the dense layers
@njit(**SERIAL)
def predict_sizes(layers, cap):
    widest = 0
    for l in range(layers.shape[0]):
        widest = max(widest, layers[l, N_OUT])
    return 2 * cap * widest, _dense_widths(layers)[0]


# layer_forward and layer_backward are inlined into their callers (inline="always" works on
# Numba's IR): every compiled level re-optimises all the code below it, and these two levels
# cost about 1.4 s of the first run's compile. layer_backward has one call site for the same
# reason.

# `windowed`, the last argument of the network functions below: True when the layer table may
# hold conv or local layers, None when it holds dense layers only (model.Workspace.windowed).
# None is resolved while compiling: Numba prunes the branches after `windowed is None`, so a
# dense network never compiles the conv and local kernels (about 12 s of a cold start). A conv
# or local layer reached with None raises ValueError. (No default: each default would be one
# more compiled variant of every network function.)


# Z = X W + b and A = act(Z) for one layer of any kind (its KIND and ACT columns): dense
# through nncli.kernels_gemm or the transposed scratch WTbuf, conv and local through
# nncli.kernels_conv. A may be Z itself (every activation can run in place). Dropout: in
# training (step >= 0, the optimizer step) Z = its mask and A = X * Z; else (step < 0: eval,
# predict, validation) A = X.
# X (n, n_in), layer a row of the layer table -> Z, A (n, n_out)
@njit(inline="always", **PARALLEL)
def layer_forward(Z, A, X, params, layer, WTbuf, step, windowed):
    kind = layer[KIND]
    if kind == DROPOUT:
        if step < 0:
            _copy(A, X)
        else:
            dropout_forward(Z, A, X, layer[KEY], step, layer[THRESHOLD])
        return
    if kind == DENSE:
        W, b = _weights(params, layer)
        n_in, n_out = layer[N_IN], layer[N_OUT]
        dense_forward(Z, A, X, W, b, WTbuf[:n_in * n_out].reshape((n_out, n_in)), layer[ACT])
        return
    if windowed is None:
        raise ValueError("a conv or local layer in a network run as dense only")
    code = layer[ACT]
    fused = code == 0 or code == 1       # linear and relu as the tiles are stored
    if kind == CONV:
        Wc, bc = _conv_weights(params, layer)
        conv1d_forward(Z, A, X, Wc, bc, layer[STRIDE], code if fused else -1)
    else:
        Wl, bl = _local_weights(params, layer)
        local1d_forward(Z, A, X, Wl, bl, layer[STRIDE], code if fused else -1)
    if not fused:
        act_forward(A, Z, code)


# Gradients of Z = X W + b for one layer of any kind: dW, db into grads at the layer's offsets,
# dX (n, n_in) only when with_dX (else dX is not touched: pass any (n, *) array); dropout:
# dX = dZ * Z, Z its mask from layer_forward. With coef not None a wide dense kernel takes its
# optimizer step here instead (dense_backward; m, v the flat optimizer state like params)
# dZ, Z (n, n_out), X (n, n_in); XTbuf, dZTbuf scratch of dense layers
@njit(inline="always", **PARALLEL)
def layer_backward(dX, grads, dZ, Z, X, params, layer, with_dX, WTbuf, XTbuf, dZTbuf, windowed,
                   m, v, opt, coef):
    kind = layer[KIND]
    n = X.shape[0]
    if kind == DROPOUT:
        if with_dX:
            dropout_backward(dX, dZ, Z)
    elif kind == DENSE:
        W, _ = _weights(params, layer)
        dW, db = _weights(grads, layer)
        mW, _ = _weights(m, layer)
        vW, _ = _weights(v, layer)
        XT = XTbuf[:layer[N_IN] * n].reshape((layer[N_IN], n))
        dZT = dZTbuf[:layer[N_OUT] * n].reshape((layer[N_OUT], n))
        dense_backward(dX, dW, db, dZ, X, W, with_dX, WTbuf, XT, dZT, mW, vW, opt, coef)
    elif windowed is None:
        raise ValueError("a conv or local layer in a network run as dense only")
    elif kind == CONV:
        Wc, _ = _conv_weights(params, layer)
        dWc, dbc = _conv_weights(grads, layer)
        conv1d_backward(dX, dWc, dbc, dZ, X, Wc, layer[STRIDE], with_dX)
    else:
        Wl, _ = _local_weights(params, layer)
        dWl, dbl = _local_weights(grads, layer)
        local1d_backward(dX, dWl, dbl, dZ, X, Wl, layer[STRIDE], with_dX)


# A_l = act_l(layer_l(A_{l-1})) for every layer, A_0 = X; step: the optimizer step whose
# dropout masks to draw, or -1 for none (dropout the identity)
# X (n, n_in); Zbuf, Abuf flat, cap rows per layer; T scratch -> returns the last A (n, n_out)
@njit(**PARALLEL)
def network_forward(Zbuf, Abuf, T, params, layers, X, cap, step, windowed):
    n = X.shape[0]
    WTbuf, _, _ = _scratch(T, layers, cap, n)
    inp = X
    for l in range(layers.shape[0]):
        layer = layers[l]
        Z = _view(Zbuf, cap, layer[A_OFF], n, layer[N_OUT])
        A = _view(Abuf, cap, layer[A_OFF], n, layer[N_OUT])
        layer_forward(Z, A, inp, params, layer, WTbuf, step, windowed)
        inp = A
    return inp


# The last layer's outputs alone, for prediction: each layer writes its activations in place of
# its sums into one of two ping-pong halves of P (the input of layer l is in the other half)
# X (n, n_in); P flat, 2 x cap x (widest layer); T scratch -> returns the last A (n, n_out)
@njit(**PARALLEL)
def network_predict(P, T, params, layers, X, cap, windowed):
    n = X.shape[0]
    WTbuf, _, _ = _scratch(T, layers, cap, n)
    half = P.shape[0] // 2
    inp = X
    for l in range(layers.shape[0]):
        layer = layers[l]
        start = (l % 2) * half
        out = P[start:start + n * layer[N_OUT]].reshape((n, layer[N_OUT]))
        layer_forward(out, out, inp, params, layer, WTbuf, -1, windowed)
        inp = out
    return inp


# Forward and fused loss: the loss sum and correct count of the rows of X and Y, and the loss's
# gradient in dAbuf at the last layer, with the dropout masks of optimizer step `step` (>= 0)
# dAbuf like Zbuf; T scratch; w the rows' weights (n,) or None (see loss_forward_backward)
@njit(inline="always", **PARALLEL)
def network_forward_loss(Zbuf, Abuf, dAbuf, T, params, layers, X, Y, cap, loss_code, eps, step,
                         windowed, w):
    n = X.shape[0]
    out = network_forward(Zbuf, Abuf, T, params, layers, X, cap, step, windowed)
    last = layers[layers.shape[0] - 1]
    dA = _view(dAbuf, cap, last[A_OFF], n, last[N_OUT])
    return loss_forward_backward(dA, out, Y, loss_code, eps, w)


# Backward from the loss's gradient that network_forward_loss left in dAbuf: grads =
# d(mean loss)/d(params) for the n rows of X; with coef not None the wide dense kernels take
# their optimizer step on the way instead (layer_backward; their slots of grads are not written, the
# rest are: update_unfused steps them afterwards)
# grads, m, v like params (flat); dZbuf like Zbuf; coef as kernels_update.update_coefficients
@njit(inline="always", **PARALLEL)
def network_backward(grads, Zbuf, Abuf, dZbuf, dAbuf, T, params, layers, X, cap, windowed, m, v,
                     opt, coef):
    n = X.shape[0]
    WTbuf, XTbuf, dZTbuf = _scratch(T, layers, cap, n)
    for l in range(layers.shape[0] - 1, -1, -1):
        layer = layers[l]
        n_out = layer[N_OUT]
        Z = _view(Zbuf, cap, layer[A_OFF], n, n_out)
        A = _view(Abuf, cap, layer[A_OFF], n, n_out)
        dZ = _view(dZbuf, cap, layer[A_OFF], n, n_out)
        dA = _view(dAbuf, cap, layer[A_OFF], n, n_out)
        act_backward(dZ, dA, A, Z, layer[ACT])
        # one call site (see layer_backward); the first layer's input is X and it passes no dX:
        # any (n, *) array will do, here dZ
        inp = X
        dinp = dZ
        if l > 0:
            prev = layers[l - 1]
            inp = _view(Abuf, cap, prev[A_OFF], n, prev[N_OUT])
            dinp = _view(dAbuf, cap, prev[A_OFF], n, prev[N_OUT])
        layer_backward(dinp, grads, dZ, Z, inp, params, layer, l > 0, WTbuf, XTbuf, dZTbuf,
                       windowed, m, v, opt, coef)


# Forward, fused loss, backward: grads = d(mean loss)/d(params) for the rows of X and Y, with
# the dropout masks of optimizer step `step` (>= 0; gradcheck: any fixed step)
# grads like params (flat); dZbuf, dAbuf like Zbuf; T scratch; w the rows' weights (n,) or None
# (see loss_forward_backward); returns (loss sum, n correct)
@njit(**PARALLEL)
def network_forward_backward(grads, Zbuf, Abuf, dZbuf, dAbuf, T, params, layers, X, Y, cap,
                             loss_code, eps, step, windowed, w):
    loss_sum, correct = network_forward_loss(Zbuf, Abuf, dAbuf, T, params, layers, X, Y, cap,
                                             loss_code, eps, step, windowed, w)
    network_backward(grads, Zbuf, Abuf, dZbuf, dAbuf, T, params, layers, X, cap, windowed, grads,
                     grads, -1, None)
    return loss_sum, correct


# The optimizer step of every parameter network_backward did not step (all of them with fused
# None; else biases, narrow dense kernels, conv and local layers), the kernels with the
# penalty's gradient; layer by layer, as the bias of layer l ends where the kernel of the next
# layer with parameters begins
# params, grads, m, v flat; opt, coef as network_backward
@njit(inline="always", **PARALLEL)
def update_unfused(params, grads, m, v, layers, opt, coef, fused):
    end = params.shape[0]
    for l in range(layers.shape[0] - 1, -1, -1):
        w, b = layers[l, W_OFF], layers[l, B_OFF]
        if layers[l, KIND] == DROPOUT:
            continue
        update_params(params[b:end], grads[b:end], m[b:end], v[b:end], opt, coef, False)
        if fused is None or not steps_in_backward(params, layers[l]):
            update_params(params[w:b], grads[w:b], m[w:b], v[w:b], opt, coef, True)
        end = w


# Xb[r] = X[idx[r]]: gathers a shuffled mini-batch into a contiguous buffer; rows scattered in
# memory wait on its latency, which two threads overlap from 8192 elements
@njit(**PARALLEL)
def gather_rows(Xb, X, idx):
    n = idx.shape[0]
    if n * X.shape[1] < 8192:
        _copy_rows(Xb, X, idx)
        return
    for q in prange((n + 15) // 16):
        r0 = q * 16
        r1 = min(r0 + 16, n)
        _copy_rows(Xb[r0:r1], X, idx[r0:r1])


# One optimizer step per mini-batch over rows perm[start:stop] of X and Y, batch by batch.
# Adam with moments opt_m, opt_v; SGD with momentum buffer sgd_velocity unless it is None. With
# fused True (model.fused_step) the wide dense kernels take their step inside the backward pass
# (network_backward), the rest of the parameters after it (update_unfused): the same bits as
# with fused None, the whole backward pass and then the step (resolved while compiling, as
# `windowed`: each variant compiles only its own path).
# hyper = (lr, beta1, beta2, eps, momentum, l1, l2); rates[k] is the learning rate of the chunk's
# k-th batch (a schedule's; hyper's lr is not read). With l1 or l2 the weight penalty (above)
# joins each batch's loss (n rows x the penalty of the weights before its update, so that the
# mean over rows is Keras's reported loss) and its gradient; at 0 and 0 none of it runs.
# W (rows of X,) weighs each row's loss (gathered into Wb (batch_size,) like X into Xb); None:
# unweighted, compiled without it.
# Returns (loss sum over rows, n correct, step,
# diverged_at): the first row of a batch whose loss was NaN or infinite, which stops the run
# before that batch's update (-1 when every batch was finite); windowed as for layer_forward
@njit(**PARALLEL)
def train_batches(params, grads, opt_m, opt_v, sgd_velocity, Xb, Yb, Zbuf, Abuf, dZbuf, dAbuf, T,
                  layers, X, Y, perm, start, stop, batch_size, loss_code, eps, hyper, rates,
                  step, windowed, W, Wb, fused):
    loss_sum = 0.0
    correct = 0
    if sgd_velocity is None:
        opt, m, v = ADAM, opt_m, opt_v
    else:
        opt, m, v = SGD, sgd_velocity, sgd_velocity
    for s in range(start, stop, batch_size):
        e = min(s + batch_size, stop)
        n = e - s
        xb = Xb[:n]
        yb = Yb[:n]
        gather_rows(xb, X, perm[s:e])
        gather_rows(yb, Y, perm[s:e])
        wb = None
        if W is not None:
            wb = Wb[:n]
            for r in range(n):
                wb[r] = W[perm[s + r]]
        batch_loss, batch_correct = network_forward_loss(
            Zbuf, Abuf, dAbuf, T, params, layers, xb, yb, batch_size, loss_code, eps, step,
            windowed, wb)
        if hyper[5] != 0.0 or hyper[6] != 0.0:
            batch_loss += n * penalty_forward(params, layers, hyper[5], hyper[6])
        if not np.isfinite(batch_loss):
            return loss_sum, correct, step, s
        loss_sum += batch_loss
        correct += batch_correct
        step += 1
        coef = update_coefficients(hyper, rates[(s - start) // batch_size], step, opt)
        if fused is None:
            network_backward(grads, Zbuf, Abuf, dZbuf, dAbuf, T, params, layers, xb,
                             batch_size, windowed, m, v, opt, None)
        else:
            network_backward(grads, Zbuf, Abuf, dZbuf, dAbuf, T, params, layers, xb,
                             batch_size, windowed, m, v, opt, coef)
        update_unfused(params, grads, m, v, layers, opt, coef, fused)
    return loss_sum, correct, step, -1


# Loss and correct count over all rows, in chunks of cap rows (no parameter update), and the
# last layer's outputs into Out (n, n_out) unless it is None (compiled without them then); the
# network runs as network_predict does (P and T its buffers), dOut (cap x n_out) the loss's
# unused gradient
@njit(**PARALLEL)
def evaluate_rows(Out, P, dOut, T, params, layers, X, Y, cap, loss_code, eps, windowed):
    n_out = layers[layers.shape[0] - 1, N_OUT]
    loss_sum = 0.0
    correct = 0
    for s in range(0, X.shape[0], cap):
        e = min(s + cap, X.shape[0])
        out = network_predict(P, T, params, layers, X[s:e], cap, windowed)
        dA = dOut[:(e - s) * n_out].reshape((e - s, n_out))
        chunk_loss, chunk_correct = loss_forward_backward(dA, out, Y[s:e], loss_code, eps,
                                                          None)
        if Out is not None:
            _copy(Out[s:e], out)
        loss_sum += chunk_loss
        correct += chunk_correct
    return loss_sum, correct
