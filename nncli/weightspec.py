"""The syntax of ``--class-weight`` (balanced, none or LABEL=W,...), checked where the command
line is read: pure Python, so that reading options loads no numpy (nncli.weights computes the
weights from the data)."""

from __future__ import annotations

import math

from nncli.errors import UsageError

NONE = "none"
BALANCED = "balanced"


def check_class_weight(text: str) -> str | None:
    """--class-weight as typed, its syntax checked: None for 'none' (no weights), else the
    text ('balanced' or LABEL=W,...). The labels are checked against the data later."""
    text = text.strip()
    if text.lower() == NONE:
        return None
    if text.lower() == BALANCED:
        return BALANCED
    pairs(text)
    return text


def pairs(text: str) -> list[tuple[str, float]]:
    """LABEL=W,... as (label, weight) pairs; UsageError for a malformed one."""
    out = []
    for part in text.split(","):
        label, eq, value = part.rpartition("=")
        label = label.strip()
        try:
            weight = float(value)
        except ValueError:
            weight = math.nan
        if not eq or not label or not 0 <= weight < math.inf:
            raise UsageError(f"--class-weight {text}: expected balanced, none or LABEL=W,... with "
                             f"each W a finite number, 0 or more; found {part.strip()!r}")
        out.append((label, weight))
    return out
