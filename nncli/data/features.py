"""Feature columns to a float32 matrix: learning the schema at training (``fit_table``),
applying a stored one (``encode_table``), and the missing-value policy (see
``nncli.data.missing``) applied to them, in one place.

The all-numeric table takes the fast path (np.loadtxt over every column at once); any other
cell sends the table column by column through ``cells.column_cells``.

A column's kind at training: numeric when every cell is a number or missing, or when at least
NUMERIC_SHARE of its non-missing cells are numbers and they hold more than one distinct number
(its other cells are typos: missing values, named in a note); categorical otherwise. A model's
numeric column reads a cell that is not a number as missing too, counted in one warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nncli.data.cells import (MISSING_CELLS, ColumnCells, column_cells, non_finite_message,
                              numeric_columns, parse_float)
from nncli.data.columns import ColumnChoice
from nncli.data.missing import MissingPolicy
from nncli.data.schema import (IDENTIFIER, MIN_IDENTIFIER_ROWS, MISSING_NAME, SHOWN_CELLS,
                               Column, Encoded, LeftOut, NotNumbers, Schema, category_order,
                               one_hot)
from nncli.data.table import Table, column_label, shown
from nncli.errors import DataError

# A column holding some text is numeric when at least this share of its non-missing cells are
# numbers: one typo in a column of numbers must not turn it into hundreds of categories, while
# a column of codes with a few numbers among its words stays categorical.
NUMERIC_SHARE = 0.9
# A categorical column learnt with more categories than this, and than half its rows, gets a
# note: it is more likely an identifier, free text or a column of mistyped numbers.
MANY_CATEGORIES = 50

@dataclass
class Features:
    """A table's feature columns as numbers, before the policy and the one-hot step."""

    numbers: np.ndarray                 # (n, columns) float32; NaN: missing; unused for categorical
    cells: dict[int, ColumnCells]       # position in ``cols`` -> cells of a categorical column
    cols: list[int]                     # the table's columns, in feature order
    # position -> a numeric column's cells that are not numbers (NaN in ``numbers``), and why
    # the column is numeric all the same (for the error under --missing error)
    not_numbers: dict[int, tuple[NotNumbers, str]] = field(default_factory=dict)

    def keep(self, rows: np.ndarray) -> None:
        """Keep only the rows where the boolean mask is true."""
        self.numbers = np.ascontiguousarray(self.numbers[rows])
        for cells in self.cells.values():
            cells.inverse = cells.inverse[rows]


def fit_table(table: Table, choice: ColumnChoice, policy: MissingPolicy,
              encoded: Encoded) -> tuple[np.ndarray, Schema, list[int]]:
    """Training: learn each feature column's kind and categories and encode the table.

    ``choice`` names the feature columns (in order), those the options leave out, and the
    kinds forced by --categorical and --numeric. Returns X (float32; numeric missing cells NaN
    under ``mean``), the schema (without fill values: ``train.prepare`` sets them from the
    training rows), and the line numbers of rows dropped by ``drop``. ``encoded`` receives
    the counts for the messages.
    """
    cols, names = choice.features, table.column_names
    feats = _read_columns(table, cols, force=choice.kinds, schema=None)
    for k, j in enumerate(cols):
        _refuse_empty_column(table, feats, k, j)
    dropped = _apply_policy(table, feats, policy)
    columns, positions = [], []
    ignored = [LeftOut(names[j], j, why) for j, why in choice.left_out]
    for k, j in enumerate(cols):
        cells = feats.cells.get(k)
        if cells is None:
            columns.append(Column(names[j], "numeric", j))
            positions.append(k)
            continue
        forced = choice.kinds.get(j) == "categorical"
        filled = ~cells.row_missing()
        present = np.unique(cells.inverse[filled])
        if (not forced and cells.text.any() and len(present) == int(filled.sum())
                and len(present) >= MIN_IDENTIFIER_ROWS):
            ignored.append(LeftOut(names[j], j, IDENTIFIER))
            continue
        if not forced and len(present) > max(MANY_CATEGORIES, table.n_rows / 2):
            encoded.many_categories[names[j]] = (len(present), table.n_rows)
        labels = [str(cells.labels[i]) for i in present]
        has_missing = bool(cells.row_missing().any())
        columns.append(Column(names[j], "categorical", j, category_order(labels), has_missing))
        positions.append(k)
    ignored.sort(key=lambda c: c.source)
    schema = Schema(columns, ignored, table.n_columns)
    encoded.ignored = [c.name for c in ignored if c.why == IDENTIFIER]
    encoded.fitted = True
    _count_not_numbers(feats, [names[j] for j in cols], policy, encoded)
    return _assemble(feats, schema, positions, encoded), schema, dropped


def encode_table(table: Table, cols: list[int], schema: Schema, policy: MissingPolicy,
                 encoded: Encoded) -> tuple[np.ndarray, list[int]]:
    """Encode ``cols`` (the file's columns of ``schema.columns``, in order) as the schema says.

    Missing numeric cells get the column's fill value (NaN when the schema has none yet);
    unseen categories encode as zeros. Returns X and the dropped rows' line numbers.
    """
    feats = _read_columns(table, cols, force={}, schema=schema)
    dropped = _apply_policy(table, feats, policy)
    _count_not_numbers(feats, schema.names, policy, encoded)
    return _assemble(feats, schema, list(range(len(cols))), encoded), dropped


def fit_array(X: np.ndarray, source: str, policy: MissingPolicy,
              encoded: Encoded) -> tuple[np.ndarray, np.ndarray]:
    """An NPZ's features (NaN: missing): the policy applied; returns X and the rows kept."""
    gaps = _Gaps(X)
    for k in np.flatnonzero(gaps.column_nans == len(X) if len(X) else []):
        raise DataError(f"column {int(k)} of array 'X' is missing (NaN) in every row", source)
    return _array_policy(X, gaps, source, policy, encoded)


def encode_array(X: np.ndarray, schema: Schema, source: str, policy: MissingPolicy,
                 encoded: Encoded, row_offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An NPZ's or NPY's features for a model (NaN: missing, as the policy says; counted with
    the schema's names); ``row_offset`` counts rows from the start of a larger array."""
    gaps = _Gaps(X)   # the names only where there are gaps to count (a block at a time)
    names = schema.feature_names() if gaps.column_nans.any() else None
    return _array_policy(X, gaps, source, policy, encoded, names, row_offset)


# ------------------------------------------------------------------------------ internals

def _read_columns(table: Table, cols: list[int], force: dict[int, str],
                  schema: Schema | None) -> Features:
    """The columns as numbers (fast path) or classified cells. A column is categorical when
    the schema says so, when forced (``force``: table column -> kind), or (at training) when
    it holds text and fails the numeric rule (see the module docstring)."""
    kinds = ({k: c.kind for k, c in enumerate(schema.columns)} if schema is not None else
             {k: force[j] for k, j in enumerate(cols) if j in force})
    categorical = {k for k, kind in kinds.items() if kind == "categorical"}
    numeric = [k for k in range(len(cols)) if k not in categorical]
    fast = numeric_columns(table, [cols[k] for k in numeric], "feature", finite=False,
                           strict=False) if numeric else None
    if fast is not None and len(numeric) == len(cols):
        return Features(fast, {}, list(cols))  # the usual table: no copy
    feats = Features(np.full((table.n_rows, len(cols)), np.nan, dtype=np.float32), {},
                     list(cols))
    if fast is not None:
        feats.numbers[:, numeric] = fast
        del fast
        todo = sorted(categorical)
    else:
        todo = list(range(len(cols)))
    for k in todo:
        found = column_cells(table, cols[k])
        if k not in categorical and found.text.any():
            why = ("numeric in the model" if schema is not None
                   else _numeric_reason(found, kinds.get(k)))
            if why is None:
                categorical.add(k)
            else:
                feats.not_numbers[k] = (_not_numbers(table, found), why)
        if k in categorical:
            feats.cells[k] = found
        else:
            with np.errstate(over="ignore"):  # beyond float32: infinite, reported later
                feats.numbers[:, k] = found.row_values()
    return feats


def _numeric_reason(cells: ColumnCells, kind: str | None) -> str | None:
    """Why a training column holding text is numeric all the same (for messages), or None
    when it is categorical: --numeric, or the numeric share (see NUMERIC_SHARE)."""
    if kind == "numeric":
        return "numeric by --numeric"
    counts = np.bincount(cells.inverse, minlength=len(cells.labels))
    number = ~cells.missing & ~np.isnan(cells.values) & (counts > 0)
    numbers, present = int(counts[number].sum()), int(counts[~cells.missing].sum())
    if len(np.unique(cells.values[number])) > 1 and numbers >= NUMERIC_SHARE * present:
        return f"numeric: {numbers} of its {present} values are numbers"
    return None


def _not_numbers(table: Table, cells: ColumnCells) -> NotNumbers:
    """The cells of a numeric column that are not numbers: how many, the first few shown."""
    rows = np.flatnonzero(cells.text[cells.inverse])
    first = [(shown(str(cells.labels[cells.inverse[i]])), table.line(int(i)))
             for i in rows[:SHOWN_CELLS]]
    return NotNumbers(len(rows), first)


def _count_not_numbers(feats: Features, names: list[str], policy: MissingPolicy,
                       encoded: Encoded) -> None:
    """Hand the cells that were not numbers to ``encoded``, with what became of them."""
    for k, (cells, _) in feats.not_numbers.items():
        encoded.not_numbers.setdefault(names[k], NotNumbers()).add(cells)
        encoded.fate = policy.fate


def _refuse_empty_column(table: Table, feats: Features, k: int, j: int) -> None:
    cells = feats.cells.get(k)
    empty = cells.row_missing().all() if cells is not None else np.isnan(feats.numbers[:, k]).all()
    if empty and table.n_rows:
        raise DataError(f"feature column {column_label(table, j)} has no value: every one of "
                        f"its {table.n_rows} cells is missing; leave it out with --ignore "
                        f"{table.header[j] if table.header is not None else j}", table.source)


def _apply_policy(table: Table, feats: Features, policy: MissingPolicy) -> list[int]:
    """Refuse or drop rows with missing or infinite features as the policy says; return the
    line numbers of the dropped rows."""
    numeric = [k for k in range(len(feats.cols)) if k not in feats.cells]
    nan_rows, inf_rows = _row_flags(feats.numbers, numeric)
    cat_missing = {k: cells.row_missing() for k, cells in feats.cells.items()}
    missing_rows = nan_rows.copy()
    for rows in cat_missing.values():
        missing_rows |= rows
    if policy.drops_rows:
        bad = missing_rows | inf_rows
        if not bad.any():
            return []
        if bad.all():
            raise DataError(f"every one of the {len(bad)} rows has a missing, NaN or infinite "
                            f"feature; nothing is left to train on", table.source)
        dropped = table.line_numbers[bad].tolist()
        table.keep_rows(~bad)
        feats.keep(~bad)
        return dropped
    if inf_rows.any():
        i = int(np.argmax(inf_rows))
        k = next(k for k in numeric if np.isinf(feats.numbers[i, k]))
        _raise_at(table, feats, i, k, non_finite_message(
            feats.numbers[i, k], _cell(table, i, feats.cols[k]),
            f"feature column {column_label(table, feats.cols[k])}") + policy.hint)
    if policy.refuses_missing and missing_rows.any():
        i = int(np.argmax(missing_rows))
        k = next(k for k in range(len(feats.cols))
                 if (cat_missing[k][i] if k in cat_missing else np.isnan(feats.numbers[i, k])))
        _raise_at(table, feats, i, k, _missing_message(table, feats, i, k) + policy.hint)
    return []


def _missing_message(table: Table, feats: Features, i: int, k: int) -> str:
    """The error for a missing feature cell: a cell that is not a number in a numeric column
    says so, and why the column is numeric."""
    j = feats.cols[k]
    cell, where = _cell(table, i, j), f"feature column {column_label(table, j)}"
    if (k in feats.not_numbers and parse_float(cell) is None
            and cell.strip().lower() not in MISSING_CELLS):
        return f"cannot read {shown(cell)} as a number ({where}, {feats.not_numbers[k][1]})"
    return f"missing value ({shown(cell)}) in {where}"


def _row_flags(numbers: np.ndarray, columns: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per row: has a NaN, has an infinity, among ``columns``; a block of rows at a time, so
    that no mask of the whole matrix is ever made."""
    n = len(numbers)
    nan_rows, inf_rows = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    if not columns:
        return nan_rows, inf_rows
    whole = len(columns) == numbers.shape[1]
    step = max(1, (1 << 20) // max(1, numbers.shape[1]))
    for lo in range(0, n, step):
        block = numbers[lo:lo + step] if whole else numbers[lo:lo + step, columns]
        finite = np.isfinite(block)
        if finite.all():
            continue
        nan_rows[lo:lo + step] = np.isnan(block).any(axis=1)
        inf_rows[lo:lo + step] = np.isinf(block).any(axis=1)
    return nan_rows, inf_rows


def _cell(table: Table, i: int, j: int) -> str:
    return table.row(i).split(table.delimiter)[j]


def _raise_at(table: Table, feats: Features, i: int, k: int, message: str) -> None:
    j = feats.cols[k]
    raise DataError(message, table.source, table.line(i), j + 1)


def _assemble(feats: Features, schema: Schema, positions: list[int],
              encoded: Encoded) -> np.ndarray:
    """The float32 feature matrix of the schema's columns (``positions``: where each one is in
    ``feats``): numbers as they are, a missing one as the column's fill value (NaN when it has
    none yet), categories one-hot."""
    if schema.all_numeric and len(positions) == feats.numbers.shape[1]:
        X = feats.numbers  # the usual table: no copy
    else:
        X = np.zeros((len(feats.numbers), schema.n_features), dtype=np.float32)
        for column, k, at in zip(schema.columns, positions, schema.offsets()):
            if column.kind == "numeric":
                X[:, at] = feats.numbers[:, k]
            else:
                one_hot(X, at, _category_codes(feats.cells[k], column, encoded))
    numeric = [at for c, at in zip(schema.columns, schema.offsets()) if c.kind == "numeric"]
    if _row_flags(X, numeric)[0].any():
        filled = schema.fill_missing(X, "", allow_empty=True)
        for column, k in zip(schema.columns, positions):
            # cells that were not numbers have their own note, not counted again here
            if k in feats.not_numbers and column.name in filled:
                filled[column.name] -= feats.not_numbers[k][0].count
                if not filled[column.name]:
                    del filled[column.name]
        encoded.add(Encoded(filled=filled))
    return X


def _category_codes(cells: ColumnCells, column: Column, encoded: Encoded) -> np.ndarray:
    """Each row's category index (the missing slot after the categories), -1 when unseen."""
    index = {c: i for i, c in enumerate(column.categories)}
    missing_slot = len(column.categories) if column.missing_category else -1
    codes = np.full(len(cells.labels), -1, dtype=np.int64)
    for i, label in enumerate(cells.labels):
        codes[i] = missing_slot if cells.missing[i] else index.get(str(label), -1)
    rows = codes[cells.inverse]
    counts = np.bincount(cells.inverse, minlength=len(cells.labels))
    for i in np.flatnonzero((codes < 0) & (counts > 0)).tolist():
        value = MISSING_NAME if cells.missing[i] else str(cells.labels[i])
        unseen = encoded.unseen.setdefault(column.name, {})
        unseen[value] = unseen.get(value, 0) + int(counts[i])
    if column.missing_category:
        n = int(counts[cells.missing].sum())
        if n:
            encoded.missing_category[column.name] = encoded.missing_category.get(column.name,
                                                                                0) + n
    return rows


class _Gaps:
    """Where an array's NaN and infinities are, found a block of rows at a time (a mask of the
    whole array would cost a quarter of it again, per mask): per row whether it has either,
    per column how many NaN. One sum answers "none at all" for the usual array."""

    def __init__(self, X: np.ndarray) -> None:
        n, d = X.shape
        self.row_nan, self.row_inf = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        self.column_nans = np.zeros(d, dtype=np.int64)
        if not X.size or np.isfinite(X.sum()):   # (see Schema.fill_missing)
            return
        step = max(1, (1 << 20) // max(1, d))
        for lo in range(0, n, step):
            block = X[lo:lo + step]
            nan, inf = np.isnan(block), np.isinf(block)
            self.row_nan[lo:lo + step] = nan.any(axis=1)
            self.row_inf[lo:lo + step] = inf.any(axis=1)
            self.column_nans += nan.sum(axis=0)

    def first(self, X: np.ndarray, rows: np.ndarray, test) -> tuple[int, int]:
        """(row, column) of the first cell passing ``test`` in the first flagged row."""
        r = int(np.argmax(rows))
        return r, int(np.argmax(test(X[r])))


def _array_policy(X: np.ndarray, gaps: _Gaps, source: str, policy: MissingPolicy,
                  encoded: Encoded, names: list[str] | None = None,
                  row_offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    keep = np.ones(len(X), dtype=bool)
    if policy.drops_rows:
        keep = ~(gaps.row_nan | gaps.row_inf)
        if len(X) and not keep.any():
            raise DataError(f"every one of the {len(X)} rows has a NaN or infinite feature; "
                            f"nothing is left to train on", source)
        return (np.ascontiguousarray(X[keep]) if not keep.all() else X), keep
    for rows, test, what in ((gaps.row_inf, np.isinf, "infinite value"),
                             (gaps.row_nan if policy.refuses_missing else None, np.isnan,
                              "NaN (a missing value)")):
        if rows is not None and rows.any():
            r, c = gaps.first(X, rows, test)
            raise DataError(f"{what} in array 'X' at row {r + row_offset}, column {c} "
                            f"(0-based)" + policy.hint, source)
    for k in np.flatnonzero(gaps.column_nans).tolist():
        name = names[k] if names is not None else f"x{k}"
        encoded.filled[name] = encoded.filled.get(name, 0) + int(gaps.column_nans[k])
    return X, keep
