"""Architecture strings: ``25relu-15relu-10linear`` <-> a list of layer specs.

Layers are joined by ``-``. Four kinds of layer:

- ``<units><activation>``, a dense layer (Keras ``Dense``): ``25relu``.
- ``<filters>conv<kernel>[s<stride>]<activation>``, a 1-D convolution with padding "valid",
  weights shared across positions (Keras ``Conv1D``): ``8conv20s10relu`` is 8 filters of width
  20 moved 10 inputs at a time. Without ``s<stride>`` the stride is 1.
- ``<filters>local<kernel>[s<stride>]<activation>``, the same windows with weights of their own
  at every position (tf.keras ``LocallyConnected1D``): ``1local20s10relu``.
- ``dropout<rate>``, inverted dropout in training (Keras ``Dropout(rate)``), 0 <= rate < 1, the
  rate written as Python writes the number (``dropout0.3``, ``dropout0.25``); between two layers,
  never first or last. It has no parameters and passes its input's shape on unchanged.

The input width is not part of the string: it comes from the data. ``format_arch(parse_arch(s))
== s`` for every valid ``s`` (``4conv5relu`` and ``4conv5s1relu`` are the same layer, and each
formats back as written).

Shapes (``layer_shapes``, ``param_shapes``): a layer sees a signal of ``length`` positions with
``channels`` values each, stored flat, channels last (element ``l * channels + c``). The data's
features are read as ``n_inputs / channels`` positions of ``channels`` values. A conv or local
layer outputs ``positions`` = floor((length - kernel) / stride) + 1 positions of ``filters``
values, stored the same way (positions-major, channels last). A dense layer sees whatever comes
in flattened (``length * channels`` values) and outputs ``units`` values, read by a next conv or
local layer as a signal of length ``units`` with 1 channel.

Pure Python: importing this module is cheap and pulls in no numba.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from nncli.errors import ArchError

# The activation table. The integer is the code the kernels switch on (kernels.act_forward);
# the kernel tests check every entry against a NumPy reference, so a new activation is one
# line here plus its branch in the kernels.
ACTIVATIONS: dict[str, int] = {
    "linear": 0,
    "relu": 1,
    "sigmoid": 2,
    "tanh": 3,
    "softmax": 4,
}

# Activations that only make sense on the output layer.
OUTPUT_ONLY = frozenset({"softmax"})

GRAMMAR = ("<units><activation>, <filters>conv<kernel>[s<stride>]<activation>, "
           "<filters>local<kernel>[s<stride>]<activation> or dropout<rate>")
DROPOUT = "dropout"

_TOKEN = re.compile(r"(\d*)([A-Za-z_]*)(.*)")
# what follows 'conv' or 'local': kernel width, optional stride, activation, anything left over
_WINDOW = re.compile(r"(\d*)(?:s(\d+))?([A-Za-z_]*)(.*)")


@dataclass(frozen=True)
class LayerSpec:
    """One layer: ``units`` outputs (filters, for conv and local) followed by ``activation``.

    ``kind`` is ``"dense"``, ``"conv"``, ``"local"`` or ``"dropout"``; ``kernel`` is the window
    width of a conv or local layer (0 for dense); ``stride`` is the stride as written, None when
    the string left it out (``effective_stride`` is then 1), so that formatting gives back the
    same string. ``rate`` is a dropout layer's (units 0 and activation linear: it has neither).
    """

    units: int
    activation: str
    kind: str = "dense"
    kernel: int = 0
    stride: int | None = None
    rate: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in LAYER_KINDS:
            raise ValueError(f"layer kind must be one of {', '.join(LAYER_KINDS)}, "
                             f"received {self.kind!r}")
        if self.kind == "dense" and (self.kernel != 0 or self.stride is not None):
            raise ValueError("a dense layer has no kernel width or stride")
        if self.kind == DROPOUT and not 0.0 <= self.rate < 1.0:
            raise ValueError(f"a dropout rate must be in [0, 1), received {self.rate}")
        if LAYER_KINDS[self.kind].windowed and (self.kernel < 1 or (self.stride is not None
                                                         and self.stride < 1)):
            raise ValueError(f"a {self.kind} layer needs kernel >= 1 and stride >= 1 (or None), "
                             f"received kernel={self.kernel}, stride={self.stride}")

    @property
    def filters(self) -> int:
        """Output channels of a conv or local layer (the same number as ``units``)."""
        return self.units

    @property
    def effective_stride(self) -> int:
        """The stride the layer moves its window by: 1 when the string did not say."""
        return self.stride or 1

    def __str__(self) -> str:
        if self.kind == DROPOUT:
            return f"{DROPOUT}{self.rate!r}"
        if self.kind == "dense":
            return f"{self.units}{self.activation}"
        stride = "" if self.stride is None else f"s{self.stride}"
        return f"{self.units}{self.kind}{self.kernel}{stride}{self.activation}"


def parse_arch(text: str) -> list[LayerSpec]:
    """Parse an architecture string into layer specs, or raise ArchError saying what is wrong."""
    if not text or not text.strip():
        raise ArchError("empty architecture; expected layers like '25relu-15relu-10linear' "
                        "or '4conv5s2relu-8conv3s2relu-10linear'")
    tokens = text.split("-")
    layers = [_parse_token(tok, i + 1, text) for i, tok in enumerate(tokens)]
    for i in (0, len(layers) - 1):
        if layers[i].kind == DROPOUT:
            where = "first" if i == 0 else "last"
            raise ArchError(f"'{layers[i]}' in '{text}' (layer {i + 1}): dropout cannot be the "
                            f"{where} layer; put it between two layers, e.g. "
                            f"'64relu-{layers[i]}-10linear'")
    for i, layer in enumerate(layers[:-1]):
        if layer.activation in OUTPUT_ONLY:
            raise ArchError(
                f"'{layer}' in '{text}' (layer {i + 1}): {layer.activation} is only allowed on "
                f"the last layer; use relu, tanh or sigmoid for hidden layers")
    last = layers[-1]
    if last.activation in OUTPUT_ONLY and last.kind != "dense":
        raise ArchError(
            f"'{last}' in '{text}' (layer {len(layers)}): {last.activation} is only allowed on a "
            f"dense last layer; end with a dense layer, e.g. '10{last.activation}', or use "
            f"'{last.units}{last.kind}{last.kernel}"
            f"{'' if last.stride is None else f's{last.stride}'}linear' with --logits")
    return layers


def format_arch(layers: list[LayerSpec]) -> str:
    """The architecture string of ``layers``; the inverse of parse_arch."""
    return "-".join(str(layer) for layer in layers)


def _parse_token(token: str, position: int, text: str) -> LayerSpec:
    where = f"in '{text}' (layer {position})"
    if not token:
        raise ArchError(f"empty layer {where}; expected {GRAMMAR}, e.g. '10relu'")
    digits, name, rest = _TOKEN.fullmatch(token).groups()
    if name == DROPOUT and not digits:
        return _parse_dropout(token, rest, where)
    kind = next((k for k in WINDOWED if name.startswith(k)), "dense")
    if kind != "dense":
        return _parse_window(token, kind, digits, token[len(digits) + len(kind):], where)
    if rest[:1].isdigit() and name and name not in ACTIVATIONS:
        close = difflib.get_close_matches(name, WINDOWED, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ArchError(f"unknown layer kind '{name}' in layer '{token}' {where}; "
                        f"expected {GRAMMAR}{hint}")
    if not digits:
        raise ArchError(f"layer '{token}' {where} has no unit count; expected "
                        f"{GRAMMAR}, e.g. '10{name or 'relu'}'")
    if rest:
        raise ArchError(f"unexpected '{rest}' in layer '{token}' {where}; "
                        f"expected {GRAMMAR}, e.g. '10relu' or '8conv5s2relu'")
    units = _positive(digits, "units", token, where)
    return LayerSpec(units, _activation(name, token, where))


def _parse_window(token: str, kind: str, digits: str, tail: str, where: str) -> LayerSpec:
    """A conv or local token; ``tail`` is what follows the word conv/local."""
    kernel, stride, name, rest = _WINDOW.fullmatch(tail).groups()
    example = f"'8{kind}5s2relu'"
    if not digits:
        raise ArchError(f"layer '{token}' {where} has no filter count; expected "
                        f"<filters>{kind}<kernel>[s<stride>]<activation>, e.g. {example}")
    if not kernel:
        raise ArchError(f"layer '{token}' {where} has no kernel width after '{kind}'; expected "
                        f"<filters>{kind}<kernel>[s<stride>]<activation>, e.g. {example}")
    if name.startswith("s") and name not in ACTIVATIONS and name[1:] in ACTIVATIONS:
        raise ArchError(f"layer '{token}' {where} has no stride after 's'; expected "
                        f"<filters>{kind}<kernel>[s<stride>]<activation>, e.g. {example}")
    if rest:
        raise ArchError(f"unexpected '{rest}' in layer '{token}' {where}; expected "
                        f"<filters>{kind}<kernel>[s<stride>]<activation>, e.g. {example}")
    filters = _positive(digits, "filters", token, where)
    width = _positive(kernel, "kernel width", token, where)
    step = None if stride is None else _positive(stride, "stride", token, where)
    return LayerSpec(filters, _activation(name, token, where), kind, width, step)


def _parse_dropout(token: str, rate: str, where: str) -> LayerSpec:
    """A ``dropout<rate>`` token; ``rate`` is what follows the word. The rate must be written as
    Python writes the number, so that formatting gives back the same string."""
    try:
        value = float(rate)
    except ValueError:
        raise ArchError(f"layer '{token}' {where} has no dropout rate; expected dropout<rate> "
                        f"with 0 <= rate < 1, e.g. 'dropout0.3'") from None
    if not 0.0 <= value < 1.0:
        raise ArchError(f"layer '{token}' {where}: the dropout rate must be in [0, 1), "
                        f"received {rate}")
    if repr(value) != rate:
        raise ArchError(f"layer '{token}' {where}: write the dropout rate as "
                        f"'{DROPOUT}{value!r}'")
    return LayerSpec(0, "linear", DROPOUT, rate=value)


def _positive(digits: str, what: str, token: str, where: str) -> int:
    value = int(digits)
    if value < 1 or digits != str(value):
        raise ArchError(f"layer '{token}' {where}: {what} must be a positive integer "
                        f"without leading zeros, received '{digits}'")
    return value


def _activation(name: str, token: str, where: str) -> str:
    if not name:
        raise ArchError(f"layer '{token}' {where} has no activation; expected one of "
                        f"{_expected()}")
    if name not in ACTIVATIONS:
        close = difflib.get_close_matches(name, ACTIVATIONS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ArchError(f"unknown activation '{name}' {where}; expected one of "
                        f"{_expected()}{hint}")
    return name


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _expected() -> str:
    return ", ".join(ACTIVATIONS)


# --------------------------------------------------------------------------- shapes

class LayerShape(NamedTuple):
    """What one layer sees and gives: a signal of ``length`` x ``channels`` in, ``positions`` x
    ``filters`` out, both flat and channels last. A dense layer reads its input flattened and
    gives ``units`` x 1."""

    length: int
    channels: int
    positions: int
    filters: int

    @property
    def n_in(self) -> int:
        """Width of the flat input row."""
        return self.length * self.channels

    @property
    def n_out(self) -> int:
        """Width of the flat output row."""
        return self.positions * self.filters


Shape = tuple[int, ...]


@dataclass(frozen=True)
class LayerKind:
    """A row of the layer-kind table (``LAYER_KINDS``): everything that differs between dense,
    conv and local layers, so that no caller asks for a kind by name.

    ``code`` is the kind column of the kernels' layer table (nncli.kernels.DENSE, CONV, LOCAL).
    ``windowed``: the layer reads windows of ``kernel`` positions moved by ``stride``, and the
    model file and ``nncli info`` record both. ``outputs(layer, length, channels)`` gives the
    (positions, filters) of the layer's output for an input of ``length`` positions x
    ``channels``. ``describe(layer)``: what the model file records of it besides kind and window
    (units and activation; a dropout layer's rate). ``param_shapes(layer,
    shape)`` gives its (kernel shape, bias shape) as Keras stores them. ``fan_shape`` folds the
    kernel's shape into the one Keras's initializers count fans on (``fans``).
    """

    code: int
    windowed: bool
    outputs: Callable[[LayerSpec, int], tuple[int, int]]
    param_shapes: Callable[[LayerSpec, LayerShape], tuple[Shape, Shape]]
    fan_shape: Callable[[Shape], Shape]
    describe: Callable[[LayerSpec], dict] = lambda layer: {"units": layer.units,
                                                           "activation": layer.activation}

    def fans(self, kernel_shape: Shape) -> tuple[int, int]:
        """(fan_in, fan_out) of a kernel of this kind, as Keras's initializers compute them: the
        last axis is the output channels, the one before it the input channels, and any leading
        axes a receptive field that multiplies both."""
        shape = self.fan_shape(tuple(kernel_shape))
        receptive = 1
        for d in shape[:-2]:
            receptive *= int(d)
        return shape[-2] * receptive, shape[-1] * receptive

    def entry(self, layer: LayerSpec) -> dict:
        """What the model file records of ``layer`` (and ``nncli info`` shows first): kind,
        units, activation, and for a windowed layer its kernel width and stride (a dropout
        layer: its rate)."""
        entry = {"kind": layer.kind, **self.describe(layer)}
        if self.windowed:
            entry.update(kernel=layer.kernel, stride=layer.effective_stride)
        return entry

    def output_shape(self, shape: LayerShape) -> list[int]:
        """The output as ``nncli info`` shows it: [units], or [positions, filters] (a dropout
        layer after a conv or local layer too)."""
        return ([shape.positions, shape.filters] if self.windowed or shape.filters > 1
                else [shape.positions])


def _window_positions(layer: LayerSpec, length: int, channels: int) -> tuple[int, int]:
    return (length - layer.kernel) // layer.effective_stride + 1, layer.units


# The layer kinds, keyed by the word of the architecture string; ``code`` is what the kernels'
# layer table switches on (dense is 0). Parameter shapes as ``param_shapes`` lists them; a local
# kernel's fans count as tf.keras's LocallyConnected1D kernel (positions, kernel * in_channels,
# filters). A dropout layer has no parameters (shapes of size 0) and keeps its input's shape.
LAYER_KINDS: dict[str, LayerKind] = {
    "dense": LayerKind(
        0, False, outputs=lambda layer, length, channels: (layer.units, 1),
        param_shapes=lambda layer, s: ((s.n_in, layer.units), (layer.units,)),
        fan_shape=lambda w: w),
    "conv": LayerKind(
        1, True, outputs=_window_positions,
        param_shapes=lambda layer, s: ((layer.kernel, s.channels, s.filters), (s.filters,)),
        fan_shape=lambda w: w),
    "local": LayerKind(
        2, True, outputs=_window_positions,
        param_shapes=lambda layer, s: ((s.positions, layer.kernel, s.channels, s.filters),
                                       (s.positions, s.filters)),
        fan_shape=lambda w: (w[0], w[1] * w[2], w[3])),
    DROPOUT: LayerKind(
        3, False, outputs=lambda layer, length, channels: (length, channels),
        param_shapes=lambda layer, s: ((0,), (0,)), fan_shape=lambda w: w,
        describe=lambda layer: {"rate": layer.rate}),
}
WINDOWED = tuple(name for name, kind in LAYER_KINDS.items() if kind.windowed)


def layer_shapes(layers: list[LayerSpec], n_inputs: int, channels: int = 1) -> list[LayerShape]:
    """The input and output shape of every layer fed rows of ``n_inputs`` features read as
    ``n_inputs / channels`` positions of ``channels`` values; ArchError names the layer that
    does not fit and says why."""
    if channels < 1:
        raise ArchError(f"channels must be a positive integer, received {channels}")
    if n_inputs < 1:
        raise ArchError(f"a network needs at least one input feature, received {n_inputs}")
    if n_inputs % channels:
        raise ArchError(f"{n_inputs} input features cannot be read as a signal of {channels} "
                        f"channels: {n_inputs} is not a multiple of {channels}")
    arch = format_arch(layers)
    shapes = []
    length, chans = n_inputs // channels, channels
    source = "the data"
    for i, layer in enumerate(layers):
        if layer.kernel > length:  # a window wider than the input (a dense layer's kernel is 0)
            raise ArchError(
                f"layer {i + 1} '{layer}' in '{arch}' does not fit: its window of "
                f"{layer.kernel} is wider than its input of length {length} ({source}: "
                f"{length} positions x {_count(chans, 'channel')}); use a kernel width of "
                f"at most {length}")
        shape = LayerShape(length, chans, *LAYER_KINDS[layer.kind].outputs(layer, length,
                                                                             chans))
        shapes.append(shape)
        length, chans = shape.positions, shape.filters
        source = f"the output of layer {i + 1} '{layer}'"
    return shapes


def param_shapes(layers: list[LayerSpec], n_inputs: int,
                 channels: int = 1) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(kernel shape, bias shape) of every layer, as Keras stores them:
    dense (n_in, units) and (units,); conv (kernel, in_channels, filters) and (filters,);
    local (positions, kernel, in_channels, filters) and (positions, filters)."""
    return [LAYER_KINDS[layer.kind].param_shapes(layer, s)
            for layer, s in zip(layers, layer_shapes(layers, n_inputs, channels))]


def param_names(index: int) -> tuple[str, str]:
    """The names of layer ``index``'s kernel and bias (counted from 0) in the model file and
    wherever else a tensor is named (gradcheck): ``layers.{index}.kernel``, ``.bias``."""
    return f"layers.{index}.kernel", f"layers.{index}.bias"


def param_count(layers: list[LayerSpec], n_inputs: int, channels: int = 1) -> int:
    """Number of trainable parameters (kernels and biases) of every kind of layer."""
    total = 0
    for kernel, bias in param_shapes(layers, n_inputs, channels):
        k = b = 1
        for d in kernel:
            k *= d
        for d in bias:
            b *= d
        total += k + b
    return total
