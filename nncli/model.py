"""The model: layer specs, one flat parameter buffer with per-layer views, normalisation, and
what it takes to run it (forward, predict, loss on a data set).

Parameters live in one flat float32 array, layer by layer, kernel ``(in, out)`` then bias, so an
optimizer is one loop over one array and the model file is a set of views of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nncli import kernels as K
from nncli.arch import ACTIVATIONS, LayerSpec, format_arch
from nncli.losses import PROB_EPSILON, Loss, get_loss, kernel_code

# Rows per compiled call when running a model over a whole data set (eval, predict, validation).
CHUNK_ROWS = 4096


@dataclass
class Model:
    """A dense network and everything needed to use it on new data."""

    layers: list[LayerSpec]
    n_inputs: int
    loss: str
    logits: bool
    params: np.ndarray                       # flat float32, see layer_table()
    mean: np.ndarray                         # (n_inputs,) feature means (0 without normalisation)
    std: np.ndarray                          # (n_inputs,) feature scales (1 without)
    classes: list[str] | None = None         # names of class codes when labels were strings
    feature_names: list[str] | None = None
    target_names: list[str] | None = None
    target_columns: list[int] | None = None
    info: dict = field(default_factory=dict)  # optimizer, seed, normalize, history, ...

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(cls, layers: list[LayerSpec], n_inputs: int, loss: str, logits: bool,
               seed: int = 0, **kw) -> "Model":
        """A freshly initialised model: glorot_uniform kernels and zero biases, as Keras."""
        params = np.zeros(param_count(layers, n_inputs), dtype=np.float32)
        model = cls(layers, n_inputs, loss, logits, params,
                    np.zeros(n_inputs, np.float32), np.ones(n_inputs, np.float32), **kw)
        model.init_glorot(np.random.default_rng(seed))
        return model

    def init_glorot(self, rng: np.random.Generator) -> None:
        """Kernels from U(-l, l), l = sqrt(6 / (fan_in + fan_out)); biases zero."""
        for i in range(len(self.layers)):
            W = self.kernel(i)
            limit = np.sqrt(6.0 / (W.shape[0] + W.shape[1]))
            W[...] = rng.uniform(-limit, limit, size=W.shape)
            self.bias(i)[...] = 0.0

    # ------------------------------------------------------------------ structure
    @property
    def arch(self) -> str:
        """The architecture string."""
        return format_arch(self.layers)

    @property
    def loss_spec(self) -> Loss:
        return get_loss(self.loss)

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].units

    def layer_table(self) -> np.ndarray:
        """The int64 table the kernels walk: kind, n_in, n_out, activation, weight offset,
        bias offset, activation-buffer offset (see nncli.kernels)."""
        return layer_table(self.layers, self.n_inputs)

    def kernel(self, i: int) -> np.ndarray:
        """View of layer i's kernel, shaped (in, out)."""
        row = self.layer_table()[i]
        return self.params[row[K.W_OFF]:row[K.B_OFF]].reshape(row[K.N_IN], row[K.N_OUT])

    def bias(self, i: int) -> np.ndarray:
        """View of layer i's bias, shaped (out,)."""
        row = self.layer_table()[i]
        return self.params[row[K.B_OFF]:row[K.B_OFF] + row[K.N_OUT]]

    # ------------------------------------------------------------------ running it
    def normalize(self, X: np.ndarray) -> np.ndarray:
        """Standardise X in place with the stored mean and std, and return it."""
        X -= self.mean
        X /= self.std
        return X

    def outputs(self, X: np.ndarray) -> np.ndarray:
        """What the last layer outputs for already-normalised rows X (logits with --logits)."""
        X = as_kernel_array(X)
        ws = Workspace(self.layer_table(), min(CHUNK_ROWS, max(len(X), 1)), X.dtype)
        out = np.empty((len(X), self.n_outputs), dtype=X.dtype)
        params = self.params.astype(X.dtype, copy=False)
        for s in range(0, len(X), ws.cap):
            out[s:s + ws.cap] = K.network_forward(ws.Z, ws.A, ws.T, params, ws.table,
                                                  X[s:s + ws.cap], ws.cap)
        return out

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """Outputs as probabilities: the link applied when the model outputs logits."""
        link = self.loss_spec.link
        if not self.logits or link is None:
            return outputs
        probs = np.empty_like(outputs)
        K.act_forward(probs, outputs, ACTIVATIONS[link])
        return probs

    def evaluate(self, X: np.ndarray, Y: np.ndarray) -> tuple[float, float | None]:
        """(mean loss, accuracy or None) on normalised X and prepared targets Y."""
        X, Y = as_kernel_array(X), as_kernel_array(Y)
        ws = Workspace(self.layer_table(), min(CHUNK_ROWS, max(len(X), 1)), X.dtype)
        loss_sum, correct = K.evaluate_rows(ws.Z, ws.A, ws.dA, ws.T, self.params, ws.table, X,
                                            Y, ws.cap, self.kernel_code, PROB_EPSILON)
        return loss_sum / len(X), self.accuracy(correct, len(X))

    @property
    def kernel_code(self) -> int:
        return kernel_code(self.loss_spec, self.logits)

    def accuracy(self, correct: int, n_rows: int) -> float | None:
        """Fraction correct from the kernels' count: per row for cce, per output for bce."""
        spec = self.loss_spec
        if not spec.classifier:
            return None
        per_row = 1 if spec.targets in ("index", "onehot") else self.n_outputs
        return correct / (n_rows * per_row)


@dataclass
class Workspace:
    """Preallocated activation and gradient buffers for ``cap`` rows of one network."""

    table: np.ndarray
    cap: int
    dtype: type

    def __post_init__(self) -> None:
        size = self.cap * int(self.table[:, K.N_OUT].sum())
        self.Z, self.A, self.dZ, self.dA = (np.zeros(size, self.dtype) for _ in range(4))
        self.T = np.zeros(K.scratch_size(self.table, self.cap), self.dtype)


def layer_table(layers: list[LayerSpec], n_inputs: int) -> np.ndarray:
    """The int64 layer table of the kernels for ``layers`` fed ``n_inputs`` features."""
    table = np.zeros((len(layers), K.N_COLS), dtype=np.int64)
    offset, rows, n_in = 0, 0, n_inputs
    for i, layer in enumerate(layers):
        n_out = layer.units
        table[i] = (0, n_in, n_out, ACTIVATIONS[layer.activation], offset,
                    offset + n_in * n_out, rows)
        offset += n_in * n_out + n_out
        rows += n_out
        n_in = n_out
    return table


def param_count(layers: list[LayerSpec], n_inputs: int) -> int:
    """Number of trainable parameters (kernels and biases)."""
    sizes = [n_inputs] + [layer.units for layer in layers]
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def as_kernel_array(a: np.ndarray) -> np.ndarray:
    """C-contiguous float32 (float64 stays float64, for gradcheck), as the kernels want it."""
    dtype = np.float64 if a.dtype == np.float64 else np.float32
    return np.ascontiguousarray(a, dtype=dtype)
