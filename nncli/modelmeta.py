"""The model file's metadata (its ``nncli`` JSON document), read against a declared schema.

``FIELDS`` is the schema: one row per key, what its value must be (said in words for the
message, and as a check) and whether every file has it. The rows of ``STRUCTURE`` describe the
network and are checked first; the others are checked against that network (a ``Shape``):
``classes`` against the output units, ``feature_names`` against the inputs, ``layers`` against
the architecture, ``target_columns`` against ``target_names``, ``optimizer`` against the
optimizer table (nncli.optim). A violation is one ModelFileError naming the file and the key:

    m.safetensors: damaged model metadata: 'classes' must be null or a list of at most 10
    names, found 1.5

Keys the table does not know are kept as they are (``Model.info``). Whatever uses a loaded model
later (``info``, predict's class names, eval, export, plot, ``--resume``, ``--init-from``) may
rely on these types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from nncli import __version__
from nncli.errors import ModelFileError
from nncli.jsondoc import shown
from nncli.losses import LOSSES
from nncli.optim import OPTIMIZERS
from nncli.options import MISSING_CHOICES

# The model file's format version this nncli writes (and the newest it reads).
FORMAT_VERSION = 1
# A whole number beyond int64 cannot be a size, a seed or a column, and breaks NumPy later.
_INT_LIMIT = 1 << 63


@dataclass(frozen=True)
class Shape:
    """The network the metadata describes, as its structural keys (``STRUCTURE``) give it."""

    n_inputs: int
    n_outputs: int
    n_layers: int
    loss: str

    @property
    def class_room(self) -> int | None:
        """The most class names the output layer holds; None for a regression (its classes,
        text labels read as codes, are not tied to the units)."""
        targets = LOSSES[self.loss].targets
        if targets == "values":
            return None
        return 2 if targets == "binary" and self.n_outputs == 1 else self.n_outputs


@dataclass(frozen=True)
class Field:
    """One key of the metadata: ``what`` it must hold (words; ``{name}`` fields are filled by
    ``_words`` from the network and the other keys) and ``ok(value, shape, meta)``, the check
    (``shape`` is None for the structural keys)."""

    what: str
    ok: Callable[[Any, Shape | None, dict], bool]
    required: bool = False


# ------------------------------------------------------------------ value checks

def _whole(lo: int) -> Callable[..., bool]:
    return lambda v, *_: isinstance(v, int) and not isinstance(v, bool) and lo <= v < _INT_LIMIT


def _is(*types: type) -> Callable[..., bool]:
    def ok(v, *_):
        return isinstance(v, types) and (bool in types or not isinstance(v, bool))
    return ok


def _optional(check: Callable[..., bool]) -> Callable[..., bool]:
    return lambda v, *rest: v is None or check(v, *rest)


def _number(v) -> bool:
    """A JSON number Python can use as a float (NaN and infinity included)."""
    if isinstance(v, bool):
        return False
    return isinstance(v, float) or (isinstance(v, int) and abs(v) < _INT_LIMIT)


def _names(v, count: int | None = None, at_most: bool = False) -> bool:
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        return False
    return count is None or (len(v) <= count if at_most else len(v) == count)


def _history(v, *_) -> bool:
    return isinstance(v, list) and all(
        isinstance(r, dict) and _whole(0)(r.get("epoch")) and all(map(_number, r.values()))
        for r in v)


def _optimizer(v, *_) -> bool:
    if not isinstance(v, dict) or not isinstance(v.get("name"), str) \
            or v["name"] not in OPTIMIZERS:
        return False
    row = OPTIMIZERS[v["name"]]
    return set(v) == {"name", *row.hyper} and all(_number(v[k]) for k in row.hyper)


def _target_columns(v, shape, meta) -> bool:
    if not isinstance(v, list) or not all(map(_whole(0), v)):
        return False
    names = meta.get("target_names")
    return not v or not isinstance(names, list) or len(v) == len(names)


def _optimizer_words() -> str:
    rows = "; ".join(f"{o.name}: {', '.join(o.hyper)}" for o in OPTIMIZERS.values())
    return f"an object of an optimizer's name and its numbers ({rows})"


# The structural keys: what the network is. Checked before anything else is.
STRUCTURE: dict[str, Field] = {
    "format_version": Field("a whole number", _whole(0), required=True),
    "arch": Field("an architecture string", _is(str), required=True),
    "n_inputs": Field("a whole number of at least 1", _whole(1), required=True),
    "channels": Field("a whole number of at least 1", _whole(1)),
    "loss": Field("the name of a loss", _is(str), required=True),
    "logits": Field("true or false", _is(bool), required=True),
}

# Every other key nncli writes, checked against the network (see the module docstring).
FIELDS: dict[str, Field] = {
    **STRUCTURE,
    "nncli_version": Field("a version string", _is(str)),
    "layers": Field("a list of {n_layers} objects, one per layer",
                    lambda v, s, _: isinstance(v, list) and len(v) == s.n_layers
                    and all(isinstance(x, dict) for x in v)),
    "classes": Field("null or a list of {class_room}names",
                     _optional(lambda v, s, _: _names(v, s.class_room, at_most=True))),
    "feature_names": Field("null or a list of {n_inputs} names",
                           _optional(lambda v, s, _: _names(v, s.n_inputs))),
    "target_names": Field("null or a list of names", _optional(lambda v, *_: _names(v))),
    "target_columns": Field("null or a list of {target_count}column numbers (0-based, one per "
                            "target name)", _optional(_target_columns)),
    "schema": Field("null or an object", _optional(_is(dict))),
    "history": Field("a list of objects of numbers, each with its 'epoch'", _history),
    "optimizer": Field(_optimizer_words(), _optimizer),
    "seed": Field("a whole number", _optional(_whole(-_INT_LIMIT))),
    "normalize": Field("true or false", _is(bool)),
    "normalize_target": Field("true or false", _is(bool)),
    "missing": Field(f"null or one of {', '.join(MISSING_CHOICES)}",
                     lambda v, *_: v is None or v in MISSING_CHOICES),
    "options": Field("an object (the training options)", _is(dict)),
    "early_stopping": Field("null or an object", _optional(_is(dict))),
    "class_weight": Field("an object of each class's loss weight (--class-weight)",
                          lambda v, *_: isinstance(v, dict) and all(map(_number, v.values()))),
    "sweep": Field("an object (the sweep that chose the model)", _is(dict)),
}


def check_structure(meta: dict, name: str) -> None:
    """The format version (a newer one than this nncli reads is refused as such), then the
    structural keys' types (``STRUCTURE``); ModelFileError for the first wrong one."""
    for key, field in STRUCTURE.items():
        _check(meta, key, field, None, name)
        if key == "format_version" and meta[key] > FORMAT_VERSION:
            raise ModelFileError(f"{name}: model format version {meta[key]} is newer than this "
                                 f"nncli ({__version__}) reads (up to {FORMAT_VERSION}); "
                                 f"upgrade nncli")


def check_fields(meta: dict, shape: Shape, name: str) -> None:
    """Every other key of ``FIELDS`` against the network ``shape``; ModelFileError for the
    first wrong one."""
    for key, field in FIELDS.items():
        if key not in STRUCTURE:
            _check(meta, key, field, shape, name)


def _check(meta: dict, key: str, field: Field, shape: Shape | None, name: str) -> None:
    if key not in meta:
        if field.required:
            raise damaged(name, f"'{key}' is missing")
        return
    value = meta[key]
    if not field.ok(value, shape, meta):
        what = field.what.format(**_words(shape, meta))
        raise damaged(name, f"'{key}' must be {what}, found {shown(value)}")


def _words(shape: Shape | None, meta: dict) -> dict[str, str]:
    """The numbers a field's words name, from the network and the other keys."""
    if shape is None:
        return {}
    room = shape.class_room
    names = meta.get("target_names")
    return {"n_inputs": str(shape.n_inputs), "n_layers": str(shape.n_layers),
            "class_room": "" if room is None else f"at most {room} ",
            "target_count": f"{len(names)} " if isinstance(names, list) else ""}


def damaged(name: str, what: str) -> ModelFileError:
    """The error of a model file whose metadata breaks the schema."""
    return ModelFileError(f"{name}: damaged model metadata: {what}")
