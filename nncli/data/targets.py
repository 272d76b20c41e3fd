"""Target columns: which columns they are, and their values as numbers or class indices."""

from __future__ import annotations

import re

import numpy as np

from nncli.data.cells import MISSING_CELLS, column_text, non_finite_message, parse_float
from nncli.data.table import Table, column_label, preview, shown
from nncli.errors import DataError

_INT_RE = re.compile(r"[+-]?\d+")


def resolve_targets(table: Table, targets: list[str] | None,
                    what: str = "target column", option: str = "") -> list[int]:
    """0-based column indices for the target names/indices given; default: the last column.
    ``what`` names the option in messages (the same rule picks the columns of --categorical,
    --ignore, ...); ``option`` (the flag), when given, starts each message with the flag and
    the value as typed."""
    if not targets:
        return [table.n_columns - 1]
    found: list[int] = []
    for target in targets:
        j = _resolve_target(table, str(target).strip(), what,
                            f"{option} {str(target).strip()}: " if option else "")
        if j in found:
            raise DataError(f"{what} {column_label(table, j)} is given twice",
                            table.source)
        found.append(j)
    return found


def _resolve_target(table: Table, target: str, what: str, prefix: str) -> int:
    """One target: a header name first (a column may be called "3"), then an index."""
    n = table.n_columns
    if table.header is not None and target in table.header:
        if table.header.count(target) > 1:
            raise DataError(f"{prefix}column name '{target}' occurs more than once in the "
                            f"header; give the {what} as a 0-based column index", table.source)
        return table.header.index(target)
    columns = f"; the columns are: {preview(table.header)}" if table.header is not None else ""
    if _INT_RE.fullmatch(target):
        j = int(target)
        if not -n <= j < n:
            raise DataError(f"{prefix}{what} index {j} is out of range: the file has {n} "
                            f"columns (0..{n - 1}, or -1..-{n} from the end){columns}",
                            table.source)
        return j % n
    if table.header is None:
        raise DataError(f"{prefix}no column named '{target}': the file has no header; give the "
                        f"{what} as a 0-based column index (0..{n - 1})", table.source)
    raise DataError(f"{prefix}no column named '{target}'{columns}", table.source)


def csv_targets(table: Table, target_cols: list[int],
                 classes: list[str] | None) -> tuple[np.ndarray, list[str] | None]:
    """Y (n, t) float32 and the class names when the single target column holds text."""
    Y = np.empty((table.n_rows, len(target_cols)), dtype=np.float32)
    texts = [column_text(table, j) for j in target_cols]
    for j, column in zip(target_cols, texts):
        missing = np.flatnonzero(_missing_cells(column))
        if missing.size:
            i = int(missing[0])
            raise DataError(f"missing target ({shown(str(column[i]))} in target column "
                            f"{column_label(table, j)}); --missing drop leaves such rows out",
                            table.source, table.line(i), j + 1)
    if len(target_cols) == 1:
        codes, found_classes = _class_codes(table, target_cols[0], texts[0], classes)
        if codes is not None:
            Y[:, 0] = codes
            return Y, found_classes
    for t, (j, column) in enumerate(zip(target_cols, texts)):
        Y[:, t] = _numeric_targets(table, j, column)
    return Y, None


def _label_values(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each label as a float64 (by parse_float) and whether it is a number at all.

    Called on the distinct labels of a column, so each spelling is parsed once.
    """
    values = np.zeros(len(labels), dtype=np.float64)
    numeric = np.zeros(len(labels), dtype=bool)
    for k, label in enumerate(labels):
        value = parse_float(str(label))
        if value is not None:
            values[k], numeric[k] = value, True
    return values, numeric


def _class_codes(table: Table, j: int, column: np.ndarray,
                 classes: list[str] | None) -> tuple[np.ndarray | None, list[str] | None]:
    """Class indices for a text label column, or (None, None) when the labels are numbers.

    With a model's ``classes``, labels that are all class names are mapped even when they look
    like numbers: a model trained on labels "1", "2", "x" must read "2" as class 1, not 2.0.
    The work is done on the column's distinct labels (sorted, as the classes are) and mapped
    back to the rows by index.
    """
    labels, inverse = np.unique(column, return_inverse=True)
    if classes is not None:
        index = {name.strip(): k for k, name in enumerate(classes)}
        known = np.array([str(label) in index for label in labels], dtype=bool)
        if known.all():
            codes = np.array([index[str(label)] for label in labels], dtype=np.float32)
            return codes[inverse], list(classes)
        if _label_values(labels)[1].all():
            return None, None  # numeric codes: the caller checks their range
        i = int(np.flatnonzero(~known[inverse])[0])
        raise DataError(f"unknown class label '{column[i]}'; the model knows: "
                        f"{preview(list(classes), 20)}",
                        table.source, table.line(i), j + 1)
    if _label_values(labels)[1].all():
        return None, None
    return inverse.astype(np.float32), [str(label) for label in labels]


def _numeric_targets(table: Table, j: int, column: np.ndarray) -> np.ndarray:
    """A target column of numbers as float32, refusing text (when several targets) and NaN/inf."""
    labels, inverse = np.unique(column, return_inverse=True)
    label_values, numeric = _label_values(labels)
    if not numeric.all():
        i = int(np.flatnonzero(~numeric[inverse])[0])
        raise DataError(f"cannot read {shown(str(column[i]))} as a number (target column "
                        f"{column_label(table, j)}); text class labels need a single "
                        "target column", table.source, table.line(i), j + 1)
    with np.errstate(over="ignore"):  # beyond float32 becomes inf, reported just below
        values = label_values.astype(np.float32)[inverse]
    if not np.isfinite(values).all():
        i = int(np.argmin(np.isfinite(values)))
        raise DataError(non_finite_message(values[i], str(column[i]),
                                            f"target column {column_label(table, j)}"),
                        table.source, table.line(i), j + 1)
    return values


def missing_target_rows(table: Table, target_cols: list[int]) -> np.ndarray:
    """Per row: is any of its cells in ``target_cols`` missing (see cells.MISSING_CELLS)? The
    targets', and the --sample-weight column's: --missing drop leaves such rows out."""
    rows = np.zeros(table.n_rows, dtype=bool)
    for j in target_cols:
        rows |= _missing_cells(column_text(table, j))
    return rows


def _missing_cells(column: np.ndarray) -> np.ndarray:
    labels, inverse = np.unique(column, return_inverse=True)
    missing = np.array([str(label).lower() in MISSING_CELLS for label in labels], dtype=bool)
    return missing[inverse.reshape(-1)] if len(labels) else np.zeros(len(column), dtype=bool)
