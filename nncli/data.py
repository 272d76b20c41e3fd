"""Reading data files into float32 arrays for ``train``, ``eval`` and ``predict``.

Formats, chosen by the file name's extension (case-insensitive):

* ``.npz``: a NumPy archive with a 2-D numeric array ``X`` (rows x features) and, for training
  and evaluation, an array ``y`` (1-D, or 2-D with one column per target) with as many rows.
* ``.npy``: a single 2-D numeric array of features; usable for ``predict`` only.
* anything else, and ``-`` (standard input): CSV.

Nothing is ever unpickled: NumPy files are opened with ``allow_pickle=False``.

CSV files are UTF-8, with or without a byte order mark, with LF or CRLF line ends. The delimiter
is ``,``; fields may be double-quoted (then the whole file goes through the ``csv`` module).
Blank lines are skipped. Standard input is read into memory once.

Header detection: the first row is taken as a header when some cell of it does not parse as a
number and either

* that column's cell in the second row does parse as a number (``p0`` above ``0.5``), or
* that cell's text does not occur again in its column within the next 1000 rows (a column of text
  labels: ``label`` above ``cat, dog, cat, ...`` is a name, ``cat`` above ``dog, cat`` is data).

A header of numbers only (``0,1,2,3``) cannot be told from data and is read as a data row, unless
some other cell gives it away (``0,1,2,label``). ``load_features`` also accepts a first row that
spells out exactly the model's feature names (optionally with its target columns) as a header.

Targets are the last column unless named: by header name or by 0-based index (``-1`` counts from
the end). They are removed from the features; the other columns keep their order. A single
target column holding any cell that is not a number is a column of class labels; its classes are
the sorted distinct (whitespace-stripped) labels and ``Y`` holds each row's class index. Given a
trained model's classes, labels that are all class names are mapped to its indices (even labels
that look like numbers); otherwise numbers are kept as they are and any other label is an error.
An empty target cell is always an error rather than a class of its own.

Every problem is reported as a :class:`~nncli.errors.DataError` located as ``FILE:LINE:COLUMN``
(1-based lines counted in the file as it is, header and blank lines included; 1-based columns).
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import itertools
import os
import re
import sys
import typing
import zipfile
import zlib
from dataclasses import dataclass, field

import numpy as np

from nncli.errors import DataError

__all__ = ["Dataset", "Table", "read_table", "load_training_data", "load_features",
           "iter_features"]

STDIN_NAME = "<stdin>"

# How far below the first row header detection looks for a repeat of a text cell.
_HEADER_LOOKAHEAD = 1000
# Cells parsed per np.loadtxt call: bounds the temporary arrays of a chunk to a few megabytes.
_CELLS_PER_CHUNK = 1_000_000
# Bytes read per call by the streaming reader (iter_features).
_READ_BYTES = 1 << 20
# Delimiters for rows re-joined after the csv module unquoted them: ',' unless a quoted cell
# holds a comma, else the first control character that occurs nowhere in the text.
_JOIN_DELIMITERS = (",", "\x01", "\x02", "\x03", "\x04")
# Names listed in error messages before "... (N in all)".
_PREVIEW = 10
_INT_RE = re.compile(r"[+-]?\d+")
# Bytes examined per vectorised step when scanning a CSV for line ends and validating UTF-8:
# bounds the temporaries (a byte or two per byte of the window) to well under a megabyte.
_SCAN_BYTES = 1 << 18
# Bytes per step when counting commas and blanks per line: below 2**16 so that a uint16 count
# cannot overflow (see _per_line_sums).
_COUNT_BYTES = (1 << 16) - 1
_LF, _CR, _COMMA = ord("\n"), ord("\r"), ord(",")


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
        shown = ", ".join(str(i) for i in self.dropped[:_PREVIEW])
        more = f", ... ({n} in all)" if n > _PREVIEW else ""
        return (f"{self.source}: dropped {n} row{s} with NaN or infinite features "
                f"({where} {shown}{more})")


Offsets = np.ndarray  # int64 byte offsets into a Table's text


def _no_offsets() -> Offsets:
    """An empty int64 array: no rows."""
    return np.zeros(0, dtype=np.int64)


@dataclass
class Table:
    """A data file read into memory but not yet converted into numbers.

    For CSV, the rows are kept compactly rather than as one Python string per row (which
    costs about as much again as the file): ``text`` holds UTF-8 bytes and row ``i`` is
    ``text[starts[i]:ends[i]]``, its cells separated by ``delimiter`` (blank lines, the header
    and line ends are not in any row); ``line_numbers`` holds each row's 1-based line in the
    file. ``starts``, ``ends`` and ``line_numbers`` are int64 arrays. ``text`` is the file
    itself for a CSV without quotes and the rows re-joined without quotes otherwise.
    :meth:`rows` turns a range of rows into strings, for the parsers that want them a chunk at
    a time.
    For NPZ/NPY, ``X`` is already a checked float32 array and ``y`` is the NPZ's ``y`` as stored.
    """

    source: str
    kind: typing.Literal["csv", "npz", "npy"]
    n_columns: int
    header: list[str] | None = None
    text: bytes = b""
    starts: Offsets = field(default_factory=_no_offsets)
    ends: Offsets = field(default_factory=_no_offsets)
    line_numbers: np.ndarray = field(default_factory=_no_offsets)
    delimiter: str = ","
    X: np.ndarray | None = None
    y: np.ndarray | None = None
    array_names: list[str] = field(default_factory=list)

    @property
    def n_rows(self) -> int:
        """The number of data rows."""
        if self.kind == "csv":
            return len(self.starts)
        assert self.X is not None
        return int(self.X.shape[0])

    @property
    def column_names(self) -> list[str]:
        """Header names, or x0, x1, ... for a file without a header."""
        return list(self.header) if self.header is not None else _numbered("x", self.n_columns)

    def rows(self, lo: int, hi: int) -> list[str]:
        """CSV rows ``lo`` to ``hi`` (exclusive) as strings; callers keep ``hi - lo`` bounded."""
        text = self.text
        return [text[a:b].decode("utf-8")
                for a, b in zip(self.starts[lo:hi].tolist(), self.ends[lo:hi].tolist())]

    def row(self, i: int) -> str:
        """CSV row ``i`` as a string."""
        return self.text[int(self.starts[i]):int(self.ends[i])].decode("utf-8")

    def line(self, i: int) -> int:
        """The 1-based file line of CSV row ``i``, as a Python int for error messages."""
        return int(self.line_numbers[i])

    def set_rows(self, text: bytes, starts: Offsets, ends: Offsets,
                 line_numbers: np.ndarray) -> None:
        """Replace the CSV rows (the streaming reader reuses one Table for every block)."""
        self.text, self.starts, self.ends = text, starts, ends
        self.line_numbers = line_numbers

    def keep_rows(self, keep: np.ndarray) -> None:
        """Leave out the CSV rows where the boolean mask ``keep`` is false (the text stays)."""
        self.starts, self.ends = self.starts[keep], self.ends[keep]
        self.line_numbers = self.line_numbers[keep]


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


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
    target_cols = _resolve_targets(table, targets)
    taken = set(target_cols)
    feature_cols = [j for j in range(table.n_columns) if j not in taken]
    if not feature_cols:
        raise DataError(f"no feature columns left: all {table.n_columns} columns are targets",
                        table.source)
    X = _numeric_columns(table, feature_cols, "feature", finite=not drop, hint=hint)
    dropped: list[int] = []
    if drop:
        keep = np.isfinite(X).all(axis=1)
        if not keep.all():
            dropped = table.line_numbers[~keep].tolist()
            _all_dropped(keep, table.source)
            X = np.ascontiguousarray(X[keep])
            table.keep_rows(keep)
    Y, found_classes = _csv_targets(table, target_cols, classes)
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
        return Dataset(X=table.X, Y=None, feature_names=_numbered("x", n_features),
                       target_names=[], target_columns=[], classes=None, source=table.source)
    cols, dropped = _select_feature_columns(table, n_features, feature_names, target_columns)
    X = _numeric_columns(table, cols, "feature")
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
        yield from _npy_blocks(path, n_features, block_rows)
    else:
        yield from _csv_feature_blocks(path, n_features, feature_names, target_columns, stdin,
                                       block_rows)


def _npy_blocks(path: str, n_features: int,
                block_rows: int | None) -> typing.Iterator[np.ndarray]:
    """Blocks of an NPY feature array, memory-mapped rather than read whole."""
    array = _load_npy(path, mmap=True)
    if array.ndim != 2:
        raise DataError(f"the array must be 2-D (rows x features), found shape {array.shape}",
                        path)
    if array.shape[1] != n_features:
        raise DataError(f"expected {n_features} feature columns, found {array.shape[1]}", path)
    step = block_rows or max(1, _CELLS_PER_CHUNK // max(1, n_features))
    for lo in range(0, max(len(array), 1), step):
        yield _finite_float32(array[lo:lo + step], "the array", path, row_offset=lo)


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
        stream = owned = (io.BytesIO(_read_bytes(path)) if path.lower().endswith(".gz")
                          else _open_binary(path))
    try:
        rows = _csv_rows(_text_lines(stream, source), source)
        first = list(itertools.islice(rows, _HEADER_LOOKAHEAD + 1))
        if not first:
            raise DataError("empty file", source)
        n_columns = _row_width(first[0][1])
        lines, numbers, delimiter = _block_lines(first, n_columns, source)
        del first  # the rows are in ``lines`` now; each block's strings are freed early
        is_model_header = _model_header_test(feature_names, n_features, target_columns)
        header = _take_header(lines, delimiter, is_model_header)
        if header is not None:
            lines, numbers = lines[1:], numbers[1:]
            if not lines:  # the look-ahead read everything there is
                raise DataError("no data rows (only a header)", source)
        table = Table(source=source, kind="csv", n_columns=n_columns, header=header,
                      delimiter=delimiter)
        table.set_rows(*_packed_rows(lines, numbers))
        del lines, numbers
        cols, _ = _select_feature_columns(table, n_features, feature_names, target_columns)
        yield _numeric_columns(table, cols, "feature")
        step = block_rows or max(1, _CELLS_PER_CHUNK // n_columns)
        while _next_block(table, rows, step, source):
            yield _numeric_columns(table, cols, "feature")
    finally:
        if owned is not None:
            owned.close()


def _next_block(table: Table, rows: typing.Iterator[tuple[int, CsvRow]], step: int,
                source: str) -> bool:
    """Put the next ``step`` rows of the stream into ``table`` (False at the end).

    A function of its own so that the block's row strings are gone before it is parsed: only
    the packed rows stay, and the parser makes strings again a chunk at a time.
    """
    table.set_rows(b"", _no_offsets(), _no_offsets(), _no_offsets())
    block = list(itertools.islice(rows, step))
    if not block:
        return False
    lines, numbers, table.delimiter = _block_lines(block, table.n_columns, source)
    del block
    table.set_rows(*_packed_rows(lines, numbers))
    return True


def _text_lines(stream: typing.BinaryIO, source: str) -> typing.Iterator[str]:
    """The lines of a UTF-8 byte stream (without '\n'; a '\r' before it is kept), decoded a
    block at a time. Blocks end at a '\n', which never occurs inside a UTF-8 sequence; NUL bytes
    and invalid UTF-8 are DataErrors giving their byte offset in the file."""
    pending = b""
    offset = 0  # bytes of the stream before ``pending``
    start = True
    # read1: what a pipe has now (at most a block) rather than waiting for a whole block
    read = getattr(stream, "read1", stream.read)
    while True:
        try:
            chunk = read(_READ_BYTES)
        except (OSError, ValueError) as exc:  # ValueError: the stream is closed
            raise DataError(f"cannot read: {getattr(exc, 'strerror', None) or exc}",
                            source) from exc
        if isinstance(chunk, str):  # a text stream slipped in by a caller
            chunk = chunk.encode("utf-8")
        data = pending + chunk
        if start and (len(data) >= len(codecs.BOM_UTF8) or not chunk):
            if data.startswith(codecs.BOM_UTF8):
                data = data[len(codecs.BOM_UTF8):]
                offset = len(codecs.BOM_UTF8)
            start = False
        cut = len(data) if not chunk else data.rfind(b"\n") + 1
        if start:
            cut = 0
        complete, pending = data[:cut], data[cut:]
        if complete:
            nul = complete.find(b"\0")
            if nul >= 0:
                raise DataError(f"not a text CSV file (binary data at byte {offset + nul})",
                                source)
            try:
                text = complete.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"not a text CSV file (binary data at byte "
                                f"{offset + exc.start})", source) from exc
            offset += cut
            lines = text.split("\n")
            if text.endswith("\n"):
                lines.pop()
            yield from lines
        if not chunk:
            return


class _CountedLines:
    """An iterator over lines (given without '\n', returned with it, as the csv module wants
    them) that counts how many it has handed out."""

    def __init__(self, lines: typing.Iterator[str]) -> None:
        self._lines = lines
        self.number = 0

    def __iter__(self) -> "_CountedLines":
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.number += 1
        return line + "\n"


CsvRow = typing.Union[str, list[str]]


def _csv_rows(lines: typing.Iterator[str], source: str) -> typing.Iterator[tuple[int, CsvRow]]:
    """(line number, row) for each non-blank row: the line itself when it has no quote (the
    fast path), else the cells the csv module reads from it and, for a quoted cell with line
    breaks, the lines after it (line breaks in cells become spaces, as in _split_quoted)."""
    counted = _CountedLines(lines)
    for line in counted:
        number = counted.number
        text = line[:-1]
        if text.endswith("\r"):
            text = text[:-1]
        if '"' not in text:
            if text and not text.isspace():
                yield number, text
            continue
        reader = csv.reader(itertools.chain([line], counted))
        try:
            row = next(reader)
        except csv.Error as exc:
            raise DataError(f"cannot parse CSV: {exc}", source, counted.number) from exc
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        yield number, [_one_line(cell) for cell in row]


def _row_width(row: CsvRow) -> int:
    return row.count(",") + 1 if isinstance(row, str) else len(row)


def _block_lines(rows: list[tuple[int, CsvRow]], n_columns: int,
                 source: str) -> tuple[list[str], list[int], str]:
    """Rows of one block as lines joined by one delimiter, their line numbers, the delimiter.

    ',' unless a quoted cell holds one; then a control character found nowhere in the block.
    A row of another width than the first row of the file is an error at its line.
    """
    quoted = False
    for number, row in rows:
        width = _row_width(row)
        if width != n_columns:
            raise DataError(f"expected {n_columns} columns, found {width}", source, number)
        quoted = quoted or not isinstance(row, str)
    numbers = [number for number, _ in rows]
    if not quoted:
        return [typing.cast(str, row) for _, row in rows], numbers, ","
    cells = [row if isinstance(row, list) else row.split(",") for _, row in rows]
    delimiter = ","
    if any("," in cell for row in cells for cell in row):
        text = "".join("".join(row) for row in cells)
        delimiter = next((d for d in _JOIN_DELIMITERS[1:] if d not in text), "")
        if not delimiter:
            raise DataError("cannot split rows: quoted cells hold commas and the file uses "
                            "every spare separator character", source)
    return [delimiter.join(row) for row in cells], numbers, delimiter


def _csv_dataset(table: Table, X: np.ndarray, Y: np.ndarray | None, feature_cols: list[int],
                 target_cols: list[int], classes: list[str] | None) -> Dataset:
    names = table.column_names
    named = table.header is not None
    return Dataset(
        X=X, Y=Y,
        feature_names=[names[j] for j in feature_cols] if named
        else _numbered("x", len(feature_cols)),
        target_names=[names[j] for j in target_cols] if named
        else _target_numbering(len(target_cols)),
        target_columns=target_cols, classes=classes, source=table.source,
        line_numbers=table.line_numbers)


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------


HeaderTest = typing.Callable[[list[str]], bool]


def _read(path: str, stdin: typing.BinaryIO | None, want_y: bool,
          is_model_header: HeaderTest | None = None, finite: bool = True,
          hint: str = "") -> Table:
    """Dispatch on the format; ``is_model_header`` recognises a first row as a header too.

    ``finite=False`` lets NaN and infinity through in NPZ/NPY features (for dropping rows).
    """
    if path == "-":
        return _parse_csv(_read_stdin(stdin), STDIN_NAME, is_model_header)
    lowered = path.lower()
    if lowered.endswith(".npz"):
        return _read_npz(path, want_y, finite, hint)
    if lowered.endswith(".npy"):
        return _read_npy(path)
    return _parse_csv(_read_bytes(path), path, is_model_header)


def _read_stdin(stdin: typing.BinaryIO | None) -> bytes:
    """All of standard input; CSV cannot be parsed in one pass while detecting the header."""
    stream = stdin if stdin is not None else getattr(sys.stdin, "buffer", None)
    if stream is None:  # e.g. pythonw, or a daemon with stdin closed
        raise DataError("there is no standard input to read", STDIN_NAME)
    try:
        data = stream.read()
    except (OSError, ValueError) as exc:  # ValueError: the stream is closed
        raise DataError(f"cannot read: {getattr(exc, 'strerror', None) or exc}",
                        STDIN_NAME) from exc
    # A text stream slipped in by a caller still works.
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


def _open_binary(path: str) -> typing.BinaryIO:
    """Open ``path`` for reading, turning every OS failure into a DataError."""
    if os.path.isdir(path):
        raise DataError("is a directory, not a data file", path)
    try:
        return open(path, "rb")
    except FileNotFoundError as exc:
        raise DataError("no such file", path) from exc
    except PermissionError as exc:
        raise DataError("permission denied", path) from exc
    except OSError as exc:
        raise DataError(f"cannot open: {exc.strerror or exc}", path) from exc


def _read_bytes(path: str) -> bytes:
    """The whole file; CSV is parsed from memory. A name ending in .gz is gunzipped."""
    with _open_binary(path) as f:
        try:
            raw = f.read()
        except OSError as exc:
            raise DataError(f"cannot read: {exc.strerror or exc}", path) from exc
    if not path.lower().endswith(".gz"):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"not a valid gzip file ({exc})", path) from exc


def _check_text(raw: bytes, source: str) -> int:
    """Refuse a file that is not UTF-8 text, giving the offset of the first bad byte; return
    the length of the byte order mark to skip (0 or 3).

    Pure ASCII, the usual case, is recognised by one C call. Other text is decoded a window at
    a time (cut just after a '\n', which never occurs inside a UTF-8 sequence) and thrown
    away: the rows are decoded again, a chunk at a time, when they are parsed, so no decoded
    copy of the whole file ever exists.
    """
    nul = raw.find(b"\0")
    if nul >= 0:
        raise DataError(f"not a text CSV file (binary data at byte {nul})", source)
    base = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    if raw.isascii():
        return base
    view = memoryview(raw)
    lo = base
    while lo < len(raw):
        hi = _window_end(raw, lo)
        try:
            str(view[lo:hi], "utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"not a text CSV file (binary data at byte {lo + exc.start})",
                            source) from exc
        lo = hi
    return base


def _window_end(raw: bytes, lo: int) -> int:
    """The end of a window of about _SCAN_BYTES from ``lo``: just after a '\n' (or further,
    for a longer line), or the end of the data."""
    if len(raw) - lo <= _SCAN_BYTES:
        return len(raw)
    cut = raw.rfind(b"\n", lo, lo + _SCAN_BYTES) + 1
    if cut > lo:
        return cut
    cut = raw.find(b"\n", lo + _SCAN_BYTES) + 1
    return cut if cut > 0 else len(raw)


# --------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------


def _parse_csv(raw: bytes, source: str, is_model_header: HeaderTest | None) -> Table:
    """Split CSV bytes into checked rows and detect the header.

    A file without quotes keeps ``raw`` as its rows' text (see Table); only the first rows
    become strings here, for header detection.
    """
    base = _check_text(raw, source)
    if b'"' in raw:
        text, starts, ends, numbers, delimiter, n_columns = _split_quoted(
            str(memoryview(raw)[base:], "utf-8"), source)
    else:
        text, delimiter = raw, ","
        starts, ends, numbers, n_columns = _split_plain(raw, base, source)
    table = Table(source=source, kind="csv", n_columns=n_columns, delimiter=delimiter)
    table.set_rows(text, starts, ends, numbers)
    if not table.n_rows:
        raise DataError("empty file", source)
    table.header = _take_header(table.rows(0, 1 + _HEADER_LOOKAHEAD), delimiter,
                                is_model_header)
    if table.header is not None:
        table.set_rows(text, starts[1:], ends[1:], numbers[1:])
        if not table.n_rows:
            raise DataError("no data rows (only a header)", source)
    return table


def _take_header(lines: list[str], delimiter: str,
                 is_model_header: HeaderTest | None) -> list[str] | None:
    """The first row's cells when it is a header (see the module docstring), else None."""
    first = [cell.strip() for cell in lines[0].split(delimiter)]
    following = lines[1:1 + _HEADER_LOOKAHEAD]
    if ((is_model_header is not None and is_model_header(first))
            or _is_header(first, following, delimiter)):
        return first
    return None


def _split_plain(raw: bytes, base: int,
                 source: str) -> tuple[Offsets, Offsets, np.ndarray, int]:
    """Rows of a CSV without quotes (from byte ``base`` on, after a BOM): the start and end
    offset in ``raw`` of each non-blank line (without its '\n' and a '\r' before it), its
    1-based line number, and the number of columns (-1 when there is no row).

    Line ends, blank lines and commas are found by NumPy on the bytes rather than by a Python
    loop over lines: faster, and no string per line is made. Counting commas is the cheap way
    to catch ragged rows before the C parser sees them and reports a position that is not a
    line of the file.
    """
    buf = np.frombuffer(raw, dtype=np.uint8)
    starts, ends = _line_offsets(buf, base)
    commas = _per_line_sums(buf, starts, lambda window: window == _COMMA)
    # a comma is not whitespace: only a file with a line without one can have blank lines
    keep = (~_blank_lines(raw, buf, starts, ends) if (commas == 0).any()
            else np.ones(len(starts), dtype=bool))
    numbers = np.flatnonzero(keep) + 1
    starts, ends, found = starts[keep], ends[keep], commas[keep] + 1
    if not len(found):
        return starts, ends, numbers, -1
    ragged = np.flatnonzero(found != found[0])
    if ragged.size:
        i = int(ragged[0])
        raise DataError(f"expected {found[0]} columns, found {found[i]}", source,
                        int(numbers[i]))
    return starts, ends, numbers, int(found[0])


def _line_offsets(buf: np.ndarray, base: int) -> tuple[Offsets, Offsets]:
    """Start and end offsets of the lines of ``buf[base:]`` as str.split('\n') cuts them, less
    the empty piece after a final '\n'; an end excludes one '\r' before the '\n'."""
    breaks = _newlines(buf, base)
    starts = np.concatenate((np.array([base], dtype=np.int64), breaks + 1))
    ends = np.append(breaks, np.int64(len(buf)))
    if starts[-1] == len(buf):
        starts, ends = starts[:-1], ends[:-1]
    carriage = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == _CR)
    return starts, ends - carriage


def _newlines(buf: np.ndarray, lo: int = 0) -> Offsets:
    """Offsets of every '\n' in ``buf`` from ``lo`` on, a window at a time (the comparison's
    temporary is a byte per byte of the window)."""
    parts = [np.flatnonzero(buf[a:a + _SCAN_BYTES] == _LF) + a
             for a in range(lo, len(buf), _SCAN_BYTES)]
    return np.concatenate(parts).astype(np.int64, copy=False) if parts else _no_offsets()


def _per_line_sums(buf: np.ndarray, starts: Offsets,
                   test: typing.Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """For each line, how many of its bytes pass ``test`` (a vectorised predicate on a window
    of bytes). Line ``k`` is counted from ``starts[k]`` to ``starts[k + 1]`` (its line end
    included), the last one to the end of ``buf``.

    np.add.reduceat sums the segments of a window, in uint16: it casts its whole input to the
    counting type first, and windows shorter than 2**16 bytes keep that cast small and the
    counts from overflowing. A line that runs over several windows gets a sum from each.
    """
    out = np.zeros(len(starts), dtype=np.int64)
    if not len(starts):
        return out
    k = 0  # the first line that starts in this window or later
    for lo in range(int(starts[0]), len(buf), _COUNT_BYTES):
        hi = min(lo + _COUNT_BYTES, len(buf))
        k_end = int(np.searchsorted(starts, hi))
        cuts, first = starts[k:k_end] - lo, k
        if not len(cuts) or cuts[0] != 0:  # the window opens inside line k - 1
            cuts, first = np.concatenate((np.zeros(1, np.int64), cuts)), k - 1
        out[first:k_end] += np.add.reduceat(test(buf[lo:hi]), cuts, dtype=np.uint16)
        k = k_end
    return out


def _solid(window: np.ndarray) -> np.ndarray:
    """Bytes that make a line not blank: all but ASCII whitespace in the sense of str.isspace
    (9-13 and 28-32); bytes from 0x80 on may be parts of whitespace: see _blank_lines."""
    return (window > 32) | (window < 9) | ((window > 13) & (window < 28))


def _blank_lines(raw: bytes, buf: np.ndarray, starts: Offsets, ends: Offsets) -> np.ndarray:
    """Which lines are empty or whitespace only, in the sense of str.isspace.

    ASCII bytes are classified by NumPy; the rare line whose only other bytes are non-ASCII
    (a no-break space, say) is decoded and asked.
    """
    solid = _per_line_sums(buf, starts, _solid)
    blank = solid == 0
    if not raw.isascii():
        high = _per_line_sums(buf, starts, lambda window: window >= 0x80)
        for k in np.flatnonzero((solid > 0) & (solid == high)).tolist():
            blank[k] = raw[starts[k]:ends[k]].decode("utf-8").isspace()
    return blank


def _packed_rows(lines: typing.Iterable[str],
                 numbers: typing.Sequence[int]) -> tuple[bytes, Offsets, Offsets, np.ndarray]:
    """Rows given as strings (none holding a '\n') in the compact form of a Table: the rows
    joined by '\n' as UTF-8, each row's start and end offset in it, and the line numbers."""
    line_numbers = np.asarray(numbers, dtype=np.int64)
    if not len(line_numbers):
        return b"", _no_offsets(), _no_offsets(), line_numbers
    text = "\n".join(lines).encode("utf-8")
    breaks = _newlines(np.frombuffer(text, dtype=np.uint8))
    starts = np.concatenate((np.zeros(1, dtype=np.int64), breaks + 1))
    ends = np.append(breaks, np.int64(len(text)))
    return text, starts, ends, line_numbers


def _split_quoted(text: str,
                  source: str) -> tuple[bytes, Offsets, Offsets, np.ndarray, str, int]:
    """Rows of a CSV with quotes, parsed by the csv module and re-joined without quotes, in
    the compact form of a Table (see _packed_rows), with the delimiter and the column count.

    This is the rare path, so it goes row by row through the csv module and holds every row's
    cells while it reads; only its result is compact. Re-joining lets the fast numeric path
    treat both kinds of file alike. A cell that itself holds a comma makes us join with a
    control character that occurs nowhere in the text; line breaks inside a quoted cell become
    spaces, since the numeric parser takes one line per row (such a cell can only be a text
    label, which is stripped anyway).
    """
    rows: list[list[str]] = []
    numbers: list[int] = []
    # rows end at '\n' only (a '\r' before it is fine), as in every other path of this module
    # and in the streaming reader: a bare '\r' outside quotes is a CSV error, not a line break
    reader = csv.reader(io.StringIO(text, newline="\n"))
    end = 0  # last file line consumed so far; a row starts on the line after it
    expected = -1
    try:
        for row in reader:
            start, end = end + 1, reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if expected < 0:
                expected = len(row)
            elif len(row) != expected:
                raise DataError(f"expected {expected} columns, found {len(row)}", source, start)
            rows.append([_one_line(cell) for cell in row])
            numbers.append(start)
    except csv.Error as exc:
        raise DataError(f"cannot parse CSV: {exc}", source, end + 1) from exc
    delimiter = _join_delimiter(text, rows, source)
    packed = _packed_rows((delimiter.join(row) for row in rows), numbers)
    return (*packed, delimiter, expected)


def _join_delimiter(text: str, rows: list[list[str]], source: str) -> str:
    """',' unless some cell holds one; then a control character that occurs nowhere."""
    if not any("," in cell for row in rows for cell in row):
        return ","
    for delimiter in _JOIN_DELIMITERS[1:]:
        if delimiter not in text:
            return delimiter
    raise DataError("cannot split rows: quoted cells hold commas and the file uses every spare "
                    "separator character", source)


def _one_line(cell: str) -> str:
    """A cell with its line breaks turned into spaces (see _split_quoted)."""
    if "\n" in cell or "\r" in cell:
        return cell.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    return cell


def _is_header(first: list[str], following: list[str], delimiter: str) -> bool:
    """The header rule of the module docstring; ``following`` are the next rows as lines.

    Only the columns whose first cell is text are looked at, one at a time, so that a wide
    file does not turn a thousand rows into cell strings all at once.
    """
    for j, cell in enumerate(first):
        if _parse_float(cell) is not None:
            continue
        below = [parts[j].strip() for parts in (line.split(delimiter, j + 1) for line in following)
                 if j < len(parts)]
        if below and _parse_float(below[0]) is not None:
            return True
        if cell not in below:
            return True
    return False


def _parse_float(text: str) -> float | None:
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


def _column_label(table: Table, j: int) -> str:
    """How error messages name column ``j``: 'name' from the header, else its 1-based number."""
    if table.header is not None and table.header[j]:
        return f"'{table.header[j]}'"
    return str(j + 1)


def _shown(cell: str) -> str:
    """A cell as quoted in an error message, cut short if long."""
    cell = cell.strip()
    if not cell:
        return "an empty cell"
    return f"'{cell[:40]}...'" if len(cell) > 40 else f"'{cell}'"


def _numeric_columns(table: Table, cols: list[int], role: str, finite: bool = True,
                     hint: str = "") -> np.ndarray:
    """Columns ``cols`` of every row as a C-contiguous float32 (n, len(cols)) array.

    np.loadtxt does the parsing in C, a chunk of rows at a time so that temporaries (the
    chunk's row strings among them) stay small. Integer parsing is tried first because it is
    about three times faster than float parsing and pixel-like data is all integers; the first
    chunk that is not integers switches to floats.
    NaN and infinity are errors (``hint`` appended), or kept when ``finite`` is false.
    """
    n = table.n_rows
    out = np.empty((n, len(cols)), dtype=np.float32)
    step = max(1, _CELLS_PER_CHUNK // max(1, len(cols)))
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
                _raise_bad_cell(table, cols, lo, role, exc)
            if finite:
                _check_finite_block(table, block, cols, lo, role, hint)
        out[lo:lo + len(chunk)] = block
    return out


def _loadtxt(lines: list[str], delimiter: str, cols: list[int], dtype: type) -> np.ndarray:
    """np.loadtxt as used here: no comment character (a '#' in a label is data)."""
    return np.loadtxt(lines, delimiter=delimiter, dtype=dtype, usecols=cols, ndmin=2,
                      comments=None, encoding=None)


def _row_chunks(table: Table, lo: int = 0) -> typing.Iterator[tuple[int, list[str]]]:
    """(index of the first, row strings) for the rows from ``lo`` on, a chunk of about
    _CELLS_PER_CHUNK cells at a time: the one place that decides how many rows are text at once
    when a whole column or a search runs over the table."""
    step = max(1, _CELLS_PER_CHUNK // max(1, table.n_columns))
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
            if _parse_float(cells[j]) is None:
                raise DataError(f"cannot read {_shown(cells[j])} as a number "
                                f"({role} column {_column_label(table, j)})",
                                table.source, table.line(i), j + 1) from exc
    # Only reached if Python and NumPy disagree about some spelling of a number.
    raise DataError(f"cannot read the {role} columns as numbers: {exc}", table.source) from exc


def _check_finite_block(table: Table, block: np.ndarray, cols: list[int], lo: int,
                        role: str, hint: str = "") -> None:
    """Refuse NaN and infinity (loadtxt reads "nan", "inf" and overflows into them)."""
    if np.isfinite(block).all():
        return
    r, c = (int(v) for v in np.argwhere(~np.isfinite(block))[0])
    i, j = lo + r, cols[c]
    raise DataError(_non_finite_message(block[r, c], table.row(i).split(table.delimiter)[j],
                                        f"{role} column {_column_label(table, j)}") + hint,
                    table.source, table.line(i), j + 1)


def _non_finite_message(value: float, text: str | None, where: str) -> str:
    """'NaN in ...' / 'infinite value in ...', or the float32 overflow it really is."""
    if np.isnan(value):
        return f"NaN in {where}"
    parsed = _parse_float(text) if text is not None else None
    if parsed is not None and np.isfinite(parsed):
        return f"value {text.strip()} is too large for float32 in {where}"
    return f"infinite value in {where}"


def _column_text(table: Table, j: int) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------


def _resolve_targets(table: Table, targets: list[str] | None) -> list[int]:
    """0-based column indices for the target names/indices given; default: the last column."""
    if not targets:
        return [table.n_columns - 1]
    found: list[int] = []
    for target in targets:
        j = _resolve_target(table, str(target).strip())
        if j in found:
            raise DataError(f"target column {_column_label(table, j)} is given twice",
                            table.source)
        found.append(j)
    return found


def _resolve_target(table: Table, target: str) -> int:
    """One target: a header name first (a column may be called "3"), then an index."""
    n = table.n_columns
    if table.header is not None and target in table.header:
        if table.header.count(target) > 1:
            raise DataError(f"column name '{target}' occurs more than once in the header; "
                            "give the target as a 0-based column index", table.source)
        return table.header.index(target)
    if _INT_RE.fullmatch(target):
        j = int(target)
        if not -n <= j < n:
            raise DataError(f"target column index {j} is out of range: the file has {n} "
                            f"columns (0..{n - 1}, or -1..-{n} from the end)", table.source)
        return j % n
    if table.header is None:
        raise DataError(f"no column named '{target}': the file has no header; give the target "
                        f"as a 0-based column index (0..{n - 1})", table.source)
    raise DataError(f"no column named '{target}'; the columns are: {_preview(table.header)}",
                    table.source)


def _csv_targets(table: Table, target_cols: list[int],
                 classes: list[str] | None) -> tuple[np.ndarray, list[str] | None]:
    """Y (n, t) float32 and the class names when the single target column holds text."""
    Y = np.empty((table.n_rows, len(target_cols)), dtype=np.float32)
    texts = [_column_text(table, j) for j in target_cols]
    for j, column in zip(target_cols, texts):
        empty = np.flatnonzero(column == "")
        if empty.size:
            i = int(empty[0])
            raise DataError(f"empty target cell (target column {_column_label(table, j)})",
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
    """Each label as a float64 (by _parse_float) and whether it is a number at all.

    Called on the distinct labels of a column, so each spelling is parsed once.
    """
    values = np.zeros(len(labels), dtype=np.float64)
    numeric = np.zeros(len(labels), dtype=bool)
    for k, label in enumerate(labels):
        value = _parse_float(str(label))
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
                        f"{_preview(list(classes), 20)}",
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
        raise DataError(f"cannot read {_shown(str(column[i]))} as a number (target column "
                        f"{_column_label(table, j)}); text class labels need a single "
                        "target column", table.source, table.line(i), j + 1)
    with np.errstate(over="ignore"):  # beyond float32 becomes inf, reported just below
        values = label_values.astype(np.float32)[inverse]
    if not np.isfinite(values).all():
        i = int(np.argmin(np.isfinite(values)))
        raise DataError(_non_finite_message(values[i], str(column[i]),
                                            f"target column {_column_label(table, j)}"),
                        table.source, table.line(i), j + 1)
    return values


# --------------------------------------------------------------------------------------------
# NPZ / NPY
# --------------------------------------------------------------------------------------------


def _read_npz(path: str, want_y: bool, finite: bool = True, hint: str = "") -> Table:
    """Arrays X (checked, float32) and y (as stored, if present and wanted) of an NPZ file."""
    with _open_binary(path) as f:
        _check_npz_sizes(f, path)
        try:
            archive = np.load(f, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - see _load_error
            raise _load_error(path, "NPZ", exc) from exc
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataError("not an NPZ archive (it holds a single array: name it .npy)", path)
        with archive:
            names = list(archive.files)
            if "X" not in names:
                raise DataError(f"NPZ file has no array 'X' (found: {', '.join(names) or 'none'})",
                                path)
            X = _load_member(archive, "X", path)
            y = _load_member(archive, "y", path) if want_y and "y" in names else None
    X = _checked_features(X, "array 'X'", path, finite, hint)
    return Table(source=path, kind="npz", n_columns=X.shape[1], X=X, y=y, array_names=names)


def _read_npy(path: str) -> Table:
    """The single feature array of an NPY file, checked and as float32."""
    X = _checked_features(_load_npy(path, mmap=False), "the array", path)
    return Table(source=path, kind="npy", n_columns=X.shape[1], X=X)


def _load_npy(path: str, mmap: bool) -> np.ndarray:
    """The array of an NPY file (memory-mapped when asked and possible), its claimed size
    checked against the file's before anything is allocated; never unpickles."""
    with _open_binary(path) as f:
        _check_npy_size(f, path)
        array = None
        if mmap:
            try:
                array = np.load(path, mmap_mode="r", allow_pickle=False)
            except Exception:  # noqa: BLE001 - e.g. an empty array cannot be mapped: read it
                array = None
        if array is None:
            try:
                array = np.load(f, allow_pickle=False)
            except Exception as exc:  # noqa: BLE001 - see _load_error
                raise _load_error(path, "NPY", exc) from exc
    if not isinstance(array, np.ndarray):
        array.close()
        raise DataError("not an NPY array (it is an archive: name it .npz)", path)
    return array


# zlib cannot shrink data by more than about 1032:1; a member claiming more is a lie.
_MAX_DEFLATE_RATIO = 1100


def _check_npz_sizes(f: typing.BinaryIO, path: str) -> None:
    """Refuse an NPZ member whose header claims more data than the member holds.

    np.load allocates the array its header describes before reading any data, so a crafted
    header (shape (10**12, 784)) would exhaust memory; this reads each member's header through
    zipfile and compares the claim with the member's size, before anything is allocated.
    Files that are not readable zip archives are left for np.load to report.
    """
    try:
        archive = zipfile.ZipFile(f)
    except Exception:  # noqa: BLE001 - BadZipFile, NotImplementedError (a damaged version
        f.seek(0)      # field), ...: not a readable zip here; np.load reports it
        return
    try:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = f"array '{info.filename[:-4]}' of the NPZ"
            if (info.compress_type != zipfile.ZIP_STORED
                    and info.file_size > info.compress_size * _MAX_DEFLATE_RATIO + 1024):
                raise DataError(f"{name} claims {info.file_size} bytes uncompressed from "
                                f"{info.compress_size} compressed: a damaged or crafted file",
                                path)
            try:
                with archive.open(info) as member:
                    claim = _npy_header_claim(member)
            except DataError:
                raise
            except Exception:  # noqa: BLE001 - unreadable here: np.load reports it
                continue
            if claim is not None:
                _check_claim(claim, info.file_size, name, path)
    finally:
        archive.close()
        f.seek(0)


def _check_npy_size(f: typing.BinaryIO, path: str) -> None:
    """Refuse an NPY file whose header claims more data than the file holds (see above)."""
    try:
        size = os.fstat(f.fileno()).st_size
        claim = _npy_header_claim(f)
    except Exception:  # noqa: BLE001 - unreadable here: np.load reports it
        claim = None
    f.seek(0)
    if claim is not None:
        _check_claim(claim, size, "NPY file", path)


def _npy_header_claim(f: typing.BinaryIO) -> tuple[tuple[int, ...], int, int] | None:
    """(shape, bytes of data claimed, header length) of an .npy stream, or None if it is not
    one. Python integers: a product of absurd dimensions cannot overflow."""
    fmt = np.lib.format
    start = f.tell()
    version = fmt.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = fmt.read_array_header_1_0(f)
    elif version in ((2, 0), (3, 0)):
        shape, _, dtype = fmt.read_array_header_2_0(f)
    else:
        return None
    count = 1
    for d in shape:
        count *= int(d)
    return tuple(int(d) for d in shape), count * dtype.itemsize, f.tell() - start


def _check_claim(claim: tuple[tuple[int, ...], int, int], size: int, name: str,
                 path: str) -> None:
    shape, wanted, header = claim
    if wanted > size - header:
        raise DataError(f"{name} claims shape {shape} ({wanted} bytes of data), but holds only "
                        f"{max(size - header, 0)} bytes: a damaged or crafted file", path)


def _load_member(archive: typing.Any, name: str, path: str) -> np.ndarray:
    """One array of an open NPZ archive."""
    try:
        return archive[name]
    except Exception as exc:  # noqa: BLE001 - see _load_error
        raise _load_error(path, f"array '{name}' of the NPZ", exc) from exc


def _load_error(path: str, what: str, exc: Exception) -> DataError:
    """A DataError for a NumPy file that does not load.

    np.load, zipfile and zlib raise a wide, undocumented range of exceptions (ValueError,
    OSError, EOFError, BadZipFile, zlib.error, ...) for damaged or foreign files; all of them
    mean the same thing to a user, so they are caught broadly.
    """
    reason = str(exc) or type(exc).__name__
    if "Object arrays" in reason:
        reason = "it holds Python objects, which are never unpickled; save numeric arrays"
    elif "pickle" in reason:
        # np.load falls back to pickle for anything that is neither a zip nor an .npy array.
        reason = "it is not a NumPy file"
    return DataError(f"cannot read the {what} file: {reason}", path)


def _checked_features(X: np.ndarray, what: str, path: str, finite: bool = True,
                      hint: str = "") -> np.ndarray:
    """A 2-D numeric array as C-contiguous float32 with every value finite (unless not
    ``finite``: then NaN and infinity are kept, for the caller to drop)."""
    if X.ndim != 2:
        raise DataError(f"{what} must be 2-D (rows x features), found shape {X.shape}", path)
    return _finite_float32(X, what, path, finite=finite, hint=hint)


def _finite_float32(A: np.ndarray, what: str, path: str, row_offset: int = 0,
                    finite: bool = True, hint: str = "") -> np.ndarray:
    """``A`` (numeric) as C-contiguous float32, refusing NaN/inf with their 0-based position
    (rows counted from ``row_offset``, for a block of a larger array)."""
    if A.dtype.kind not in "biuf":
        raise DataError(f"{what} must hold numbers, found dtype {A.dtype}", path)
    with np.errstate(over="ignore"):  # float64 beyond float32 range is reported below
        out = np.ascontiguousarray(A, dtype=np.float32)
    if finite and out.size and not np.isfinite(out).all():
        position = tuple(int(v) for v in np.argwhere(~np.isfinite(out))[0])
        at = (f"row {position[0] + row_offset}"
              + (f", column {position[1]}" if len(position) > 1 else ""))
        original = A[position]
        if np.isnan(original):
            message = f"NaN in {what} at {at} (0-based)"
        elif np.isfinite(original):
            message = f"value {original} is too large for float32 in {what} at {at} (0-based)"
        else:
            message = f"infinite value in {what} at {at} (0-based)"
        raise DataError(message + hint, path)
    return out


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
    Y = _finite_float32(y, "array 'y'", path)
    return Dataset(X=X, Y=Y, feature_names=_numbered("x", X.shape[1]),
                   target_names=_target_numbering(Y.shape[1]), target_columns=[],
                   classes=None, source=path, dropped=dropped)


# --------------------------------------------------------------------------------------------
# Feature column selection (predict)
# --------------------------------------------------------------------------------------------


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
                        f"{_preview(feature_names)} and it lacks {_preview(missing)}")
        else:
            message += (f"; the file has no header to find the model's columns "
                        f"{_preview(feature_names)} by name")
    if target_columns:
        message += (f"; with the model's target column(s) "
                    f"{', '.join(str(c) for c in target_columns)} (0-based) it would need "
                    f"{n_features + len(target_columns)}")
    return message


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _numbered(prefix: str, n: int) -> list[str]:
    """prefix0, prefix1, ..."""
    return [f"{prefix}{i}" for i in range(n)]


def _target_numbering(n: int) -> list[str]:
    """Target names of a file without a header: "y" for one, y0, y1, ... for several."""
    return ["y"] if n == 1 else _numbered("y", n)


def _preview(names: list[str], limit: int = _PREVIEW) -> str:
    """Up to ``limit`` names, then how many there are in all."""
    shown = ", ".join(names[:limit])
    return f"{shown}, ... ({len(names)} in all)" if len(names) > limit else shown
