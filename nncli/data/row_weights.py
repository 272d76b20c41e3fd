"""``--sample-weight``'s row weights (Keras's ``sample_weight``) as a data file holds them: a
CSV column, named by header name or 0-based index as ``--target`` is, or a 1-D array of an NPZ;
read as float64, one per row, each a finite number 0 or more (and within float32, the kernels'
type).

The column is not a feature: ``columns.choose_columns`` leaves it out and the schema records
why, so ``eval`` and ``predict`` read files with or without it. Its cells are read after
``--missing drop`` has left rows out (a row with a missing weight among them, as one with a
missing target), so the weights line up with X and Y.
"""

from __future__ import annotations

import numpy as np

from nncli.data.cells import column_cells, non_finite_message
from nncli.data.numpy_files import finite_float32
from nncli.data.table import Table, column_label, preview, shown
from nncli.data.targets import resolve_targets
from nncli.errors import DataError

FLAG = "--sample-weight"
# What the NPZ arrays that are not weights hold (the error for --sample-weight X or y).
_NPZ_ROLES = {"X": "the features", "y": "the targets"}


def weight_column(table: Table, name: str, target_cols: list[int]) -> int:
    """The 0-based CSV column --sample-weight ``name`` names; a one-line DataError for an
    unknown column or a target."""
    j = resolve_targets(table, [name], what="column", option=FLAG)[0]
    if j in target_cols:
        raise DataError(f"{FLAG} {name}: that is a target column; a column cannot be both a "
                        f"target and the row weights", table.source)
    return j


def refuse_input_column(table: Table, name: str, j: int, input_cols: list[int]) -> None:
    """Reading with a model's columns (--resume, --init-from): the weights cannot be one of
    its input columns."""
    if j in input_cols:
        raise DataError(f"{FLAG} {name}: column {column_label(table, j)} is an input column of "
                        f"the model this run starts from", table.source)


def csv_sample_weights(table: Table, j: int) -> np.ndarray:
    """Column ``j`` of every row as float64 weights; the first cell that is missing, not a
    number, infinite, beyond float32 or negative is an error at its line and column."""
    cells = column_cells(table, j)
    values = cells.row_values()
    with np.errstate(over="ignore", invalid="ignore"):
        as_float32 = values.astype(np.float32)
        bad = ~(np.isfinite(as_float32) & (values >= 0))
    if bad.any():
        i = int(np.argmax(bad))
        text = str(cells.labels[cells.inverse[i]])
        where = f"{FLAG} column {column_label(table, j)}"
        if cells.row_missing()[i]:
            message = f"missing weight ({shown(text)} in {where}); --missing drop leaves such " \
                      f"rows out"
        elif np.isnan(values[i]):
            message = f"cannot read {shown(text)} as a number ({where})"
        elif not np.isfinite(as_float32[i]):
            message = non_finite_message(as_float32[i], text, where)
        else:
            message = f"negative weight {text} in {where}; a weight is a number, 0 or more"
        raise DataError(message, table.source, table.line(i), j + 1)
    return values


def npz_sample_weights(table: Table, name: str) -> np.ndarray:
    """Array ``name`` of an NPZ (read into ``table.members``) as float64 weights, one per row
    of its X: 1-D, numbers, finite, 0 or more, else a one-line DataError."""
    path = table.source
    if name in _NPZ_ROLES:
        raise DataError(f"{FLAG} {name}: array '{name}' holds {_NPZ_ROLES[name]}; name the NPZ's "
                        f"array of row weights", path)
    if name not in table.members:
        raise DataError(f"{FLAG} {name}: the NPZ file has no array '{name}' (found: "
                        f"{preview(table.array_names)})", path)
    stored = table.members[name]
    what = f"array '{name}' ({FLAG})"
    if stored.ndim != 1:
        raise DataError(f"{what} must be 1-D (a weight per row), found shape {stored.shape}",
                        path)
    if len(stored) != table.n_rows:
        raise DataError(f"arrays 'X' and '{name}' have different numbers of rows "
                        f"({table.n_rows} and {len(stored)})", path)
    finite_float32(stored, what, path)   # refuses text, NaN, infinity, beyond float32
    values = stored.astype(np.float64)
    if (values < 0).any():
        i = int(np.argmax(values < 0))
        raise DataError(f"negative weight {stored[i]} in {what} at row {i} (0-based); a weight "
                        f"is a number, 0 or more", path)
    return values
