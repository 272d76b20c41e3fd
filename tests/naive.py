"""Plain-NumPy float64 reference implementations of the math the kernels compute.

Written from the formulas (Keras conventions, /work/shared/reference), not from nncli's code:
whole-array NumPy, no numba, no nncli imports. Every function takes and returns float64, so a
kernel result in float32 or float64 is compared against the same exact-as-possible value.

Reductions (Keras): mean over rows; bce and mse are also averaged over the outputs.
"""

from __future__ import annotations

import numpy as np

# Keras backend.epsilon(), the clip of probabilities before a log.
KERAS_EPSILON = 1e-7


def f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


# --------------------------------------------------------------------------- dense layer

def dense(X, W, b) -> np.ndarray:
    """Z = X W + b with kernels shaped (in, out), as Keras."""
    return f64(X) @ f64(W) + f64(b)


def dense_grads(dZ, X, W) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dX, dW, db) of Z = X W + b given dZ."""
    dZ, X, W = f64(dZ), f64(X), f64(W)
    return dZ @ W.T, X.T @ dZ, dZ.sum(axis=0)


# --------------------------------------------------------------------------- 1-D windowed layers
#
# A row of X is a signal of L positions x C channels, channels last (X[r, l*C + c]); a layer
# with windows of width k moved by `stride` outputs P = (L - k) // stride + 1 positions x F
# filters, stored the same way. conv: W (k, C, F), b (F,), one set of weights for every window
# (Keras Conv1D, padding "valid"); local: W (P, k, C, F), b (P, F), a set per window
# (tf.keras LocallyConnected1D). Written as one dense product per window.

def _window_weights(kind, W, b, p):
    return (W, b) if kind == "conv" else (W[p], b[p])


def windowed(kind, X, W, b, stride) -> np.ndarray:
    """Z (n, P*F) of a conv or local layer."""
    X, W, b = f64(X), f64(W), f64(b)
    k, C, F = W.shape[-3:]
    n, L = X.shape[0], X.shape[1] // C
    P = (L - k) // stride + 1
    X3 = X.reshape(n, L, C)
    Z = np.empty((n, P, F))
    for p in range(P):
        Wp, bp = _window_weights(kind, W, b, p)
        window = X3[:, p * stride:p * stride + k, :].reshape(n, k * C)
        Z[:, p, :] = window @ Wp.reshape(k * C, F) + bp
    return Z.reshape(n, P * F)


def windowed_grads(kind, dZ, X, W, stride) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dX, dW, db) of Z = windowed(kind, X, W, b, stride) given dZ (n, P*F)."""
    dZ, X, W = f64(dZ), f64(X), f64(W)
    k, C, F = W.shape[-3:]
    n, L = X.shape[0], X.shape[1] // C
    P = dZ.shape[1] // F
    X3, dZ3 = X.reshape(n, L, C), dZ.reshape(n, P, F)
    dX3 = np.zeros_like(X3)
    dW = np.zeros_like(W)
    db = np.zeros((F,) if kind == "conv" else (P, F))
    for p in range(P):
        window = X3[:, p * stride:p * stride + k, :].reshape(n, k * C)
        Wp = (W if kind == "conv" else W[p]).reshape(k * C, F)
        gW = (window.T @ dZ3[:, p]).reshape(k, C, F)
        gb = dZ3[:, p].sum(axis=0)
        if kind == "conv":
            dW += gW
            db += gb
        else:
            dW[p] = gW
            db[p] = gb
        dX3[:, p * stride:p * stride + k, :] += (dZ3[:, p] @ Wp.T).reshape(n, k, C)
    return dX3.reshape(n, L * C), dW, db


def layer(kind, X, W, b, stride=1) -> np.ndarray:
    """Z of a layer of any kind (dense ignores stride)."""
    return dense(X, W, b) if kind == "dense" else windowed(kind, X, W, b, stride)


def layer_grads(kind, dZ, X, W, stride=1):
    """(dX, dW, db) of a layer of any kind."""
    return dense_grads(dZ, X, W) if kind == "dense" else windowed_grads(kind, dZ, X, W, stride)


# --------------------------------------------------------------------------- activations

def sigmoid(z) -> np.ndarray:
    z = f64(z)
    # split by sign so that exp never overflows
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    e = np.exp(z[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def softmax(z) -> np.ndarray:
    z = f64(z)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(z) -> np.ndarray:
    z = f64(z)
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def relu(z) -> np.ndarray:
    return np.maximum(f64(z), 0.0)


ACT_FORWARD = {
    "linear": lambda z: f64(z).copy(),
    "relu": relu,
    "sigmoid": sigmoid,
    "tanh": lambda z: np.tanh(f64(z)),
    "softmax": softmax,
}


def act_grad(name: str, Z, dA) -> np.ndarray:
    """dZ = d(loss)/dZ given dA = d(loss)/dA for A = act(Z), computed from Z alone."""
    Z, dA = f64(Z), f64(dA)
    if name == "linear":
        return dA.copy()
    if name == "relu":
        return np.where(Z > 0, dA, 0.0)          # subgradient 0 at the kink, as TF
    if name == "sigmoid":
        s = sigmoid(Z)
        return dA * s * (1.0 - s)
    if name == "tanh":
        return dA / np.cosh(Z) ** 2
    if name == "softmax":
        # full Jacobian per row: J = diag(a) - a a^T (symmetric)
        out = np.empty_like(Z)
        for r in range(Z.shape[0]):
            a = softmax(Z[r])
            J = np.diag(a) - np.outer(a, a)
            out[r] = J @ dA[r]
        return out
    raise KeyError(name)


# --------------------------------------------------------------------------- losses

def mse(Out, Y) -> tuple[np.ndarray, np.ndarray]:
    """(row losses, dMean/dOut)."""
    Out, Y = f64(Out), f64(Y)
    n, k = Out.shape
    return ((Out - Y) ** 2).mean(axis=1), 2.0 * (Out - Y) / (n * k)


def bce_logits(Out, Y):
    """Stable sigmoid cross-entropy from logits (TF's sigmoid_cross_entropy_with_logits)."""
    X, Y = f64(Out), f64(Y)
    n, k = X.shape
    elem = np.maximum(X, 0.0) - X * Y + np.log1p(np.exp(-np.abs(X)))
    return elem.mean(axis=1), (sigmoid(X) - Y) / (n * k)


def bce_probs(Out, Y, eps=KERAS_EPSILON):
    """Keras binary_crossentropy on probabilities: clip to [eps, 1-eps], then the logs.
    The clip passes no gradient where it is active."""
    P, Y = f64(Out), f64(Y)
    n, k = P.shape
    p = np.clip(P, eps, 1.0 - eps)
    elem = -(Y * np.log(p) + (1.0 - Y) * np.log(1.0 - p))
    inside = (P > eps) & (P < 1.0 - eps)
    grad = np.where(inside, -Y / p + (1.0 - Y) / (1.0 - p), 0.0) / (n * k)
    return elem.mean(axis=1), grad


def cce_logits(Out, Y):
    """Softmax cross-entropy from logits with (possibly soft) target rows."""
    Z, Y = f64(Out), f64(Y)
    n = Z.shape[0]
    rows = -(Y * log_softmax(Z)).sum(axis=1)
    grad = (softmax(Z) * Y.sum(axis=1, keepdims=True) - Y) / n
    return rows, grad


def cce_probs(Out, Y, eps=KERAS_EPSILON):
    """Keras categorical_crossentropy on probabilities: q = o / sum(o), clip q, -sum y log q.
    Gradient through the clip (zero where active) and the normalisation (full Jacobian)."""
    O, Y = f64(Out), f64(Y)
    n, k = O.shape
    rows = np.empty(n)
    grad = np.empty_like(O)
    for r in range(n):
        s = O[r].sum()
        q = O[r] / s
        p = np.clip(q, eps, 1.0 - eps)
        rows[r] = -(Y[r] * np.log(p)).sum()
        dq = np.where((q > eps) & (q < 1.0 - eps), -Y[r] / p, 0.0)
        J = (np.eye(k) - q[:, None]) / s        # J[i, j] = dq_i / do_j
        grad[r] = J.T @ dq / n
    return rows, grad


# (function, "rows" or "elements" for the correct count, threshold for elements)
LOSSES = {
    0: mse,
    1: bce_logits,
    2: bce_probs,
    3: cce_logits,
    4: cce_probs,
}


def loss(code: int, Out, Y):
    """(sum over rows of the row losses, dMean/dOut) for a kernel loss code."""
    rows, grad = LOSSES[code](Out, Y)
    return rows.sum(), grad


def weighted_loss(code: int, Out, Y, w):
    """(sum over rows of w_r x row loss, dMean/dOut) with row weights w (Keras sample_weight,
    reduction sum_over_batch_size: the weighted row losses summed, divided by the n rows)."""
    rows, grad = LOSSES[code](Out, Y)
    w = f64(w)
    return (w * rows).sum(), grad * w[:, None]


def correct(code: int, Out, Y) -> int:
    """Keras accuracy counts: argmax per row for cce, thresholded per element for bce
    (0 on logits, 0.5 on probabilities); mse counts nothing."""
    Out, Y = f64(Out), f64(Y)
    if code in (3, 4):
        return int((Out.argmax(axis=1) == Y.argmax(axis=1)).sum())
    if code in (1, 2):
        threshold = 0.0 if code == 1 else 0.5
        return int(((Out > threshold) == (Y >= 0.5)).sum())
    return 0


# --------------------------------------------------------------------------- whole network

def forward(weights, activations, X):
    """All (Z, A) of a dense network; weights = [(W, b), ...], activations = names."""
    cache = []
    A = f64(X)
    for (W, b), name in zip(weights, activations):
        Z = dense(A, W, b)
        A = ACT_FORWARD[name](Z)
        cache.append((Z, A))
    return cache


def forward_backward(weights, activations, X, Y, code, w=None):
    """(loss sum over rows, [(dW, db), ...] of the mean loss, network output); with row
    weights w, of the weighted loss (see weighted_loss)."""
    cache = forward(weights, activations, X)
    out = cache[-1][1]
    loss_sum, dA = loss(code, out, Y) if w is None else weighted_loss(code, out, Y, w)
    grads = [None] * len(weights)
    for l in range(len(weights) - 1, -1, -1):
        Z, _ = cache[l]
        dZ = act_grad(activations[l], Z, dA)
        inp = f64(X) if l == 0 else cache[l - 1][1]
        dA, dW, db = dense_grads(dZ, inp, weights[l][0])
        grads[l] = (dW, db)
    return loss_sum, grads, out


def forward_layers(net, X):
    """All (Z, A) of a network of any layer kinds; net = [(kind, W, b, stride, activation)]."""
    cache = []
    A = f64(X)
    for kind, W, b, stride, name in net:
        Z = layer(kind, A, W, b, stride)
        A = ACT_FORWARD[name](Z)
        cache.append((Z, A))
    return cache


def forward_backward_layers(net, X, Y, code):
    """(loss sum over rows, [(dW, db), ...] of the mean loss, network output) of a network of
    any layer kinds; net as for forward_layers."""
    cache = forward_layers(net, X)
    out = cache[-1][1]
    loss_sum, dA = loss(code, out, Y)
    grads = [None] * len(net)
    for l in range(len(net) - 1, -1, -1):
        kind, W, _, stride, name = net[l]
        dZ = act_grad(name, cache[l][0], dA)
        inp = f64(X) if l == 0 else cache[l - 1][1]
        dA, dW, db = layer_grads(kind, dZ, inp, W, stride)
        grads[l] = (dW, db)
    return loss_sum, grads, out


# --------------------------------------------------------------------------- weight penalties

def penalty(kernels, l1=0.0, l2=0.0) -> float:
    """Keras L1L2(l1, l2) over every kernel: l2 sum(w^2) + l1 sum(|w|)."""
    return float(sum(l2 * np.sum(f64(W) ** 2) + l1 * np.sum(np.abs(f64(W))) for W in kernels))


def penalty_grads(kernels, l1=0.0, l2=0.0) -> list[np.ndarray]:
    """d(penalty)/dW of every kernel: 2 l2 W + l1 sign(W), sign(0) = 0 (TensorFlow's)."""
    return [2 * l2 * f64(W) + l1 * np.sign(f64(W)) for W in kernels]


# --------------------------------------------------------------------------- dropout

_M64 = (1 << 64) - 1
_G = 0x9E3779B97F4A7C15   # SplitMix64's increment


def _splitmix(x: int) -> int:
    """SplitMix64's finaliser, on Python integers modulo 2^64."""
    x &= _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def dropout_mask(key: int, step: int, n: int, width: int, rate: float) -> np.ndarray:
    """(n, width) inverted-dropout mask of one batch (Keras Dropout: kept units scaled by
    1 / (1 - rate)): unit j of row r is dropped when the top 53 bits of
    mix(mix(mix(key + step G) + r G) + j G) are below rate * 2^53."""
    batch = _splitmix(key + step * _G)
    mask = np.empty((n, width))
    for r in range(n):
        row = _splitmix(batch + r * _G)
        for j in range(width):
            bits = _splitmix(row + j * _G) >> 11
            mask[r, j] = 0.0 if bits < int(rate * 2.0 ** 53) else 1.0 / (1.0 - rate)
    return mask


# --------------------------------------------------------------------------- optimizers

def adam_steps(w, grads, lr=1e-3, b1=0.9, b2=0.999, eps=1e-7):
    """Keras Adam over successive gradients; returns (w, m, v) after the last step."""
    w = f64(w).copy()
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        g = f64(g)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        alpha = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        w = w - alpha * m / (np.sqrt(v) + eps)
    return w, m, v


def sgd_steps(w, grads, lr=0.01, momentum=0.0):
    """Keras SGD: velocity = momentum velocity - lr g; w += velocity. Returns (w, velocity)."""
    w = f64(w).copy()
    vel = np.zeros_like(w)
    for g in grads:
        vel = momentum * vel - lr * f64(g)
        w = w + vel
    return w, vel


# --------------------------------------------------------------------------- lr schedules
# Keras 3's keras.optimizers.schedules and callbacks.ReduceLROnPlateau, written from their source
# (/work/shared/reference/keras-defaults.md); ``step`` is optimizer.iterations before the update.

def keras_exponential_decay(lr, decay_rate, decay_steps, step) -> float:
    """ExponentialDecay(lr, decay_steps, decay_rate, staircase=False)(step)."""
    p = np.float64(step) / np.float64(decay_steps)
    return float(np.float64(lr) * np.power(np.float64(decay_rate), p))


def keras_cosine_decay(lr, decay_steps, step, alpha=0.0, warmup_target=None,
                       warmup_steps=0) -> float:
    """CosineDecay(lr, decay_steps, alpha, warmup_target, warmup_steps)(step)."""
    def decay(s, initial):
        s = min(s, decay_steps)
        cosine = 0.5 * (1.0 + np.cos(np.pi * s / decay_steps))
        return float(initial * ((1 - alpha) * cosine + alpha))

    if warmup_target is None:
        return decay(step, lr)
    step = min(step, decay_steps + warmup_steps)
    if step < warmup_steps:
        return float((warmup_target - lr) * step / warmup_steps + lr)
    return decay(step - warmup_steps, warmup_target)


def keras_plateau_rates(values, lr, patience, factor, min_lr=0.0, min_delta=1e-4) -> list:
    """The learning rate each epoch used under ReduceLROnPlateau (mode min, cooldown 0) when
    the monitored metric is ``values`` (one per epoch), as Keras logs ``learning_rate``."""
    best, wait, used = np.inf, 0, []
    for current in values:
        used.append(lr)
        if np.less(current, best - min_delta):
            best, wait = current, 0
        else:
            wait += 1
            if wait >= patience and lr > min_lr:
                lr, wait = max(lr * factor, min_lr), 0
    return used


# --------------------------------------------------------------------------- comparison

# Relative tolerance of a kernel result against the float64 reference, by kernel dtype.
RTOL = {np.float64: 1e-10, np.float32: 1e-5}


def assert_close(got, want, dtype, rtol=None, scale=None) -> None:
    """assert_allclose with the dtype's rtol, plus an absolute floor of rtol times ``scale``
    (default: the largest |want|, at least 1), for entries that cancel to near zero."""
    rtol = RTOL[np.dtype(dtype).type] if rtol is None else rtol
    want = f64(want)
    if scale is None:
        scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(f64(got), want, rtol=rtol, atol=rtol * scale)
