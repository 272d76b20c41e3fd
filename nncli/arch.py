"""Architecture strings: ``25relu-15relu-10linear`` <-> a list of layer specs.

Layers are joined by ``-``; each is ``<units><activation>``. The input width is not part of
the string: it comes from the data. ``format_arch(parse_arch(s)) == s`` for every valid ``s``.
Pure Python: importing this module is cheap and pulls in no numba.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

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

_TOKEN = re.compile(r"(\d*)([A-Za-z_]*)(.*)")


@dataclass(frozen=True)
class LayerSpec:
    """One dense layer: ``units`` outputs followed by ``activation``."""

    units: int
    activation: str
    kind: str = "dense"

    def __str__(self) -> str:
        return f"{self.units}{self.activation}"


def parse_arch(text: str) -> list[LayerSpec]:
    """Parse an architecture string into layer specs, or raise ArchError saying what is wrong."""
    if not text or not text.strip():
        raise ArchError("empty architecture; expected layers like '25relu-15relu-10linear'")
    tokens = text.split("-")
    layers = [_parse_token(tok, i + 1, text) for i, tok in enumerate(tokens)]
    for i, layer in enumerate(layers[:-1]):
        if layer.activation in OUTPUT_ONLY:
            raise ArchError(
                f"'{layer}' in '{text}' (layer {i + 1}): {layer.activation} is only allowed on "
                f"the last layer; use relu, tanh or sigmoid for hidden layers")
    return layers


def format_arch(layers: list[LayerSpec]) -> str:
    """The architecture string of ``layers``; the inverse of parse_arch."""
    return "-".join(str(layer) for layer in layers)


def _parse_token(token: str, position: int, text: str) -> LayerSpec:
    where = f"in '{text}' (layer {position})"
    if not token:
        raise ArchError(f"empty layer {where}; expected <units><activation>, e.g. '10relu'")
    digits, name, rest = _TOKEN.fullmatch(token).groups()
    if not digits:
        raise ArchError(f"layer '{token}' {where} has no unit count; expected "
                        f"<units><activation>, e.g. '10{name or 'relu'}'")
    if rest:
        raise ArchError(f"unexpected '{rest}' in layer '{token}' {where}; "
                        f"expected <units><activation>, e.g. '10relu'")
    if not name:
        raise ArchError(f"layer '{token}' {where} has no activation; expected one of "
                        f"{_expected()}")
    if name not in ACTIVATIONS:
        close = difflib.get_close_matches(name, ACTIVATIONS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ArchError(f"unknown activation '{name}' {where}; expected one of "
                        f"{_expected()}{hint}")
    units = int(digits)
    if units < 1 or digits != str(units):
        raise ArchError(f"layer '{token}' {where}: units must be a positive integer "
                        f"without leading zeros, received '{digits}'")
    return LayerSpec(units, name)


def _expected() -> str:
    return ", ".join(ACTIVATIONS)
