"""The column schema: what each input column of a table is, and how it becomes features.

A model is trained on a table's feature columns and must read new tables the same way, so what
was learnt about each column at training is data, stored in the model file and applied by
``eval``, ``predict`` (and export); nothing is re-derived from the data at predict time.

One :class:`Column` per input column, in the order of the features:

* ``numeric``: one feature. A missing cell (see ``cells.MISSING_CELLS``) is replaced by
  ``fill``, the column's mean over the training rows (set by ``train.prepare``).
* ``categorical``: one-hot, one feature per category in sorted order (numerically when every
  category is a number), then one for "missing" when the training rows had missing cells. A
  category never seen in training encodes as all zeros and is counted, never an error.

A text column whose values are all different (an identifier, such as R's row names) is left
out at training and listed in ``Schema.ignored``, as are the columns ``--ignore`` names or
``--features`` leaves out, and the row weights of ``--sample-weight`` (each with why).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from nncli.errors import DataError
from nncli.jsondoc import shown

KINDS = ("numeric", "categorical")
# How many distinct values a text column must have, all different, to count as an identifier:
# below it, "every value differs" says little (a 5-row table of names).
MIN_IDENTIFIER_ROWS = 20
# Unseen values listed per column in the warning, before "...".
_SHOWN_VALUES = 5
MISSING_NAME = "<missing>"
# Why a column of the training file is not an input column (``LeftOut.why``).
IDENTIFIER = "identifier"
IGNORED = "--ignore"
NOT_SELECTED = "not in --features"
SAMPLE_WEIGHT = "--sample-weight"
LEFT_OUT_WHY = (IDENTIFIER, IGNORED, NOT_SELECTED, SAMPLE_WEIGHT)
# Cells that are not numbers shown per numeric column in a note, with their lines.
SHOWN_CELLS = 3


@dataclass
class Column:
    """One input column of the model (see the module docstring)."""

    name: str
    kind: str = "numeric"
    source: int | None = None            # 0-based column in the training file, when a CSV
    categories: list[str] = field(default_factory=list)
    missing_category: bool = False       # categorical: one more feature for missing cells
    fill: float | None = None            # numeric: what a missing cell becomes

    @property
    def width(self) -> int:
        """How many features the column becomes."""
        if self.kind == "numeric":
            return 1
        return len(self.categories) + int(self.missing_category)

    def feature_names(self) -> list[str]:
        """The names of its features: the column's, or NAME=CATEGORY per category."""
        if self.kind == "numeric":
            return [self.name]
        names = [f"{self.name}={c}" for c in self.categories]
        return names + ([f"{self.name}={MISSING_NAME}"] if self.missing_category else [])

    def as_dict(self) -> dict:
        d = asdict(self)
        if self.kind == "numeric":
            del d["categories"], d["missing_category"]
        else:
            del d["fill"]
        return d


@dataclass
class LeftOut:
    """A column of the training file that is not an input column, and why (IDENTIFIER,
    IGNORED, NOT_SELECTED, SAMPLE_WEIGHT)."""

    name: str
    source: int | None = None
    why: str = IDENTIFIER


@dataclass
class Schema:
    """The input columns of a model, and the columns of its training file it left out."""

    columns: list[Column]
    ignored: list[LeftOut] = field(default_factory=list)
    source_columns: int | None = None    # columns of the training file (CSV)

    @classmethod
    def numeric(cls, names: list[str]) -> "Schema":
        """All columns numeric, without fill values (NPZ data, models from before schemas)."""
        return cls([Column(name) for name in names])

    @property
    def n_features(self) -> int:
        return sum(c.width for c in self.columns)

    @property
    def names(self) -> list[str]:
        """The input columns' names."""
        return [c.name for c in self.columns]

    def feature_names(self) -> list[str]:
        return [name for c in self.columns for name in c.feature_names()]

    def feature_layout(self) -> list[dict]:
        """One record per feature, in order: its name (as ``feature_names()``), its column and
        its category (None for a numeric feature; MISSING_NAME for a categorical column's
        missing slot)."""
        out = []
        for c in self.columns:
            categories = [None] if c.kind == "numeric" else \
                c.categories + ([MISSING_NAME] if c.missing_category else [])
            out += [{"feature": name, "column": c.name, "category": category}
                    for name, category in zip(c.feature_names(), categories)]
        return out

    def numeric_features(self) -> np.ndarray:
        """Per feature: does it come from a numeric column (and so gets standardised)?"""
        return np.array([c.kind == "numeric" for c in self.columns for _ in range(c.width)],
                        dtype=bool)

    def offsets(self) -> list[int]:
        """The first feature of each column."""
        out, at = [], 0
        for c in self.columns:
            out.append(at)
            at += c.width
        return out

    @property
    def all_numeric(self) -> bool:
        return all(c.kind == "numeric" for c in self.columns)

    def to_json(self) -> dict:
        return {"columns": [c.as_dict() for c in self.columns],
                "ignored": [asdict(c) for c in self.ignored],
                "source_columns": self.source_columns}

    @classmethod
    def from_json(cls, doc: dict) -> "Schema":
        """The schema of a model file's metadata, each key checked against ``STORED_KEYS``;
        ValueError saying what is wrong where, if damaged."""
        if not isinstance(doc, dict) or not isinstance(doc.get("columns"), list):
            raise ValueError(f"must be an object with a list of 'columns', found "
                             f"{shown(doc)}")
        total = _stored(doc, "source_columns", "")
        columns = [Column(**_stored_column(d, i, total))
                   for i, d in enumerate(doc["columns"], start=1)]
        ignored = doc.get("ignored", [])
        if not isinstance(ignored, list):
            raise ValueError(f"'ignored' must be a list, found {shown(ignored)}")
        left_out = [LeftOut(**_stored_column(d, i, total, ("name", "source", "why")))
                    for i, d in enumerate(ignored, start=1)]
        return cls(columns, left_out, total)

    def fill_missing(self, X: np.ndarray, source: str,
                     allow_empty: bool = False) -> dict[str, int]:
        """Replace NaN in numeric features by the columns' fill values, in place; return how
        many were found per column. A column without a fill value cannot take missing cells,
        unless ``allow_empty``: then they stay NaN (training fills them once it knows the
        training rows' means)."""
        counts: dict[str, int] = {}
        if not X.size or np.isfinite(X.sum()):
            # the usual array: one pass says there is no NaN (nor infinity); a float32 sum is a
            # quarter of a float64 one's time, and one that overflows only takes the long way
            return counts
        for c, at in zip(self.columns, self.offsets()):
            if c.kind != "numeric":
                continue
            gaps = np.isnan(X[:, at])
            n = int(gaps.sum())
            if not n:
                continue
            if c.fill is None and allow_empty:
                counts[c.name] = n
                continue
            if c.fill is None:
                raise DataError(f"{n} missing value(s) in column '{c.name}', but the model has "
                                f"no value to fill them with (it was written by an older "
                                f"nncli); fill them, or train the model again", source)
            X[gaps, at] = c.fill
            counts[c.name] = n
        return counts


@dataclass
class NotNumbers:
    """The cells of a numeric column that are not numbers (read as missing): how many, and the
    first few as (cell as shown, line)."""

    count: int = 0
    first: list[tuple[str, int]] = field(default_factory=list)

    def add(self, other: "NotNumbers") -> None:
        """Count another block's cells too (the first few stay the file's first)."""
        self.count += other.count
        self.first = (self.first + other.first)[:SHOWN_CELLS]

    def describe(self) -> str:
        """"1 cell is not a number ('abc' at line 10)", or several counted, the first shown."""
        cells = ", ".join(f"{cell} at line {line}" for cell, line in self.first)
        more = ", ..." if self.count > len(self.first) else ""
        if self.count == 1:
            return f"1 cell is not a number ({cells})"
        return f"{self.count} cells are not numbers ({cells}{more})"


@dataclass
class Encoded:
    """What encoding a table's feature columns found besides the numbers, for the messages."""

    filled: dict[str, int] = field(default_factory=dict)           # column -> missing cells
    missing_category: dict[str, int] = field(default_factory=dict)  # column -> missing cells
    unseen: dict[str, dict[str, int]] = field(default_factory=dict)  # column -> value -> count
    ignored: list[str] = field(default_factory=list)                # identifier columns left out
    # numeric column -> its cells that are not numbers (missing values, not counted in filled)
    not_numbers: dict[str, NotNumbers] = field(default_factory=dict)
    fate: str = ""            # what became of those cells ("filled with the training mean")
    fitted: bool = False      # training data (a note per column) or a model's (one warning)
    # categorical column learnt at training -> (categories, rows) when it has very many
    many_categories: dict[str, tuple[int, int]] = field(default_factory=dict)

    def add(self, other: "Encoded") -> None:
        """Add the counts of another block of rows."""
        for name, n in other.filled.items():
            self.filled[name] = self.filled.get(name, 0) + n
        for name, n in other.missing_category.items():
            self.missing_category[name] = self.missing_category.get(name, 0) + n
        for name, values in other.unseen.items():
            mine = self.unseen.setdefault(name, {})
            for value, n in values.items():
                mine[value] = mine.get(value, 0) + n
        for name, cells in other.not_numbers.items():
            self.not_numbers.setdefault(name, NotNumbers()).add(cells)
        self.fate = self.fate or other.fate

    def messages(self, source: str) -> list[str]:
        """One line for each kind of thing found (identifiers, cells that are not numbers,
        filled cells, unseen values), and a note per column of very many categories."""
        out = []
        if self.ignored:
            out.append(f"note: {source}: left out {_listed(self.ignored)}: text with a "
                       f"different value in every row (an identifier, not a feature)")
        out += self._not_number_lines(source)
        for name, (n, rows) in self.many_categories.items():
            out.append(f"note: {source}: column '{name}' is categorical with {n} categories in "
                       f"{rows} rows ({n} one-hot features); if it is an identifier or free "
                       f"text, leave it out with --ignore {name}; --categorical {name} keeps it "
                       f"without this note")
        if self.filled or self.missing_category:
            parts = [f"{name} {n}" for name, n in self.filled.items()]
            parts += [f"{name} {n} (as a category)" for name, n in self.missing_category.items()]
            total = sum(self.filled.values()) + sum(self.missing_category.values())
            out.append(f"note: {source}: {total} missing value{'s' if total > 1 else ''} "
                       f"({', '.join(parts)}); numeric ones filled with the training mean")
        if self.unseen:
            parts = []
            for name, values in self.unseen.items():
                shown = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))[:_SHOWN_VALUES]
                more = ", ..." if len(values) > _SHOWN_VALUES else ""
                parts.append(f"{name}: " + ", ".join(f"'{v}' {n}x" for v, n in shown) + more)
            total = sum(n for values in self.unseen.values() for n in values.values())
            out.append(f"warning: {source}: {total} value{'s' if total > 1 else ''} never seen "
                       f"in training, encoded as all zeros ({'; '.join(parts)})")
        return out

    def _not_number_lines(self, source: str) -> list[str]:
        """Training: a note per numeric column with cells that are not numbers; a model's
        data: one warning line for them all."""
        if not self.not_numbers:
            return []
        parts = [f"column '{name}': {cells.describe()}" for name, cells in self.not_numbers.items()]
        tail = f"; treated as missing ({self.fate})"
        if self.fitted:
            return [f"note: {source}: {part}{tail}" for part in parts]
        return [f"warning: {source}: {'; '.join(parts)}{tail}"]

    def as_dict(self) -> dict:
        return {"filled": self.filled, "missing_category": self.missing_category,
                "unseen": self.unseen, "ignored": self.ignored,
                "not_numbers": {name: c.count for name, c in self.not_numbers.items()},
                "many_categories": {name: n for name, (n, _) in self.many_categories.items()}}


def category_order(labels: list[str]) -> list[str]:
    """Categories in sorted order: by value when every one is a number ("2" before "10"),
    else as text."""
    from nncli.data.cells import parse_float

    values = [parse_float(label) for label in labels]
    if all(v is not None for v in values):
        return [label for _, label in sorted(zip(values, labels))]
    return sorted(labels)


def one_hot(out: np.ndarray, at: int, codes: np.ndarray) -> None:
    """Set out[row, at + code] = 1 for every row whose code is not -1 (unseen: all zeros)."""
    rows = np.flatnonzero(codes >= 0)
    out[rows, at + codes[rows]] = 1.0


def _listed(names: list[str]) -> str:
    quoted = ", ".join(f"'{n}'" for n in names)
    return f"column{'s' if len(names) > 1 else ''} {quoted}"


def _index(value) -> bool:
    """A column number (0-based) NumPy can index with."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 63


def _finite(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and abs(value) < 1 << 63 and math.isfinite(value))


# What each key of a stored column (and ``source_columns``) must hold, in words and as a check,
# with its default: the declared schema of ``Schema.from_json``. ``name`` has no default.
STORED_KEYS: dict[str, tuple[str, object, object]] = {
    "name": ("a name", lambda v: isinstance(v, str), None),
    "kind": (f"one of {', '.join(KINDS)}", lambda v: v in KINDS, "numeric"),
    "source": ("null or a column number", lambda v: v is None or _index(v), None),
    "categories": ("a list of names",
                   lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v), []),
    "missing_category": ("true or false", lambda v: isinstance(v, bool), False),
    "fill": ("null or a finite number", lambda v: v is None or _finite(v), None),
    "source_columns": ("null or a number of columns", lambda v: v is None or _index(v), None),
    "why": (f"one of {', '.join(LEFT_OUT_WHY)}", lambda v: v in LEFT_OUT_WHY, IDENTIFIER),
}


def _stored(d: dict, key: str, where: str):
    """``d[key]`` (or its default) checked against STORED_KEYS; ValueError naming ``where``."""
    words, ok, default = STORED_KEYS[key]
    if key not in d and key == "name":
        raise ValueError(f"{where} has no 'name'")
    value = d.get(key, default)
    if not ok(value):
        place = f"{where}: " if where else ""
        raise ValueError(f"{place}'{key}' must be {words}, found {shown(value)}")
    return value


def _stored_column(d, i: int, total: int | None,
                   keys: tuple[str, ...] = ("name", "kind", "source", "categories",
                                            "missing_category", "fill")) -> dict:
    """Column ``i`` (1-based) of a stored schema as Column's arguments, checked; its source
    must lie within the training file's ``total`` columns when that is known."""
    if not isinstance(d, dict):
        raise ValueError(f"column {i} must be an object, found {shown(d)}")
    out = {key: _stored(d, key, f"column {i}") for key in keys}
    if total is not None and out["source"] is not None and out["source"] >= total:
        raise ValueError(f"column {i}: 'source' {out['source']} is beyond the training "
                         f"file's {total} columns")
    if "fill" in out and out["fill"] is not None:
        out["fill"] = float(out["fill"])
    return out
