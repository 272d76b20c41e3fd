"""What train, eval and predict load: a :class:`Dataset` of features and targets from any
supported file, and the model's feature columns picked out of a file for predict."""

from __future__ import annotations

import io
import itertools
import sys
import typing
from dataclasses import dataclass, field

import numpy as np

from nncli.data import cells
from nncli.data.cells import numeric_columns
from nncli.data.numpy_files import finite_float32, npy_blocks, read_npy, read_npz
from nncli.data.table import (
    PREVIEW,
    STDIN_NAME,
    Table,
    numbered,
    preview,
    target_numbering,
)
from nncli.data.targets import csv_targets, resolve_targets
from nncli.data.text import (
    HEADER_LOOKAHEAD,
    HeaderTest,
    block_lines,
    csv_rows,
    next_block,
    open_binary,
    packed_rows,
    parse_csv,
    read_bytes,
    read_stdin,
    row_width,
    take_header,
    text_lines,
)
from nncli.errors import DataError


@dataclass
class Dataset:
    """Arrays ready for training, evaluation or prediction, with the names they came with."""

    X: np.ndarray  # (n, d) float32, C-contiguous, all finite
    Y: np.ndarray | None  # (n, t) float32, C-contiguous; None when read for predict
    feature_names: list[str]  # header names, or x0, x1, ... when there is no header
    target_names: list[str]  # header names, or "y" / y0, y1, ... when there is no header
    target_columns: list[int]  # 0-based columns of the targets in the file ([] for NPZ/NPY)
    classes: list[str] | None  # class names when the target held text; Y holds their indices
    source: str  # the path as given, or "<stdin>"
    # CSV: each row's 1-based line in the file, as an int64 array (one Python int per row
    # would cost more than the row's float32 features)
    line_numbers: np.ndarray | None = None
    # Rows left out by drop_invalid_rows: CSV line numbers, or 0-based rows of an NPZ
    dropped: list[int] = field(default_factory=list)

    def dropped_message(self) -> str:
        """'dropped N rows ... (first at line L)' for the user, or '' when none were dropped."""
        if not self.dropped:
            return ""
        n, s = len(self.dropped), "s" if len(self.dropped) > 1 else ""
        where = f"line{s}" if self.line_numbers is not None else f"0-based row{s}"
        shown = ", ".join(str(i) for i in self.dropped[:PREVIEW])
        more = f", ... ({n} in all)" if n > PREVIEW else ""
        return (f"{self.source}: dropped {n} row{s} with NaN or infinite features "
                f"({where} {shown}{more})")


def read_table(path: str, stdin: typing.BinaryIO | None = None) -> Table:
    """Read ``path`` (``-``: CSV from ``stdin``, default ``sys.stdin.buffer``) into a Table.

    CSV rows stay text (checked for a constant column count); NPZ/NPY arrays are loaded and
    checked. Raises DataError for anything that cannot be read.
    """
    return _read(path, stdin, want_y=True)


def load_training_data(path: str, targets: list[str] | None = None,
                       classes: list[str] | None = None,
                       stdin: typing.BinaryIO | None = None,
                       drop_invalid_rows: bool | None = None) -> Dataset:
    """Load features and targets for training or evaluation.

    ``targets`` names the target columns by header name or 0-based index as text (``"-1"``
    counts from the end); default: the last column. ``classes`` are the class names of a trained
    model: text labels are then mapped to those indices and an unknown label is an error.

    A NaN or infinite feature (a value beyond float32 counts as infinite) is an error, unless
    ``drop_invalid_rows`` is true: then its row is left out and listed in ``Dataset.dropped``.
    ``False`` (rather than ``None``) means the caller offers that option, and the error says so.
    Cells that are not numbers at all are errors either way: they usually mean a wrong column.
    """
    drop = bool(drop_invalid_rows)
    hint = "; --drop-invalid-rows leaves such rows out" if drop_invalid_rows is False else ""
    table = _read(path, stdin, want_y=True, finite=not drop, hint=hint)
    if table.kind == "npy":
        raise DataError("an NPY file holds features only, but targets are needed here: use an "
                        "NPZ file with arrays 'X' and 'y', or a CSV file", table.source)
    if table.kind == "npz":
        return _npz_training_data(table, targets, drop)
    target_cols = resolve_targets(table, targets)
    taken = set(target_cols)
    feature_cols = [j for j in range(table.n_columns) if j not in taken]
    if not feature_cols:
        raise DataError(f"no feature columns left: all {table.n_columns} columns are targets",
                        table.source)
    X = numeric_columns(table, feature_cols, "feature", finite=not drop, hint=hint)
    dropped: list[int] = []
    if drop:
        keep = np.isfinite(X).all(axis=1)
        if not keep.all():
            dropped = table.line_numbers[~keep].tolist()
            _all_dropped(keep, table.source)
            X = np.ascontiguousarray(X[keep])
            table.keep_rows(keep)
    Y, found_classes = csv_targets(table, target_cols, classes)
    ds = _csv_dataset(table, X, Y, feature_cols, target_cols, found_classes)
    ds.dropped = dropped
    return ds


def _all_dropped(keep: np.ndarray, source: str) -> None:
    if not keep.any():
        raise DataError(f"every one of the {len(keep)} rows has a NaN or infinite feature; "
                        "nothing is left to train on", source)


def load_features(path: str, n_features: int, feature_names: list[str] | None = None,
                  target_columns: list[int] | None = None,
                  stdin: typing.BinaryIO | None = None) -> Dataset:
    """Load the feature columns a model expects, for predict (``Y`` is None).

    Columns are chosen, in this order of preference: by the model's ``feature_names`` when the
    header has all of them; all columns when there are ``n_features``; all but the model's
    ``target_columns`` when there are that many more. Anything else is a DataError.
    """
    table = _read(path, stdin, want_y=False,
                  is_model_header=_model_header_test(feature_names, n_features, target_columns))
    if table.kind != "csv":
        assert table.X is not None
        if table.X.shape[1] != n_features:
            raise DataError(f"expected {n_features} feature columns, found {table.X.shape[1]}",
                            table.source)
        return Dataset(X=table.X, Y=None, feature_names=numbered("x", n_features),
                       target_names=[], target_columns=[], classes=None, source=table.source)
    cols, dropped = _select_feature_columns(table, n_features, feature_names, target_columns)
    X = numeric_columns(table, cols, "feature")
    return _csv_dataset(table, X, None, cols, dropped, None)


def iter_features(path: str, n_features: int, feature_names: list[str] | None = None,
                  target_columns: list[int] | None = None,
                  stdin: typing.BinaryIO | None = None,
                  block_rows: int | None = None) -> typing.Iterator[np.ndarray]:
    """The feature columns a model expects, as float32 blocks of rows, for ``predict``.

    Memory is bounded by a block, not by the file: CSV (and standard input) is read a megabyte
    at a time and parsed ``block_rows`` rows at a time (default: about a million cells per
    block, at least 1001 rows for header detection); an NPY file is memory-mapped and converted
    a block at a time. An NPZ member cannot be mapped, so an NPZ's ``X`` is loaded whole.

    Columns are chosen as by :func:`load_features`, from the header and the first rows. Errors
    are DataErrors raised when the block holding the problem is reached, so a caller writing
    results as it goes has written the rows before it.
    """
    if path != "-" and path.lower().endswith(".npz"):
        ds = load_features(path, n_features, feature_names, target_columns)
        yield ds.X
    elif path != "-" and path.lower().endswith(".npy"):
        yield from npy_blocks(path, n_features, block_rows)
    else:
        yield from _csv_feature_blocks(path, n_features, feature_names, target_columns, stdin,
                                       block_rows)


def _csv_feature_blocks(path: str, n_features: int, feature_names: list[str] | None,
                        target_columns: list[int] | None, stdin: typing.BinaryIO | None,
                        block_rows: int | None) -> typing.Iterator[np.ndarray]:
    """CSV (or standard input) read and parsed a block of rows at a time."""
    if path == "-":
        source = STDIN_NAME
        stream = stdin if stdin is not None else getattr(sys.stdin, "buffer", None)
        if stream is None:
            raise DataError("there is no standard input to read", STDIN_NAME)
        owned = None
    else:
        source = path
        # a .gz file is decompressed whole (in memory) rather than streamed
        stream = owned = (io.BytesIO(read_bytes(path)) if path.lower().endswith(".gz")
                          else open_binary(path))
    try:
        rows = csv_rows(text_lines(stream, source), source)
        first = list(itertools.islice(rows, HEADER_LOOKAHEAD + 1))
        if not first:
            raise DataError("empty file", source)
        n_columns = row_width(first[0][1])
        lines, numbers, delimiter = block_lines(first, n_columns, source)
        del first  # the rows are in ``lines`` now; each block's strings are freed early
        is_model_header = _model_header_test(feature_names, n_features, target_columns)
        header = take_header(lines, delimiter, is_model_header)
        if header is not None:
            lines, numbers = lines[1:], numbers[1:]
            if not lines:  # the look-ahead read everything there is
                raise DataError("no data rows (only a header)", source)
        table = Table(source=source, kind="csv", n_columns=n_columns, header=header,
                      delimiter=delimiter)
        table.set_rows(*packed_rows(lines, numbers))
        del lines, numbers
        cols, _ = _select_feature_columns(table, n_features, feature_names, target_columns)
        yield numeric_columns(table, cols, "feature")
        step = block_rows or max(1, cells.CELLS_PER_CHUNK // n_columns)
        while next_block(table, rows, step, source):
            yield numeric_columns(table, cols, "feature")
    finally:
        if owned is not None:
            owned.close()


def _csv_dataset(table: Table, X: np.ndarray, Y: np.ndarray | None, feature_cols: list[int],
                 target_cols: list[int], classes: list[str] | None) -> Dataset:
    names = table.column_names
    named = table.header is not None
    return Dataset(
        X=X, Y=Y,
        feature_names=[names[j] for j in feature_cols] if named
        else numbered("x", len(feature_cols)),
        target_names=[names[j] for j in target_cols] if named
        else target_numbering(len(target_cols)),
        target_columns=target_cols, classes=classes, source=table.source,
        line_numbers=table.line_numbers)


def _read(path: str, stdin: typing.BinaryIO | None, want_y: bool,
          is_model_header: HeaderTest | None = None, finite: bool = True,
          hint: str = "") -> Table:
    """Dispatch on the format; ``is_model_header`` recognises a first row as a header too.

    ``finite=False`` lets NaN and infinity through in NPZ/NPY features (for dropping rows).
    """
    if path == "-":
        return parse_csv(read_stdin(stdin), STDIN_NAME, is_model_header)
    lowered = path.lower()
    if lowered.endswith(".npz"):
        return read_npz(path, want_y, finite, hint)
    if lowered.endswith(".npy"):
        return read_npy(path)
    return parse_csv(read_bytes(path), path, is_model_header)


def _npz_training_data(table: Table, targets: list[str] | None, drop: bool = False) -> Dataset:
    """Dataset from an NPZ's X and y; y 1-D becomes one column. With ``drop``, rows of X holding
    NaN or infinity are left out (X was read without the finiteness check)."""
    path = table.source
    if targets:
        raise DataError("target columns cannot be chosen in an NPZ file: its targets are "
                        "array 'y'", path)
    if table.y is None:
        raise DataError(f"NPZ file has no array 'y' (found: {', '.join(table.array_names)})",
                        path)
    assert table.X is not None
    y = table.y
    if y.ndim == 1:
        y = y.reshape(-1, 1)
    if y.ndim != 2:
        raise DataError(f"array 'y' must be 1-D or 2-D, found shape {table.y.shape}", path)
    if y.shape[0] != table.X.shape[0]:
        raise DataError(f"arrays 'X' and 'y' have different numbers of rows "
                        f"({table.X.shape[0]} and {y.shape[0]})", path)
    X = table.X
    dropped: list[int] = []
    if drop:
        keep = np.isfinite(X).all(axis=1)
        if not keep.all():
            _all_dropped(keep, path)
            dropped = np.flatnonzero(~keep).tolist()
            X, y = np.ascontiguousarray(X[keep]), y[keep]
    # Targets here are numbers even for a model with classes: the caller checks their range.
    Y = finite_float32(y, "array 'y'", path)
    return Dataset(X=X, Y=Y, feature_names=numbered("x", X.shape[1]),
                   target_names=target_numbering(Y.shape[1]), target_columns=[],
                   classes=None, source=path, dropped=dropped)


def _model_header_test(feature_names: list[str] | None, n_features: int,
                       target_columns: list[int] | None) -> HeaderTest | None:
    """A test for a first row that spells out the model's feature names, in order.

    Such a row is a header even when the names are all numbers ("0,1,2"), which the general
    rule cannot tell from data. The model's target columns may be present in it, under any name.
    """
    if not feature_names or len(feature_names) != n_features:
        return None
    wanted = [name.strip() for name in feature_names]
    dropped = set(target_columns or [])

    def test(first: list[str]) -> bool:
        if first == wanted:
            return True
        if dropped and len(first) == n_features + len(dropped):
            return [cell for j, cell in enumerate(first) if j not in dropped] == wanted
        return False

    return test


def _select_feature_columns(table: Table, n_features: int, feature_names: list[str] | None,
                            target_columns: list[int] | None) -> tuple[list[int], list[int]]:
    """The file columns holding the model's features, and the target columns dropped."""
    n = table.n_columns
    header = table.header
    usable_names = feature_names is not None and len(feature_names) == n_features
    if header is not None and usable_names and all(name in header for name in feature_names):
        return [header.index(name) for name in feature_names], []
    if n == n_features:
        return list(range(n)), []
    if target_columns and n == n_features + len(target_columns):
        dropped = sorted({c % n for c in target_columns if -n <= c < n})
        if len(dropped) == len(target_columns):
            return [j for j in range(n) if j not in dropped], dropped
    raise DataError(_count_mismatch(table, n_features, feature_names, target_columns),
                    table.source)


def _count_mismatch(table: Table, n_features: int, feature_names: list[str] | None,
                    target_columns: list[int] | None) -> str:
    """Why no feature columns could be chosen, naming what was looked for."""
    message = f"expected {n_features} feature columns, found {table.n_columns}"
    if feature_names:
        if table.header is not None:
            missing = [name for name in feature_names if name not in table.header]
            message += (f"; looked in the header for the model's columns "
                        f"{preview(feature_names)} and it lacks {preview(missing)}")
        else:
            message += (f"; the file has no header to find the model's columns "
                        f"{preview(feature_names)} by name")
    if target_columns:
        message += (f"; with the model's target column(s) "
                    f"{', '.join(str(c) for c in target_columns)} (0-based) it would need "
                    f"{n_features + len(target_columns)}")
    return message
