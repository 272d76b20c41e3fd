"""What train, eval and predict load: a :class:`Dataset` of features and targets from any
supported file, and the model's feature columns picked out of a file for predict."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field

import numpy as np

from nncli.data import cells
from nncli.data.columns import choose_columns
from nncli.data.features import encode_array, encode_table, fit_array, fit_table
from nncli.data.missing import MEAN, MODEL_FILL, MissingPolicy, missing_policy
from nncli.data.numpy_files import finite_float32, npy_blocks, read_npy, read_npz
from nncli.data.row_weights import (csv_sample_weights, npz_sample_weights,
                                    refuse_input_column, weight_column)
from nncli.data.schema import Encoded, Schema
from nncli.data.table import PREVIEW, STDIN_NAME, Table, numbered, preview, target_numbering
from nncli.data.targets import csv_targets, missing_target_rows, resolve_targets
from nncli.data.text import (HEADER_LOOKAHEAD, CsvReader, HeaderTest, csv_chunks, parse_csv,
                             read_bytes, read_stdin)
from nncli.errors import DataError


@dataclass(frozen=True)
class ReadOptions:
    """How a table is read: the choices ``train`` offers on the command line."""

    delimiter: str | None = None         # None: detected (see text.detect_delimiter)
    # the text's codec; None: UTF-8, or what a byte order mark says (see text.CsvReader)
    encoding: str | None = field(default=None, kw_only=True)
    # see nncli.data.missing; the name the user typed ("mean", "error", "drop") is accepted
    missing: MissingPolicy = MEAN
    categorical: tuple[str, ...] = ()    # columns (names or 0-based indices) to one-hot
    numeric: tuple[str, ...] = ()        # columns read as numbers (other cells: missing)
    ignore: tuple[str, ...] = ()         # columns left out
    features: tuple[str, ...] = ()       # only these columns, in this order ("a,b" splits)
    # the column (an NPZ's array) of row weights, left out of the features (see row_weights)
    sample_weight: str | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        # callers outside nncli.data pass the name the user typed: converted once, here
        object.__setattr__(self, "missing", missing_policy(self.missing))


@dataclass
class Dataset:
    """Arrays ready for training, evaluation or prediction, with the names they came with."""

    X: np.ndarray  # (n, d) float32, C-contiguous; NaN only for missing cells not yet filled
    Y: np.ndarray | None  # (n, t) float32, C-contiguous; None when read for predict
    feature_names: list[str]  # of the features (NAME=CATEGORY for one-hot ones)
    target_names: list[str]  # header names, or "y" / y0, y1, ... when there is no header
    target_columns: list[int]  # 0-based columns of the targets in the file ([] for NPZ/NPY)
    classes: list[str] | None  # class names when the target held text; Y holds their indices
    source: str  # the path as given, or "<stdin>"
    # CSV: each row's 1-based line in the file, as an int64 array (one Python int per row
    # would cost more than the row's float32 features)
    line_numbers: np.ndarray | None = None
    # Rows left out by --missing drop: CSV line numbers, or 0-based rows of an NPZ
    dropped: list[int] = field(default_factory=list)
    schema: Schema | None = None  # the input columns (learnt here, or the model's)
    encoded: Encoded = field(default_factory=Encoded)
    # (n,) float64: each row's --sample-weight, None when the rows are not weighted
    sample_weight: np.ndarray | None = None

    @classmethod
    def from_arrays(cls, X: np.ndarray, Y: np.ndarray, source: str = "<arrays>",
                    classes: list[str] | None = None,
                    sample_weight: np.ndarray | None = None) -> "Dataset":
        """A dataset of numeric features and targets (and row weights) made in memory (tests,
        scripts); the arrays are used as they are when they are C-contiguous float32 already."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        Y = np.ascontiguousarray(Y, dtype=np.float32).reshape(len(X), -1)
        names = numbered("x", X.shape[1])
        weights = None if sample_weight is None else np.asarray(sample_weight, np.float64)
        return cls(X, Y, names, target_numbering(Y.shape[1]), [], classes, source,
                   schema=Schema.numeric(names), sample_weight=weights)

    def dropped_message(self) -> str:
        """'dropped N rows ... (first at line L)' for the user, or '' when none were dropped."""
        if not self.dropped:
            return ""
        n, s = len(self.dropped), "s" if len(self.dropped) > 1 else ""
        where = f"line{s}" if self.line_numbers is not None else f"0-based row{s}"
        shown = ", ".join(str(i) for i in self.dropped[:PREVIEW])
        more = f", ... ({n} in all)" if n > PREVIEW else ""
        return (f"{self.source}: dropped {n} row{s} with missing, NaN or infinite values "
                f"({where} {shown}{more})")

    def messages(self) -> list[str]:
        """The lines to tell the user about this data: rows dropped, columns left out, missing
        values filled, categories never seen in training."""
        dropped = self.dropped_message()
        return ([dropped] if dropped else []) + self.encoded.messages(self.source)


def read_table(path: str, stdin: typing.BinaryIO | None = None,
               delimiter: str | None = None, encoding: str | None = None,
               members: tuple[str, ...] = ()) -> Table:
    """Read ``path`` (``-``: CSV from ``stdin``, default ``sys.stdin.buffer``) into a Table.

    CSV rows stay text (checked for a constant column count); NPZ/NPY arrays are loaded and
    checked (and an NPZ's arrays named in ``members`` kept, as a --sample-weight array).
    Raises DataError for anything that cannot be read.
    """
    return _read(path, stdin, want_y=True, separator=delimiter, encoding=encoding,
                 members=members)


def load_training_data(path: str, targets: list[str] | None = None,
                       classes: list[str] | None = None,
                       stdin: typing.BinaryIO | None = None,
                       options: ReadOptions | None = None,
                       schema: Schema | None = None,
                       model_targets: tuple[list[str], list[int]] | None = None) -> Dataset:
    """Load features and targets for training or evaluation.

    ``targets`` names the target columns by header name or 0-based index as text (``"-1"``
    counts from the end); default: the last column. ``classes`` are the class names of a trained
    model: text labels are then mapped to those indices and an unknown label is an error.

    Without ``schema`` the feature columns' kinds and categories are learnt here (training);
    with one (a model's, or the training data's for validation data) the file's columns are
    found by name (or position) and encoded as it says. Missing values follow
    ``options.missing`` (see nncli.data.features); a missing target is an error unless it is
    ``drop``. ``model_targets`` (a model's target names and columns) are the targets when
    ``targets`` is not given: by name when the header has them all, else by position.
    ``options.sample_weight`` names the column of row weights (see nncli.data.row_weights).
    """
    options = options or ReadOptions()
    weight = options.sample_weight
    table = _read(path, stdin, want_y=True, separator=options.delimiter,
                  encoding=options.encoding, members=(weight,) if weight else ())
    return training_data(table, targets, classes, options, schema, model_targets)


def training_data(table: Table, targets: list[str] | None = None,
                  classes: list[str] | None = None, options: ReadOptions | None = None,
                  schema: Schema | None = None,
                  model_targets: tuple[list[str], list[int]] | None = None) -> Dataset:
    """The Dataset of a table already read (see :func:`load_training_data`, which reads the
    file and calls this; cross-validation reads it once and calls this on each fold's rows).
    The table's rows may be left out in place (``--missing drop``): hand over a copy
    (``Table.subset``) to keep them."""
    options = options or ReadOptions()
    weight = options.sample_weight
    if table.kind == "npy":
        raise DataError("an NPY file holds features only, but targets are needed here: use an "
                        "NPZ file with arrays 'X' and 'y', or a CSV file", table.source)
    if table.kind == "npz":
        return _npz_training_data(table, targets, options, schema)
    if not targets and model_targets is not None and model_targets[1]:
        names, columns = model_targets
        by_name = table.header is not None and all(n in table.header for n in names)
        targets = list(names) if by_name else [str(c) for c in columns]
    target_cols = resolve_targets(table, targets)
    if table.n_columns == 1:
        raise DataError("the file reads as a single column: no ',', ';', tab or '|' separates "
                        "its fields alike in the first lines; if it uses another delimiter, "
                        "give it with --delimiter", table.source)
    weight_col = weight_column(table, weight, target_cols) if weight else None
    choice = choose_columns(table, target_cols, options.features, options.ignore,
                            {"--categorical": options.categorical,
                             "--numeric": options.numeric},
                            weight_col) if schema is None else None
    dropped: list[int] = []
    if options.missing.drops_rows:
        needed = target_cols + ([weight_col] if weight_col is not None else [])
        gaps = missing_target_rows(table, needed)
        if gaps.all():
            what = "target or weight" if weight else "target"
            raise DataError(f"every one of the {len(gaps)} rows has a missing {what}; nothing "
                            f"is left to train on", table.source)
        if gaps.any():
            dropped = table.line_numbers[gaps].tolist()
            table.keep_rows(~gaps)
    encoded = Encoded()
    if choice is not None:
        X, schema, more = fit_table(table, choice, options.missing, encoded)
    else:
        cols = _model_columns(table, schema, target_cols, targets_in_file=True)
        if weight_col is not None:
            refuse_input_column(table, weight, weight_col, cols)
        X, more = encode_table(table, cols, schema, options.missing, encoded)
    Y, found_classes = csv_targets(table, target_cols, classes)
    # after every row --missing drop leaves out is gone, as the targets
    sample = csv_sample_weights(table, weight_col) if weight_col is not None else None
    names = table.column_names
    named = table.header is not None
    return Dataset(X=X, Y=Y, feature_names=schema.feature_names(),
                   target_names=[names[j] for j in target_cols] if named
                   else target_numbering(len(target_cols)),
                   target_columns=target_cols, classes=found_classes, source=table.source,
                   line_numbers=table.line_numbers, dropped=sorted(dropped + more),
                   schema=schema, encoded=encoded, sample_weight=sample)


def load_features(path: str, schema: Schema, target_columns: list[int] | None = None,
                  stdin: typing.BinaryIO | None = None,
                  delimiter: str | None = None, encoding: str | None = None) -> Dataset:
    """Load the input columns of a model (its ``schema``) for predict (``Y`` is None): missing
    numbers filled, categories one-hot.

    Columns are chosen, in this order of preference: by name when the header has all of the
    schema's columns; all columns when there are as many; the training file's positions when
    the file has as many columns as it had; all but the model's ``target_columns`` when there
    are that many more. Anything else is a DataError. An NPZ/NPY array holds the features as
    numbers (categorical columns already one-hot, in the order ``info`` lists them).
    """
    encoded = Encoded()
    table = _read(path, stdin, want_y=False, separator=delimiter, encoding=encoding,
                  is_model_header=_model_header_test(schema.names, target_columns))
    if table.kind != "csv":
        assert table.X is not None
        X = _model_array(table.X, schema, table.source, encoded)
        return Dataset(X=X, Y=None, feature_names=schema.feature_names(), target_names=[],
                       target_columns=[], classes=None, source=table.source, schema=schema,
                       encoded=encoded)
    cols = _model_columns(table, schema, target_columns or [], targets_in_file=False)
    X, _ = encode_table(table, cols, schema, MODEL_FILL, encoded)
    schema.fill_missing(X, table.source)
    return Dataset(X=X, Y=None, feature_names=schema.feature_names(), target_names=[],
                   target_columns=[], classes=None, source=table.source,
                   line_numbers=table.line_numbers, schema=schema, encoded=encoded)


def iter_features(path: str, schema: Schema, target_columns: list[int] | None = None,
                  stdin: typing.BinaryIO | None = None, block_rows: int | None = None,
                  delimiter: str | None = None, encoded: Encoded | None = None,
                  encoding: str | None = None) -> typing.Iterator[np.ndarray]:
    """The input columns of a model, as float32 blocks of rows, for ``predict``.

    Memory is bounded by a block, not by the file: CSV (and standard input) is read a megabyte
    at a time and parsed ``block_rows`` rows at a time (default: about a million cells per
    block, at least 1001 rows for header detection); an NPY file is memory-mapped and converted
    a block at a time. An NPZ member cannot be mapped, so an NPZ's ``X`` is loaded whole.

    Columns are chosen as by :func:`load_features`, from the header and the first rows. Errors
    are DataErrors raised when the block holding the problem is reached, so a caller writing
    results as it goes has written the rows before it. ``encoded`` collects the counts of
    missing and unseen values over all blocks.
    """
    encoded = encoded if encoded is not None else Encoded()
    if path != "-" and path.lower().endswith(".npz"):
        ds = load_features(path, schema, target_columns)
        encoded.add(ds.encoded)
        yield ds.X
    elif path != "-" and path.lower().endswith(".npy"):
        done = 0
        for block in npy_blocks(path, schema.n_features, block_rows):
            yield _model_array(block, schema, path, encoded, done)
            done += len(block)
    else:
        yield from _csv_feature_blocks(path, schema, target_columns, stdin, block_rows,
                                       delimiter, encoded, encoding)


def _model_array(X: np.ndarray, schema: Schema, source: str, encoded: Encoded,
                 row_offset: int = 0) -> np.ndarray:
    """NPZ/NPY features for a model: the width checked, NaN filled, infinity refused."""
    if X.shape[1] != schema.n_features:
        raise DataError(f"expected {schema.n_features} feature columns, found {X.shape[1]}",
                        source)
    X, _ = encode_array(X, schema, source, MODEL_FILL, encoded, row_offset)
    if np.isfinite(X.sum()):
        return X  # no NaN (infinities are refused above): nothing to fill, nothing to copy
    if not X.flags.writeable:
        X = X.copy()  # a memory-mapped NPY block: fill a copy
    schema.fill_missing(X, source)
    return X


def _csv_feature_blocks(path: str, schema: Schema, target_columns: list[int] | None,
                        stdin: typing.BinaryIO | None, block_rows: int | None,
                        delimiter: str | None, encoded: Encoded,
                        encoding: str | None) -> typing.Iterator[np.ndarray]:
    """CSV (or standard input) read and parsed a block of rows at a time."""
    with csv_chunks(path, stdin) as (source, chunks):
        reader = CsvReader(chunks, source, delimiter, encoding)
        table = reader.first_block(_model_header_test(schema.names, target_columns),
                                   1 + HEADER_LOOKAHEAD)
        cols = _model_columns(table, schema, target_columns or [], targets_in_file=False)
        step = block_rows or max(1, cells.CELLS_PER_CHUNK // table.n_columns)
        while True:
            X, _ = encode_table(table, cols, schema, MODEL_FILL, encoded)
            schema.fill_missing(X, source)
            yield X
            if not reader.next_block(table, step):
                break


def _read(path: str, stdin: typing.BinaryIO | None, want_y: bool,
          is_model_header: HeaderTest | None = None, separator: str | None = None,
          encoding: str | None = None, members: tuple[str, ...] = ()) -> Table:
    """Dispatch on the format; ``is_model_header`` recognises a first row as a header too.
    NPZ/NPY features keep NaN and infinity: the missing-value policy decides; ``encoding``
    concerns CSV only, ``members`` (more arrays to read) NPZ only."""
    if path == "-":
        return parse_csv(read_stdin(stdin), STDIN_NAME, is_model_header, separator, encoding)
    lowered = path.lower()
    if lowered.endswith(".npz"):
        return read_npz(path, want_y, finite=False, members=members)
    if lowered.endswith(".npy"):
        return read_npy(path)
    return parse_csv(read_bytes(path), path, is_model_header, separator, encoding)


def _npz_training_data(table: Table, targets: list[str] | None, options: ReadOptions,
                       schema: Schema | None) -> Dataset:
    """Dataset from an NPZ's X and y; y 1-D becomes one column. NaN in X is a missing value
    (``options.missing``); the columns are numeric, named x0, x1, ..."""
    path = table.source
    if targets:
        raise DataError("target columns cannot be chosen in an NPZ file: its targets are "
                        "array 'y'", path)
    if options.features or options.ignore:
        raise DataError("--features and --ignore choose columns of a CSV file; an NPZ file's "
                        "features are all of array 'X'", path)
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
    encoded = Encoded()
    if schema is None:
        schema = Schema.numeric(numbered("x", table.X.shape[1]))
        X, keep = fit_array(table.X, path, options.missing, encoded)
    else:
        if table.X.shape[1] != schema.n_features:
            raise DataError(f"expected {schema.n_features} feature columns, found "
                            f"{table.X.shape[1]}", path)
        X, keep = encode_array(table.X, schema, path, options.missing, encoded)
    dropped = np.flatnonzero(~keep).tolist()
    # Targets here are numbers even for a model with classes: the caller checks their range.
    Y = finite_float32(y[keep] if dropped else y, "array 'y'", path)
    sample = (npz_sample_weights(table, options.sample_weight)[keep]
              if options.sample_weight else None)
    return Dataset(X=X, Y=Y, feature_names=schema.feature_names(),
                   target_names=target_numbering(Y.shape[1]), target_columns=[],
                   classes=None, source=path, dropped=dropped, schema=schema, encoded=encoded,
                   sample_weight=sample)


def _model_header_test(names: list[str] | None,
                       target_columns: list[int] | None) -> HeaderTest | None:
    """A test for a first row that spells out the model's input columns, in order.

    Such a row is a header even when the names are all numbers ("0,1,2"), which the general
    rule cannot tell from data. The model's target columns may be present in it, under any name.
    """
    if not names:
        return None
    wanted = [name.strip() for name in names]
    dropped = set(target_columns or [])

    def test(first: list[str]) -> bool:
        if first == wanted:
            return True
        if dropped and len(first) == len(wanted) + len(dropped):
            return [cell for j, cell in enumerate(first) if j not in dropped] == wanted
        return False

    return test


def _model_columns(table: Table, schema: Schema, target_cols: list[int],
                   targets_in_file: bool) -> list[int]:
    """The file columns holding the model's input columns, in the model's order.

    By name when the header has them all; else by position: all columns (predict) when there
    are as many, the training file's positions when the file has as many columns as it had,
    else the columns left once the targets are taken out (the file's targets for eval, the
    model's target columns for predict).
    """
    names, n, header = schema.names, table.n_columns, table.header
    if header is not None and all(name in header for name in names):
        return [header.index(name) for name in names]
    if not targets_in_file and n == len(names):
        return list(range(n))
    sources = [c.source for c in schema.columns]
    if schema.source_columns == n and all(j is not None for j in sources):
        return typing.cast(list[int], sources)
    taken = {c % n for c in target_cols if -n <= c < n}
    if target_cols and len(taken) == len(target_cols) and n - len(taken) == len(names):
        return [j for j in range(n) if j not in taken]
    raise DataError(_count_mismatch(table, len(names), names, target_cols), table.source)


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
    if table.n_columns == 1 and n_features > 1:
        message += ("; the file reads as a single column: if it uses a delimiter other than "
                    "',', ';', tab or '|', give it with --delimiter")
    return message
