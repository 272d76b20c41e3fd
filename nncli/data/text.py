"""Reading text tables: bytes (a file, a .gz file, standard input, or a stream read a block at
a time) into the rows of a :class:`~nncli.data.table.Table`, with encoding checks, quoting,
blank lines, ragged rows and header detection."""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import itertools
import os
import sys
import typing
import zlib

import numpy as np

from nncli.data.cells import parse_float
from nncli.data.table import STDIN_NAME, Offsets, Table, no_offsets
from nncli.errors import DataError

# How far below the first row header detection looks for a repeat of a text cell.
HEADER_LOOKAHEAD = 1000


# Bytes read per call by the streaming reader (iter_features).
_READ_BYTES = 1 << 20


# Delimiters for rows re-joined after the csv module unquoted them: ',' unless a quoted cell
# holds a comma, else the first control character that occurs nowhere in the text.
_JOIN_DELIMITERS = ("\x01", "\x02", "\x03", "\x04")
# The delimiters detected, in order of preference when several read the first lines alike.
DELIMITERS = (",", ";", "\t", "|")
# Non-blank lines (the header and a few rows) that must agree on the delimiter.
_SNIFF_LINES = 10


# Bytes examined per vectorised step when scanning a CSV for line ends and validating UTF-8:
# bounds the temporaries (a byte or two per byte of the window) to well under a megabyte.
_SCAN_BYTES = 1 << 18


# Bytes per step when counting commas and blanks per line: below 2**16 so that a uint16 count
# cannot overflow (see _per_line_sums).
_COUNT_BYTES = (1 << 16) - 1


_LF, _CR = ord("\n"), ord("\r")


HeaderTest = typing.Callable[[list[str]], bool]


def read_stdin(stdin: typing.BinaryIO | None) -> bytes:
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


def open_binary(path: str) -> typing.BinaryIO:
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


def read_bytes(path: str) -> bytes:
    """The whole file; CSV is parsed from memory. A name ending in .gz is gunzipped."""
    with open_binary(path) as f:
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


def parse_csv(raw: bytes, source: str, is_model_header: HeaderTest | None,
              separator: str | None = None) -> Table:
    """Split CSV bytes into checked rows and detect the header.

    ``separator``: the file's delimiter, or None to detect it (see detect_delimiter).
    A file without quotes keeps ``raw`` as its rows' text (see Table); only the first rows
    become strings here, for header detection.
    """
    base = _check_text(raw, source)
    if separator is None:
        separator = detect_delimiter(_first_lines(raw, base), source)
    if b'"' in raw:
        text, starts, ends, numbers, delimiter, n_columns = _split_quoted(
            str(memoryview(raw)[base:], "utf-8"), source, separator)
    else:
        text, delimiter = raw, separator
        starts, ends, numbers, n_columns = _split_plain(raw, base, source, separator)
    table = Table(source=source, kind="csv", n_columns=n_columns, delimiter=delimiter,
                  separator=separator)
    table.set_rows(text, starts, ends, numbers)
    if not table.n_rows:
        raise DataError("empty file", source)
    table.header = take_header(table.rows(0, 1 + HEADER_LOOKAHEAD), delimiter,
                                is_model_header)
    if table.header is not None:
        table.set_rows(text, starts[1:], ends[1:], numbers[1:])
        if not table.n_rows:
            raise DataError("no data rows (only a header)", source)
    return table


def detect_delimiter(lines: list[str], source: str) -> str:
    """The delimiter of a text table from its first non-blank lines: among DELIMITERS, the one
    that splits every line into the same number of fields (quotes respected), the most fields
    winning and the order of DELIMITERS breaking ties; ',' when none does. A name ending in
    .tsv (or .tsv.gz) means tab."""
    name = source.lower().removesuffix(".gz")
    if name.endswith(".tsv"):
        return "\t"
    best, width = ",", 1
    for d in DELIMITERS:
        try:
            widths = {len(row) for row in csv.reader(lines, delimiter=d)}
        except csv.Error:
            continue
        if len(widths) == 1 and (w := widths.pop()) > width:
            best, width = d, w
    return best


def _first_lines(raw: bytes, base: int) -> list[str]:
    """The first _SNIFF_LINES non-blank lines of a file's bytes (a short prefix decoded)."""
    head = raw[base:base + (1 << 16)]
    cut = head.rfind(b"\n") if len(raw) - base > len(head) else len(head)
    text = head[:cut if cut > 0 else len(head)].decode("utf-8", errors="replace")
    return sniff_sample(text.split("\n"))


def sniff_sample(lines: typing.Iterable[str]) -> list[str]:
    """The first _SNIFF_LINES non-blank lines (line ends stripped) for detect_delimiter."""
    out = []
    for line in lines:
        line = line.rstrip("\r")
        if line.strip():
            out.append(line)
            if len(out) == _SNIFF_LINES:
                break
    return out


def take_header(lines: list[str], delimiter: str,
                 is_model_header: HeaderTest | None) -> list[str] | None:
    """The first row's cells when it is a header (see the module docstring), else None."""
    first = [cell.strip() for cell in lines[0].split(delimiter)]
    following = lines[1:1 + HEADER_LOOKAHEAD]
    if ((is_model_header is not None and is_model_header(first))
            or _is_header(first, following, delimiter)):
        return first
    return None


def _split_plain(raw: bytes, base: int, source: str,
                 separator: str = ",") -> tuple[Offsets, Offsets, np.ndarray, int]:
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
    code = ord(separator)
    commas = _per_line_sums(buf, starts, lambda window: window == code)
    # a separator other than tab is not whitespace: only a file with a line without one can
    # have blank lines
    keep = (~_blank_lines(raw, buf, starts, ends) if (commas == 0).any() or separator == "\t"
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
    return np.concatenate(parts).astype(np.int64, copy=False) if parts else no_offsets()


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


def packed_rows(lines: typing.Iterable[str],
                 numbers: typing.Sequence[int]) -> tuple[bytes, Offsets, Offsets, np.ndarray]:
    """Rows given as strings (none holding a '\n') in the compact form of a Table: the rows
    joined by '\n' as UTF-8, each row's start and end offset in it, and the line numbers."""
    line_numbers = np.asarray(numbers, dtype=np.int64)
    if not len(line_numbers):
        return b"", no_offsets(), no_offsets(), line_numbers
    text = "\n".join(lines).encode("utf-8")
    breaks = _newlines(np.frombuffer(text, dtype=np.uint8))
    starts = np.concatenate((np.zeros(1, dtype=np.int64), breaks + 1))
    ends = np.append(breaks, np.int64(len(text)))
    return text, starts, ends, line_numbers


def _split_quoted(text: str, source: str,
                  separator: str = ",") -> tuple[bytes, Offsets, Offsets, np.ndarray, str, int]:
    """Rows of a CSV with quotes, parsed by the csv module and re-joined without quotes, in
    the compact form of a Table (see packed_rows), with the delimiter and the column count.

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
    reader = csv.reader(io.StringIO(text, newline="\n"), delimiter=separator)
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
    delimiter = _join_delimiter(text, rows, source, separator)
    packed = packed_rows((delimiter.join(row) for row in rows), numbers)
    return (*packed, delimiter, expected)


def _join_delimiter(text: str, rows: list[list[str]], source: str, separator: str = ",") -> str:
    """The file's separator unless some cell holds it; then a control character that occurs
    nowhere."""
    if not any(separator in cell for row in rows for cell in row):
        return separator
    for delimiter in _JOIN_DELIMITERS:
        if delimiter not in text:
            return delimiter
    raise DataError("cannot split rows: quoted cells hold the delimiter and the file uses every spare "
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
        if parse_float(cell) is not None:
            continue
        below = [parts[j].strip() for parts in (line.split(delimiter, j + 1) for line in following)
                 if j < len(parts)]
        if below and parse_float(below[0]) is not None:
            return True
        if cell not in below:
            return True
    return False


def text_lines(stream: typing.BinaryIO, source: str) -> typing.Iterator[str]:
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


def csv_rows(lines: typing.Iterator[str], source: str,
             separator: str = ",") -> typing.Iterator[tuple[int, CsvRow]]:
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
        reader = csv.reader(itertools.chain([line], counted), delimiter=separator)
        try:
            row = next(reader)
        except csv.Error as exc:
            raise DataError(f"cannot parse CSV: {exc}", source, counted.number) from exc
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        yield number, [_one_line(cell) for cell in row]


def row_width(row: CsvRow, separator: str = ",") -> int:
    return row.count(separator) + 1 if isinstance(row, str) else len(row)


def block_lines(rows: list[tuple[int, CsvRow]], n_columns: int, source: str,
                separator: str = ",") -> tuple[list[str], list[int], str]:
    """Rows of one block as lines joined by one delimiter, their line numbers, the delimiter.

    The file's separator unless a quoted cell holds one; then a control character found
    nowhere in the block. A row of another width than the first row of the file is an error
    at its line.
    """
    quoted = False
    for number, row in rows:
        width = row_width(row, separator)
        if width != n_columns:
            raise DataError(f"expected {n_columns} columns, found {width}", source, number)
        quoted = quoted or not isinstance(row, str)
    numbers = [number for number, _ in rows]
    if not quoted:
        return [typing.cast(str, row) for _, row in rows], numbers, separator
    cells = [row if isinstance(row, list) else row.split(separator) for _, row in rows]
    delimiter = separator
    if any(separator in cell for row in cells for cell in row):
        text = "".join("".join(row) for row in cells)
        delimiter = next((d for d in _JOIN_DELIMITERS if d not in text), "")
        if not delimiter:
            raise DataError("cannot split rows: quoted cells hold the delimiter and the file uses "
                            "every spare separator character", source)
    return [delimiter.join(row) for row in cells], numbers, delimiter


def next_block(table: Table, rows: typing.Iterator[tuple[int, CsvRow]], step: int,
                source: str) -> bool:
    """Put the next ``step`` rows of the stream into ``table`` (False at the end).

    A function of its own so that the block's row strings are gone before it is parsed: only
    the packed rows stay, and the parser makes strings again a chunk at a time.
    """
    table.set_rows(b"", no_offsets(), no_offsets(), no_offsets())
    block = list(itertools.islice(rows, step))
    if not block:
        return False
    lines, numbers, table.delimiter = block_lines(block, table.n_columns, source,
                                                  table.separator)
    del block
    table.set_rows(*packed_rows(lines, numbers))
    return True
