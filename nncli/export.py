"""A model as an ONNX graph: what ``nncli export`` writes. The only module that imports onnx.

The graph takes what ``nncli predict`` reads and returns what it prints:

  input   features       float32 (N, n_inputs), raw (unstandardised) features, N free, in
                         the encoded layout predict reads from NPY: one float per feature of
                         ``schema.feature_names()``, categorical columns one-hot (metadata
                         ``input_layout``)
  outputs probabilities  float32 (N, n_outputs)  classifiers: sigmoid/softmax applied, as
                                                  ``predict --output proba``
          logits         float32 (N, n_outputs)  classifiers trained with --logits only: the
                                                  last layer's output (``--output logits``)
          values         float32 (N, n_outputs)  regression (mse): the values predict prints

Inside: the model's preprocessing stage (``nncli.preprocess``, read from its arrays): missing
numbers filled and the features standardised ``(x - mean) / std`` for numeric features
(``_input_nodes``); one small converter per layer kind (``CONVERTERS``, as skl2onnx registers
one converter per estimator) followed by one builder per activation (``ACTIVATIONS``); then
the outputs (``_output_nodes``): the link for --logits classifiers, the stage's
de-standardisation of the targets for regression models that carry one.

Layer layouts (nncli.kernels_conv): a row is a signal of L positions x C channels, flat and
channels last; a conv or local layer outputs P positions x F filters the same way, and the
window of position p is the contiguous slice ``x[p*s*C : (p*s + k)*C]``.

  dense  MatMul (N, n_in) x kernel (n_in, units), Add bias
  conv   Reshape (N, L, C) -> Transpose (N, C, L) -> Conv, weight (F, C, k) = kernel (k, C, F)
         transposed, strides [s], no padding -> (N, F, P) -> Transpose (N, P, F) -> Reshape
  local  Gather the P windows from the flat row with a constant (P, k*C) index -> (N, P, kC)
         -> Transpose (P, N, kC) -> MatMul kernel (P, kC, F) -> Transpose (N, P, F) -> Add bias
         (P, F) -> Reshape. (MatMul rather than Einsum: every runtime has it.)

Hidden and output activations act on the flat (N, width) tensor, so softmax spans the whole
row as in the kernels. Metadata properties name the classes, features, targets and outputs.

Anything that cannot be exported faithfully is an ExportError with a one-line reason, never a
graph that differs from ``predict``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nncli import __version__
from nncli.errors import ExportError


try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError:  # the extra nncli[onnx] is not installed
    raise ExportError("nncli export needs onnx: pip install 'nncli[onnx]'") from None

from nncli.arch import LayerShape, LayerSpec
from nncli.model import Model
from nncli.files import check_writable, write_atomically

# The opsets nncli writes: 13 is the first with Softmax over one axis (the last) rather than
# over a flattened 2-D view, and what current runtimes all read; the newest is what the
# installed onnx package knows. 17 by default: old enough for every maintained runtime.
MIN_OPSET = 13
DEFAULT_OPSET = 17
INPUT_NAME = "features"
BATCH = "N"


def max_opset() -> int:
    """The newest opset the installed onnx package can write and check."""
    return onnx.defs.onnx_opset_version()


# --------------------------------------------------------------------------- graph builder

class _Graph:
    """Nodes and constant tensors of a graph under construction, with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, hint: str, array: np.ndarray) -> str:
        """A constant tensor (float32 or int64, as given); its name."""
        name = self._name(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], hint: str | None = None,
             output: str | None = None, **attrs) -> str:
        """Append one node of ``op``; its (single) output name."""
        out = output or self._name(hint or op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=self._name(op), **attrs))
        return out

    def reshape(self, x: str, shape: list[int], hint: str) -> str:
        """x reshaped to ``shape``; a 0 keeps that axis of x (the free batch axis)."""
        return self.node("Reshape", [x, self.const(f"{hint}_shape", np.array(shape, np.int64))],
                         hint)


# --------------------------------------------------------------------------- layer converters

# A converter adds one layer's product and bias: flat x (N, n_in) -> flat (N, n_out) and
# returns the output's name; the activation follows separately.
Converter = Callable[[_Graph, str, str, LayerSpec, LayerShape, np.ndarray, np.ndarray], str]


def _dense(g: _Graph, x: str, tag: str, layer: LayerSpec, shape: LayerShape, W: np.ndarray,
           b: np.ndarray) -> str:
    """x (N, n_in) @ W (n_in, units) + b (units,)."""
    z = g.node("MatMul", [x, g.const(f"{tag}_kernel", W)], f"{tag}_matmul")
    return g.node("Add", [z, g.const(f"{tag}_bias", b)], f"{tag}_z")


def _conv(g: _Graph, x: str, tag: str, layer: LayerSpec, shape: LayerShape, W: np.ndarray,
          b: np.ndarray) -> str:
    """Z[n, p, f] = b[f] + sum_{j, c} X[n, p*s + j, c] W[j, c, f], as ONNX Conv over (N, C, L)
    with weight (F, C, k)."""
    L, C, P, F = shape
    signal = g.node("Transpose", [g.reshape(x, [0, L, C], f"{tag}_signal")], f"{tag}_ncl",
                    perm=[0, 2, 1])
    weight = g.const(f"{tag}_weight", np.transpose(W, (2, 1, 0)))
    z = g.node("Conv", [signal, weight, g.const(f"{tag}_bias", b)], f"{tag}_conv",
               kernel_shape=[layer.kernel], strides=[layer.effective_stride],
               pads=[0, 0], dilations=[1], group=1)
    z = g.node("Transpose", [z], f"{tag}_npf", perm=[0, 2, 1])
    return g.reshape(z, [0, P * F], f"{tag}_z")


def _local(g: _Graph, x: str, tag: str, layer: LayerSpec, shape: LayerShape, W: np.ndarray,
           b: np.ndarray) -> str:
    """Z[n, p, f] = b[p, f] + sum_t X[n, p*s*C + t] W[p, t, f] over the window's k*C values."""
    _, C, P, F = shape
    kC = layer.kernel * C
    index = (np.arange(P, dtype=np.int64)[:, None] * (layer.effective_stride * C)
             + np.arange(kC, dtype=np.int64)[None, :])
    windows = g.node("Gather", [x, g.const(f"{tag}_windows", index)], f"{tag}_npt", axis=1)
    windows = g.node("Transpose", [windows], f"{tag}_pnt", perm=[1, 0, 2])
    z = g.node("MatMul", [windows, g.const(f"{tag}_kernel", W.reshape(P, kC, F))],
               f"{tag}_pnf")
    z = g.node("Transpose", [z], f"{tag}_npf", perm=[1, 0, 2])
    z = g.node("Add", [z, g.const(f"{tag}_bias", b)], f"{tag}_biased")
    return g.reshape(z, [0, P * F], f"{tag}_z")


def _dropout(g: _Graph, x: str, tag: str, layer: LayerSpec, shape: LayerShape, W: np.ndarray,
             b: np.ndarray) -> str:
    """Dropout is the identity outside training (Keras's Dropout at inference): x itself."""
    return x


CONVERTERS: dict[str, Converter] = {
    "dense": _dense,
    "conv": _conv,
    "local": _local,
    "dropout": _dropout,
}

# One builder per activation of arch.ACTIVATIONS (a test checks that none is missing); each
# acts on a flat (N, width) tensor, and names its result ``output`` when given. Softmax is over
# the last axis: the whole row, as in the kernels.
Activation = Callable[..., str]


def _elementwise(op: str, **attrs) -> Activation:
    def build(g: _Graph, z: str, tag: str, output: str | None = None) -> str:
        return g.node(op, [z], f"{tag}_{op.lower()}", output, **attrs)
    return build


def _linear(g: _Graph, z: str, tag: str, output: str | None = None) -> str:
    return z if output is None else g.node("Identity", [z], output=output)


ACTIVATIONS: dict[str, Activation] = {
    "linear": _linear,
    "relu": _elementwise("Relu"),
    "sigmoid": _elementwise("Sigmoid"),
    "tanh": _elementwise("Tanh"),
    "softmax": _elementwise("Softmax", axis=-1),
}


# --------------------------------------------------------------------------- the graph

def export_onnx(model: Model, opset: int | None = None) -> onnx.ModelProto:
    """The ONNX graph of ``model`` at ``opset`` (default DEFAULT_OPSET), checked with
    onnx.checker; ExportError when it cannot be exported faithfully."""
    opset = DEFAULT_OPSET if opset is None else opset
    check_opset(opset)
    g = _Graph()
    x = _input_nodes(g, model)
    for record in model.layer_records():
        i, layer = record.index, record.spec
        tag = f"layer{i + 1}"
        convert = CONVERTERS.get(layer.kind)
        activate = ACTIVATIONS.get(layer.activation)
        if convert is None or activate is None:
            raise ExportError(f"cannot export layer {i + 1} '{layer}' of '{model.arch}': no ONNX "
                              f"converter for its {'kind' if convert is None else 'activation'}")
        z = convert(g, x, tag, layer, record.shape, np.asarray(record.kernel, np.float32),
                    np.asarray(record.bias, np.float32))
        x = activate(g, z, tag)
    outputs = _output_nodes(g, model, x)
    graph = helper.make_graph(
        g.nodes, "nncli", [_tensor_info(INPUT_NAME, model.n_inputs)],
        [_tensor_info(name, model.n_outputs) for name in outputs], g.initializers,
        doc_string=f"nncli {model.arch} --loss {model.loss}" + (" --logits" if model.logits
                                                                 else ""))
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="nncli",
                              producer_version=__version__,
                              doc_string=_doc(model, outputs))
    # the oldest IR version that carries this opset, so that older runtimes read the file
    proto.ir_version = helper.find_min_ir_version_for(opsets)
    helper.set_model_props(proto, metadata(model, outputs))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as e:  # a bug of this module, not of the model
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"the ONNX graph of '{model.arch}' fails onnx.checker at opset "
                          f"{opset} ({first})") from None
    return proto


def write_onnx(model: Model, path: str | os.PathLike, opset: int | None = None) -> int:
    """Write ``model``'s ONNX graph to ``path`` atomically (a temporary file in the same
    folder, then rename); the number of bytes written. An unwritable path is an error before
    anything is built."""
    path = Path(path)
    check_writable(path, "the ONNX model")
    data = export_onnx(model, opset).SerializeToString()
    write_atomically(path, lambda f: f.write(data))
    return len(data)


def check_opset(opset: int) -> None:
    """ExportError unless nncli can write ``opset``."""
    if not MIN_OPSET <= opset <= max_opset():
        raise ExportError(f"--opset {opset} is not supported: nncli exports ONNX opsets "
                          f"{MIN_OPSET} to {max_opset()} (default {DEFAULT_OPSET})")


def output_names(model: Model) -> list[str]:
    """Names of the graph's outputs, the first being what ``predict`` prints by default."""
    if not model.loss_spec.classifier:
        return ["values"]
    if model.logits and model.loss_spec.link is not None:
        return ["probabilities", "logits"]
    return ["probabilities"]


def _input_nodes(g: _Graph, model: Model) -> str:
    """From the graph input ``features`` to the first layer's input; the tensor's name.

    The input is the ENCODED layout ``nncli predict`` reads from an NPY/NPZ file: one float per
    feature of ``schema.feature_names()``: a numeric column's number (NaN: missing), a
    categorical column's one-hot features (NAME=CATEGORY: 1.0 in the category's slot, all
    zeros for a category never seen in training, the NAME=<missing> slot for a missing cell
    when the column has one); ``input_layout`` in the metadata lists them.

    Then the model's preprocessing stage, as ``Preprocessing.transform``: a missing number
    (NaN) becomes its feature's fill value (``fill_values()``; a feature without one keeps NaN,
    where predict stops with an error), then ``(x - mean) / std`` (one-hot features have mean 0
    and std 1). Steps that change nothing are left out.
    """
    schema = model.input_schema()
    if schema.n_features != model.n_inputs:
        raise ExportError(f"the model's schema makes {schema.n_features} features for "
                          f"{model.n_inputs} inputs; cannot export it")
    stage = model.preprocessing
    x = INPUT_NAME
    fill = stage.fill_values()
    if not np.isnan(fill).all():
        gaps = g.node("IsNaN", [x], "missing")
        x = g.node("Where", [gaps, g.const("fill_value", fill), x], "filled")
    mean = np.asarray(stage.mean, np.float32)
    std = np.asarray(stage.std, np.float32)
    if mean.any():
        x = g.node("Sub", [x, g.const("feature_mean", mean)], "centred")
    if (std != 1).any():
        x = g.node("Div", [x, g.const("feature_std", std)], "standardised")
    return x


def _output_nodes(g: _Graph, model: Model, z: str) -> list[str]:
    """The graph's outputs from the last layer's output ``z``; their names (output_names)."""
    names = output_names(model)
    if names == ["values"]:
        stage = model.preprocessing  # its unscale_outputs: out * target_std + target_mean
        if stage.scales_targets:
            z = g.node("Mul", [z, g.const("target_std", np.asarray(stage.target_std,
                                                                   np.float32))], "scaled")
            z = g.node("Add", [z, g.const("target_mean", np.asarray(stage.target_mean,
                                                                    np.float32))], "shifted")
        g.node("Identity", [z], output="values")
    elif names == ["probabilities"]:
        g.node("Identity", [z], output="probabilities")
    else:
        g.node("Identity", [z], output="logits")
        ACTIVATIONS[model.loss_spec.link](g, z, "link", "probabilities")
    return names


def _tensor_info(name: str, width: int) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [BATCH, width])


# --------------------------------------------------------------------------- metadata

def metadata(model: Model, outputs: list[str]) -> dict[str, str]:
    """The graph's metadata properties (strings; lists and flags as JSON)."""
    from nncli.predict import output_columns  # the column names predict prints

    layout = model.input_schema().feature_layout()
    return {
        "nncli_version": __version__,
        "arch": model.arch,
        "loss": model.loss,
        "logits": json.dumps(bool(model.logits)),
        "n_inputs": str(model.n_inputs),
        "channels": str(model.channels),
        "input": INPUT_NAME,
        "outputs": json.dumps(outputs),
        "output_columns": json.dumps(output_columns(model)),
        "classes": json.dumps(model.classes),
        "feature_names": json.dumps([f["feature"] for f in layout]),
        "input_layout": json.dumps(layout),
        "target_names": json.dumps(model.target_names),
    }


def _doc(model: Model, outputs: list[str]) -> str:
    first = {"probabilities": "probabilities (what nncli predict prints)",
             "values": "predicted values (what nncli predict prints)"}[outputs[0]]
    extra = ", then 'logits' (the last layer's output)" if len(outputs) > 1 else ""
    return (f"nncli model {model.arch} (--loss {model.loss}{' --logits' if model.logits else ''})"
            f": input '{INPUT_NAME}' float32 [N, {model.n_inputs}] of raw features "
            f"(metadata 'input_layout'); output "
            f"'{outputs[0]}' float32 [N, {model.n_outputs}], {first}{extra}")
