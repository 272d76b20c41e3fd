"""JSON written by someone else (a model file's header and metadata, a sweep's ``sweep.json``),
parsed with its nesting bounded first.

Python's json module recurses once per level of ``[`` or ``{``: a document of 200000 nested
brackets ends in a RecursionError, and even a parsed document a few hundred levels deep would
break the code that walks it later (``json.dumps`` in ``nncli info``, ``copy.deepcopy``). So the
text's bracket depth is counted before parsing, outside strings, in blocks with NumPy (a header
may be 64 MB), and a document deeper than ``MAX_DEPTH`` is refused as it stands.
"""

from __future__ import annotations

import json
import re

# nncli's own documents are at most 5 levels deep (a sweep's leaderboard in a model's metadata).
MAX_DEPTH = 64
# Bytes scanned per NumPy step: bounds the temporaries for a large header.
_BLOCK = 1 << 20
# A backslash and the byte it escapes: removed first, so every '"' left delimits a string.
_ESCAPED = re.compile(rb"\\.", re.S)
_QUOTE, _OPENERS, _CLOSERS = ord('"'), b"[{", b"]}"


def nesting_depth(text: str | bytes, stop_above: int = MAX_DEPTH) -> int:
    """The deepest nesting of brackets in JSON ``text``, brackets inside strings not counted;
    the scan stops early once it passes ``stop_above`` (the result is then above it)."""
    import numpy as np   # here: the command line reads sweep.json, and starts without numpy

    openers, closers = (np.frombuffer(b, np.uint8) for b in (_OPENERS, _CLOSERS))
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    raw = _ESCAPED.sub(b"", raw)
    depth, inside, deepest = 0, 0, 0
    for lo in range(0, len(raw), _BLOCK):
        a = np.frombuffer(raw, np.uint8, min(_BLOCK, len(raw) - lo), lo)
        quotes = np.cumsum(a == _QUOTE, dtype=np.int64) + inside
        outside = (quotes & 1) == 0
        step = (np.isin(a, openers) & outside).astype(np.int64) - \
            (np.isin(a, closers) & outside)
        levels = np.cumsum(step) + depth
        if len(levels):
            deepest = max(deepest, int(levels.max()))
            depth, inside = int(levels[-1]), int(quotes[-1]) & 1
        if deepest > stop_above:
            break
    return deepest


def load_json(text: str | bytes, max_depth: int = MAX_DEPTH):
    """``json.loads(text)`` for a document nested at most ``max_depth`` levels.

    ValueError (json.JSONDecodeError is one) for text that is not JSON or nests deeper, with
    a message that says which; UnicodeDecodeError for bytes that are not UTF-8.
    """
    if not isinstance(text, (str, bytes, bytearray)):
        raise ValueError(f"expected JSON text, found {type(text).__name__}")
    depth = nesting_depth(text, max_depth)
    if depth > max_depth:
        raise ValueError(f"JSON nested more than {max_depth} levels deep")
    return json.loads(text)


def shown(value, limit: int = 60) -> str:
    """A parsed value as a message quotes it: its JSON, cut to ``limit`` characters."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit - 3] + "..."
