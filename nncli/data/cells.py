"""Cells to numbers: the spelling of a number, whole columns parsed in C a chunk of rows at a
time, and errors that point at the cell that could not be read."""

from __future__ import annotations

import typing
from dataclasses import dataclass

import numpy as np

from nncli.data.table import Table, column_label, shown
from nncli.errors import DataError

# Cells parsed per np.loadtxt call: bounds the temporary arrays of a chunk to a few megabytes.
CELLS_PER_CHUNK = 1_000_000


def parse_float(text: str) -> float | None:
    """``text`` as a number, or None; accepts what np.loadtxt accepts and no more.

    Python's float() also takes "1_000" and non-ASCII digits, which loadtxt refuses; refusing
    them here keeps header detection and error scans in line with the fast parser.
    """
    text = text.strip()
    if not text or not text.isascii() or "_" in text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def numeric_columns(table: Table, cols: list[int], role: str, finite: bool = True,
                     strict: bool = True) -> np.ndarray | None:
    """Columns ``cols`` of every row as a C-contiguous float32 (n, len(cols)) array.

    np.loadtxt does the parsing in C, a chunk of rows at a time so that temporaries (the
    chunk's row strings among them) stay small. Integer parsing is tried first because it is
    about three times faster than float parsing and pixel-like data is all integers; the first
    chunk that is not integers switches to floats.
    NaN and infinity are errors, or kept when ``finite`` is false.
    A cell that is not a number is a located error, or (``strict`` false) makes the result
    None: the caller then looks at the columns one at a time (missing values, categories).
    """
    n = table.n_rows
    out = np.empty((n, len(cols)), dtype=np.float32)
    step = max(1, CELLS_PER_CHUNK // max(1, len(cols)))
    as_int = True
    for lo in range(0, n, step):
        chunk = table.rows(lo, lo + step)
        block = None
        if as_int:
            try:
                block = _loadtxt(chunk, table.delimiter, cols, np.int32)
            except ValueError:
                as_int = False
        if block is None:
            try:
                block = _loadtxt(chunk, table.delimiter, cols, np.float32)
            except ValueError as exc:
                if not strict:
                    return None
                _raise_bad_cell(table, cols, lo, role, exc)
            if finite:
                _check_finite_block(table, block, cols, lo, role)
        out[lo:lo + len(chunk)] = block
    return out


def _loadtxt(lines: list[str], delimiter: str, cols: list[int], dtype: type) -> np.ndarray:
    """np.loadtxt as used here: no comment character (a '#' in a label is data).

    ``max_rows`` lets loadtxt allocate the result at its final size. Without it loadtxt grows
    a buffer while it parses, and since NumPy 2.5 that holds about twice the result at its
    peak (the whole load then took 5.7 times the file instead of 4.6).
    """
    return np.loadtxt(lines, delimiter=delimiter, dtype=dtype, usecols=cols, ndmin=2,
                      comments=None, encoding=None, max_rows=len(lines))


def _row_chunks(table: Table, lo: int = 0) -> typing.Iterator[tuple[int, list[str]]]:
    """(index of the first, row strings) for the rows from ``lo`` on, a chunk of about
    CELLS_PER_CHUNK cells at a time: the one place that decides how many rows are text at once
    when a whole column or a search runs over the table."""
    step = max(1, CELLS_PER_CHUNK // max(1, table.n_columns))
    for start in range(lo, table.n_rows, step):
        yield start, table.rows(start, start + step)


def _iter_rows(table: Table, lo: int = 0) -> typing.Iterator[tuple[int, str]]:
    """(index, row string) for the rows from ``lo`` on, made a bounded chunk at a time."""
    for start, rows in _row_chunks(table, lo):
        yield from enumerate(rows, start)


def _raise_bad_cell(table: Table, cols: list[int], lo: int, role: str,
                    exc: ValueError) -> typing.NoReturn:
    """Find the first cell from row ``lo`` on that loadtxt refused, and report it precisely."""
    for i, line in _iter_rows(table, lo):
        cells = line.split(table.delimiter)
        for j in cols:
            if parse_float(cells[j]) is None:
                raise DataError(f"cannot read {shown(cells[j])} as a number "
                                f"({role} column {column_label(table, j)})",
                                table.source, table.line(i), j + 1) from exc
    # Only reached if Python and NumPy disagree about some spelling of a number.
    raise DataError(f"cannot read the {role} columns as numbers: {exc}", table.source) from exc


def _check_finite_block(table: Table, block: np.ndarray, cols: list[int], lo: int,
                        role: str) -> None:
    """Refuse NaN and infinity (loadtxt reads "nan", "inf" and overflows into them)."""
    if np.isfinite(block).all():
        return
    r, c = (int(v) for v in np.argwhere(~np.isfinite(block))[0])
    i, j = lo + r, cols[c]
    raise DataError(non_finite_message(block[r, c], table.row(i).split(table.delimiter)[j],
                                        f"{role} column {column_label(table, j)}"),
                    table.source, table.line(i), j + 1)


def non_finite_message(value: float, text: str | None, where: str) -> str:
    """'NaN in ...' / 'infinite value in ...', or the float32 overflow it really is."""
    if np.isnan(value):
        return f"NaN in {where}"
    parsed = parse_float(text) if text is not None else None
    if parsed is not None and np.isfinite(parsed):
        return f"value {text.strip()} is too large for float32 in {where}"
    return f"infinite value in {where}"


def column_text(table: Table, j: int) -> np.ndarray:
    """Column ``j`` of every row as a NumPy array of stripped strings.

    Rows are materialised a chunk at a time and only the cell is kept, in a fixed-width
    array: a column of class labels costs a few bytes per row, not a Python string each.
    """
    d = table.delimiter
    if j == table.n_columns - 1:
        def cell(line: str) -> str:
            return line.rpartition(d)[2].strip()
    elif j == 0:
        def cell(line: str) -> str:
            return line.partition(d)[0].strip()
    else:
        def cell(line: str) -> str:
            return line.split(d, j + 1)[j].strip()
    parts = [np.array([cell(line) for line in rows], dtype=str)
             for _, rows in _row_chunks(table)]
    return np.concatenate(parts) if parts else np.array([], dtype=str)


# Cells that mean "no value" in a feature column (compared stripped and lower-cased): what R,
# pandas and spreadsheets write for a gap.
MISSING_CELLS = frozenset({"", "na", "nan", "n/a", "?", "null"})


@dataclass
class ColumnCells:
    """One column's cells, classified once per distinct spelling.

    ``labels`` are the distinct stripped cells in sorted order and ``inverse`` each row's index
    into them; per label, ``missing`` says whether it is one of MISSING_CELLS and ``values``
    holds it as a number (NaN for text and missing cells; "inf" is a number, infinite).
    """

    labels: np.ndarray
    inverse: np.ndarray
    missing: np.ndarray
    values: np.ndarray

    @property
    def text(self) -> np.ndarray:
        """Per label: neither missing nor a number."""
        return ~self.missing & np.isnan(self.values)

    def row_missing(self) -> np.ndarray:
        """Per row: is the cell missing?"""
        return self.missing[self.inverse]

    def row_values(self) -> np.ndarray:
        """Per row: the cell as a float64 number, NaN where missing (or text)."""
        return self.values[self.inverse]


def column_cells(table: Table, j: int) -> ColumnCells:
    """Classify every cell of column ``j`` (see ColumnCells)."""
    labels, inverse = np.unique(column_text(table, j), return_inverse=True)
    missing = np.array([str(label).lower() in MISSING_CELLS for label in labels], dtype=bool)
    values = np.full(len(labels), np.nan)
    for k, label in enumerate(labels):
        if not missing[k]:
            value = parse_float(str(label))
            if value is not None:
                values[k] = value
    return ColumnCells(labels, inverse.reshape(-1), missing, values)
