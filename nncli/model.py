"""The model: layer specs, one flat parameter buffer with per-layer views, its preprocessing
stage, and what it takes to run it (forward, predict, loss on a data set).

Parameters live in one flat float32 array, layer by layer, kernel then bias, in the shapes
Keras stores them (``arch.param_shapes``): dense ``(in, out)`` and ``(out,)``, conv
``(kernel, in_channels, filters)`` and ``(filters,)``, local ``(positions, kernel, in_channels,
filters)`` and ``(positions, filters)``. An optimizer is one loop over one array and the model
file is a set of views of it. The input rows are signals of ``n_inputs / channels`` positions x
``channels`` values, channels last.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nncli import arch
from nncli.arch import ACTIVATIONS, LAYER_KINDS, LayerSpec, format_arch
from nncli.data.schema import Schema
from nncli.errors import ModelFileError
from nncli.kernel_cache import prepare_numba
from nncli.losses import PROB_EPSILON, Loss, get_loss, kernel_code
from nncli.preprocess import Preprocessing

# Numba's settings (the per-user cache folder, the vector width) must be in place before the
# kernels load, whoever imports them first: the command line has done it already (and said so
# if the cache cannot be written); a script, a benchmark or a Ray worker gets the same here.
# Other modules take the kernels from this module (``from nncli.model import K``).
prepare_numba()
from nncli import kernels as K  # noqa: E402 - only once Numba is ready

# Rows per compiled call when running a model over a whole data set (eval, predict, validation).
CHUNK_ROWS = 4096


@dataclass
class Model:
    """A network (dense, conv and local layers) and everything needed to use it on new data."""

    layers: list[LayerSpec]
    n_inputs: int
    loss: str
    logits: bool
    params: np.ndarray                       # flat float32, see layer_table()
    preprocessing: Preprocessing             # fill values, standardisation, target scaling
    classes: list[str] | None = None         # names of class codes when labels were strings
    feature_names: list[str] | None = None
    target_names: list[str] | None = None
    target_columns: list[int] | None = None
    info: dict = field(default_factory=dict)  # optimizer, seed, normalize, history, ...
    channels: int = 1                        # a row is n_inputs / channels positions x channels

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(cls, layers: list[LayerSpec], n_inputs: int, loss: str, logits: bool,
               seed: int = 0, channels: int = 1, **kw) -> "Model":
        """A freshly initialised model: glorot_uniform kernels and zero biases, as Keras.

        Its preprocessing changes nothing unless ``preprocessing`` is given. ArchError when the
        layers do not fit ``n_inputs`` features of ``channels`` channels."""
        params = np.zeros(param_count(layers, n_inputs, channels), dtype=np.float32)
        kw.setdefault("preprocessing", Preprocessing.identity(n_inputs))
        model = cls(layers, n_inputs, loss, logits, params, channels=channels, **kw)
        model.init_glorot(np.random.default_rng(seed))
        return model

    def init_glorot(self, rng: np.random.Generator) -> None:
        """Kernels from U(-l, l), l = sqrt(6 / (fan_in + fan_out)); biases zero.

        Fans as Keras computes them from the kernel's shape: the last axis is the output
        channels, the one before it the input channels, and any leading axes a receptive field
        that multiplies both (dense (in, out): in, out; conv (k, C, F): k*C, k*F; local
        (P, k, C, F): P*k*C, P*F, as tf.keras's LocallyConnected1D kernel (P, k*C, F)).
        """
        for i in range(len(self.layers)):
            W = self.kernel(i)
            if W.size == 0:  # a layer without parameters (dropout)
                continue
            fan_in, fan_out = glorot_fans(self.layers[i].kind, W.shape)
            limit = np.sqrt(6.0 / (fan_in + fan_out))
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
        """Width of the last layer's flat output (positions x filters for conv and local)."""
        return self.shapes()[-1].n_out

    def shapes(self) -> list[arch.LayerShape]:
        """Input and output shape of every layer (arch.layer_shapes)."""
        return arch.layer_shapes(self.layers, self.n_inputs, self.channels)

    def param_shapes(self) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        """(kernel shape, bias shape) of every layer (arch.param_shapes)."""
        return arch.param_shapes(self.layers, self.n_inputs, self.channels)

    def layer_table(self) -> np.ndarray:
        """The int64 table the kernels walk: kind, n_in, n_out, activation, weight offset,
        bias offset, activation-buffer offset, kernel width, stride, input channels,
        positions, filters, dropout key and threshold (see nncli.kernels). Dropout masks are
        keyed by the run's --seed (``info["seed"]``; 0 when there is none)."""
        return layer_table(self.layers, self.n_inputs, self.channels,
                           int(self.info.get("seed") or 0))

    def kernel(self, i: int) -> np.ndarray:
        """View of layer i's kernel: (in, out), (kernel, in_channels, filters) or
        (positions, kernel, in_channels, filters)."""
        shape = self.param_shapes()[i][0]
        start = int(self.layer_table()[i, K.W_OFF])
        return self.params[start:start + _size(shape)].reshape(shape)

    def bias(self, i: int) -> np.ndarray:
        """View of layer i's bias: (out,), (filters,) or (positions, filters)."""
        shape = self.param_shapes()[i][1]
        start = int(self.layer_table()[i, K.B_OFF])
        return self.params[start:start + _size(shape)].reshape(shape)

    # Read-only views of the stage's arrays: the model file's readers, `info`, the training
    # summary and many tests read them; only the stage (fitted in training) writes them.
    @property
    def mean(self) -> np.ndarray:
        """(n_inputs,) the features' means (0 without normalisation)."""
        return self.preprocessing.mean

    @property
    def std(self) -> np.ndarray:
        """(n_inputs,) the features' scales (1 without normalisation)."""
        return self.preprocessing.std

    @property
    def target_mean(self) -> np.ndarray | None:
        """(n_outputs,) mse: the targets' means; None when they are used as they are."""
        return self.preprocessing.target_mean

    @property
    def target_std(self) -> np.ndarray | None:
        """(n_outputs,) mse: the targets' scales; None when they are used as they are."""
        return self.preprocessing.target_std

    def input_schema(self) -> Schema:
        """The input columns: the stored schema, or (older files, NPZ-trained models) one
        numeric column per input named as the features were."""
        if self.preprocessing.schema is not None:
            return self.preprocessing.schema
        names = self.feature_names if self.feature_names and \
            len(self.feature_names) == self.n_inputs else [f"x{i}" for i in range(self.n_inputs)]
        return Schema.numeric(list(names))

    def target_lookup(self) -> tuple[list[str], list[int]] | None:
        """The target names and columns it was trained on, to find its targets in a file
        (``load_training_data``'s ``model_targets``); None when not recorded."""
        if self.target_columns:
            return list(self.target_names or []), list(self.target_columns)
        return None

    def layer_records(self) -> list["LayerRecord"]:
        """One record per layer: what every walk over the layers needs (info, the model file,
        the exporter) in one place."""
        return [LayerRecord(i, spec, shape, self.kernel(i), self.bias(i))
                for i, (spec, shape) in enumerate(zip(self.layers, self.shapes()))]

    # ------------------------------------------------------------------ running it
    # The training loop holds only the model: these two hand over to the stage.
    def scale_targets(self, Y: np.ndarray) -> np.ndarray:
        """Targets in the units the network learns (Preprocessing.scale_targets)."""
        return self.preprocessing.scale_targets(Y)

    def unscale_outputs(self, out: np.ndarray) -> np.ndarray:
        """The network's outputs in the targets' own units (Preprocessing.unscale_outputs)."""
        return self.preprocessing.unscale_outputs(out)

    def outputs(self, X: np.ndarray, scratch: "PredictScratch | None" = None) -> np.ndarray:
        """What the last layer outputs for preprocessed rows X (``preprocessing.transform``;
        logits with --logits); ``scratch``: the network's buffers (``predict_scratch``), kept
        by a caller that runs it a block of rows at a time, else made for this call."""
        X = as_kernel_array(X)
        if scratch is None or scratch.P.dtype != X.dtype:
            scratch = self.predict_scratch(len(X), X.dtype)
        cap = scratch.cap
        out = np.empty((len(X), self.n_outputs), dtype=X.dtype)
        params = self.params.astype(X.dtype, copy=False)
        for s in range(0, len(X), cap):
            out[s:s + cap] = K.network_predict(scratch.P, scratch.T, params, scratch.table,
                                               X[s:s + cap], cap, scratch.windowed)
        return out

    def predict_scratch(self, rows: int, dtype: type = np.float32) -> "PredictScratch":
        """Buffers for ``outputs`` of up to CHUNK_ROWS rows a compiled call, sized for ``rows``."""
        table = self.layer_table()
        cap = min(CHUNK_ROWS, max(rows, 1))
        p_size, t_size = K.predict_sizes(table, cap)
        return PredictScratch(table, cap, np.empty(p_size, dtype), np.empty(t_size, dtype),
                              windowed(table))

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """Outputs as probabilities: the link applied when the model outputs logits."""
        link = self.loss_spec.link
        if not self.logits or link is None:
            return outputs
        probs = np.empty_like(outputs)
        K.act_forward(probs, outputs, ACTIVATIONS[link])
        return probs

    def evaluate(self, X: np.ndarray, Y: np.ndarray) -> tuple[float, float | None]:
        """(mean loss, accuracy or None) on preprocessed X and prepared, scaled targets Y."""
        loss, accuracy, _ = self._evaluate(X, Y, with_outputs=False)
        return loss, accuracy

    def evaluate_outputs(self, X: np.ndarray,
                         Y: np.ndarray) -> tuple[float, float | None, np.ndarray]:
        """``evaluate``'s loss and accuracy (the same bits) and ``outputs(X)``, from one pass
        of the network over the rows."""
        loss, accuracy, out = self._evaluate(X, Y, with_outputs=True)
        assert out is not None
        return loss, accuracy, out

    def _evaluate(self, X: np.ndarray, Y: np.ndarray,
                  with_outputs: bool) -> tuple[float, float | None, np.ndarray | None]:
        X, Y = as_kernel_array(X), as_kernel_array(Y)
        scratch = self.predict_scratch(len(X), X.dtype)
        dOut = np.empty(scratch.cap * self.n_outputs, X.dtype)
        out = np.empty((len(X), self.n_outputs), X.dtype) if with_outputs else None
        loss_sum, correct = K.evaluate_rows(out, scratch.P, dOut, scratch.T, self.params,
                                            scratch.table, X, Y, scratch.cap, self.kernel_code,
                                            PROB_EPSILON, scratch.windowed)
        return loss_sum / len(X) + self.penalty(), self.accuracy(correct, len(X)), out

    @property
    def penalties(self) -> tuple[float, float]:
        """(l1, l2): the weight penalties it was trained with (--l1, --l2; 0 in files from
        before them)."""
        options = self.info.get("options") or {}
        found = []
        for key in ("l1", "l2"):
            value = options.get(key) or 0.0
            # a crafted file may hold anything here: refuse it in one line, not a traceback
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not 0.0 <= value < float("inf"):
                raise ModelFileError(f"damaged model metadata: options '{key}' must be a "
                                     f"number 0 or more, found {value!r:.40}")
            found.append(float(value))
        return found[0], found[1]

    def penalty(self) -> float:
        """The weight penalty of its kernels, l2 sum(w^2) + l1 sum(|w|), which its loss includes
        (Keras adds a kernel_regularizer's penalty to the loss that fit and evaluate report)."""
        l1, l2 = self.penalties
        if not (l1 or l2):
            return 0.0
        return K.penalty_forward(self.params, self.layer_table(), l1, l2)

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


@dataclass(frozen=True)
class LayerRecord:
    """A layer of a model: its position, spec, input/output shape, and views of its kernel and
    bias in the flat parameters (writing to them changes the model)."""

    index: int
    spec: LayerSpec
    shape: arch.LayerShape
    kernel: np.ndarray
    bias: np.ndarray

    def summary(self) -> dict:
        """What ``nncli info`` shows of the layer: the model file's entry (kind, units,
        activation, window of conv and local; ``arch.LayerKind.entry``), then the output shape
        (units, or positions x filters), the kernel and bias shapes and the parameter count."""
        kind = LAYER_KINDS[self.spec.kind]
        return {**kind.entry(self.spec), "output_shape": kind.output_shape(self.shape),
                "kernel_shape": list(self.kernel.shape), "bias_shape": list(self.bias.shape),
                "parameters": int(self.kernel.size + self.bias.size)}


@dataclass
class Workspace:
    """Preallocated activation and gradient buffers for ``cap`` rows of one network, and the
    ``windowed`` argument of the kernels' network functions: None when every layer is dense
    (their dense-only variant, which never compiles the conv and local kernels), else True;
    and train_batches' ``fused`` (see ``fused_step``)."""

    table: np.ndarray
    cap: int
    dtype: type

    def __post_init__(self) -> None:
        size = self.cap * int(self.table[:, K.N_OUT].sum())
        self.Z, self.A, self.dZ, self.dA = (np.zeros(size, self.dtype) for _ in range(4))
        self.T = np.zeros(K.scratch_size(self.table, self.cap), self.dtype)
        self.windowed = windowed(self.table)
        self.fused = fused_step(self.table, np.dtype(self.dtype).itemsize)


@dataclass
class PredictScratch:
    """The buffers of the kernels' network_predict for ``cap`` rows a call: its ping-pong
    halves P and scratch T, with the layer table and the ``windowed`` argument it runs with."""

    table: np.ndarray
    cap: int
    P: np.ndarray
    T: np.ndarray
    windowed: bool | None


def windowed(table: np.ndarray) -> bool | None:
    """The kernels' ``windowed`` argument for a layer table: None when no layer is conv or local
    (their dense-only variant: dense and dropout layers), else True."""
    codes = [kind.code for kind in LAYER_KINDS.values() if kind.windowed]
    return True if bool(np.isin(table[:, K.KIND], codes).any()) else None


# Weights in the wide dense kernels from which training steps them inside their weight
# gradient's tiles: their weights, gradients and Adam's moments (16 bytes a float32 weight)
# then fill half a core's 2 MiB L2 or more, and the gradient's trip through memory shows (on an
# Intel Xeon, B/32 with 100k such weights ran 1.07x faster fused, C/32 with 663k 1.03x on one
# thread and 1.08x on two). Smaller networks keep the plain step, whose first compile after
# install is about 1 s shorter.
FUSED_FROM_WEIGHTS = 1 << 16


def fused_step(table: np.ndarray, itemsize: int = 4) -> bool | None:
    """train_batches' ``fused`` for a layer table: True when its wide dense kernels (those that
    fill a tile, kernels.steps_in_backward) hold at least FUSED_FROM_WEIGHTS weights, else None
    (the variant that never compiles the fused step)."""
    wide = sum(int(row[K.N_IN] * row[K.N_OUT]) for row in table
               if row[K.KIND] == K.DENSE and row[K.N_OUT] * itemsize >= K.TILE_BYTES)
    return True if wide >= FUSED_FROM_WEIGHTS else None


def layer_table(layers: list[LayerSpec], n_inputs: int, channels: int = 1,
                seed: int = 0) -> np.ndarray:
    """The int64 layer table of the kernels for ``layers`` fed ``n_inputs`` features read as
    ``n_inputs / channels`` positions x ``channels``; ArchError when a layer does not fit.
    A dropout layer's masks are keyed by ``seed`` and its index (``dropout_key``)."""
    table = np.zeros((len(layers), K.N_COLS), dtype=np.int64)
    shapes = arch.layer_shapes(layers, n_inputs, channels)
    pshapes = arch.param_shapes(layers, n_inputs, channels)
    offset, rows = 0, 0
    for i, (layer, s, (w_shape, b_shape)) in enumerate(zip(layers, shapes, pshapes)):
        row = table[i]
        row[K.KIND] = LAYER_KINDS[layer.kind].code
        row[K.N_IN], row[K.N_OUT] = s.n_in, s.n_out
        row[K.ACT] = ACTIVATIONS[layer.activation]
        row[K.W_OFF], row[K.B_OFF] = offset, offset + _size(w_shape)
        row[K.A_OFF] = rows
        row[K.KERNEL], row[K.STRIDE] = layer.kernel, layer.effective_stride
        row[K.CHANNELS], row[K.POSITIONS], row[K.FILTERS] = s.channels, s.positions, s.filters
        row[K.KEY] = dropout_key(seed, i)
        row[K.THRESHOLD] = dropout_threshold(layer.rate)
        offset += _size(w_shape) + _size(b_shape)
        rows += s.n_out
    return table


_MASK64 = (1 << 64) - 1


def splitmix64(x: int) -> int:
    """SplitMix64's finaliser on a 64-bit integer (as kernels._mix64 computes it)."""
    x &= _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def dropout_key(seed: int, index: int) -> int:
    """The key of layer ``index``'s dropout masks in a run of ``seed``, as a signed int64 (the
    table's type; the kernels read its bits as unsigned): layers and seeds draw apart."""
    key = splitmix64(splitmix64(seed) + (index + 1) * K.GOLDEN)
    return key - (1 << 64) if key >= 1 << 63 else key


def dropout_threshold(rate: float) -> int:
    """A unit is dropped when the top 53 bits of its hash are below this: rate * 2^53, exact
    for rate >= 0.5 (and within 2^-53 of the rate below)."""
    return int(rate * 2.0 ** 53)


def param_count(layers: list[LayerSpec], n_inputs: int, channels: int = 1) -> int:
    """Number of trainable parameters (kernels and biases)."""
    return arch.param_count(layers, n_inputs, channels)


def glorot_fans(kind: str, shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a layer's kernel, as Keras's initializers compute them from its
    shape; a local kernel (P, k, C, F) counts as tf.keras's (P, k*C, F) (arch.LayerKind.fans)."""
    return LAYER_KINDS[kind].fans(shape)


def _size(shape: tuple[int, ...]) -> int:
    out = 1
    for d in shape:
        out *= int(d)
    return out


def as_kernel_array(a: np.ndarray) -> np.ndarray:
    """C-contiguous float32 (float64 stays float64, for gradcheck), as the kernels want it."""
    dtype = np.float64 if a.dtype == np.float64 else np.float32
    return np.ascontiguousarray(a, dtype=dtype)
