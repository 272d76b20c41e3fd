"""The CSV tokeniser: a block of whole lines (bytes) into checked rows in the compact form of a
:class:`~nncli.data.table.Table`.

There is one: whole-file reading hands it the file as one block, the streaming reader
(``text.CsvReader``) a block of about a megabyte at a time. Here, and only here, bytes are
checked to be UTF-8 text, quotes are resolved, blank lines skipped, and every row checked to
have the file's number of columns. The messages about text that is not UTF-8 or not text at
all are written here too, for the reader that decodes other encodings (``text``) as well.
"""

from __future__ import annotations

import csv
import io
import re
import typing
from dataclasses import dataclass

import numpy as np

from nncli.data.table import Offsets, no_offsets
from nncli.errors import DataError

# Delimiters for rows re-joined after the csv module unquoted them: the file's separator unless
# a quoted cell holds it, else the first control character that occurs in no cell.
_JOIN_DELIMITERS = ("\x01", "\x02", "\x03", "\x04")


# Bytes examined per vectorised step when scanning a CSV for line ends and validating UTF-8:
# bounds the temporaries (a byte or two per byte of the window) to well under a megabyte.
_SCAN_BYTES = 1 << 18


# Bytes per step when counting commas and blanks per line: below 2**16 so that a uint16 count
# cannot overflow (see _per_line_sums).
_COUNT_BYTES = (1 << 16) - 1


_LF, _CR = ord("\n"), ord("\r")


# Bytes that text in no encoding holds: the C0 controls, save whitespace (tab, line ends,
# vertical tab, form feed, and 0x1c-0x1f, which str.isspace counts) and escape (ISO-2022 text
# uses it). A line that is not UTF-8 is text in another encoding unless it holds one of them.
_BINARY_BYTES = re.compile(rb"[\x00-\x08\x0e-\x1a]")
# Bytes that Windows-1252 reads as letters and punctuation (the euro sign, curly quotes, ...)
# where Latin-1 has control characters: a file with them is more likely Windows-1252.
_CP1252_BYTES = re.compile(rb"[\x80-\x9f]")


@dataclass
class Rows:
    """Rows in the compact form of a Table: row ``i`` is ``text[starts[i]:ends[i]]`` (UTF-8),
    its cells separated by ``delimiter``; ``numbers`` are their 1-based lines in the file."""

    text: bytes
    starts: Offsets
    ends: Offsets
    numbers: np.ndarray
    delimiter: str

    def __len__(self) -> int:
        return len(self.starts)

    def split(self, n: int) -> tuple["Rows", "Rows"]:
        """The first ``n`` rows and the rest, both over the same text."""
        return (Rows(self.text, self.starts[:n], self.ends[:n], self.numbers[:n], self.delimiter),
                Rows(self.text, self.starts[n:], self.ends[n:], self.numbers[n:], self.delimiter))


def width_error(expected: int, found: int, source: str, line: int) -> DataError:
    """A row of another number of columns than the file's first row."""
    return DataError(f"expected {expected} columns, found {found}", source, line)


def check_text(raw: bytes, lo: int, offset: int, source: str, line0: int = 0,
               line_lo: int = 0) -> None:
    """Refuse ``raw[lo:]`` (whole lines) unless it is UTF-8 text, giving the file offset of the
    first bad byte (``offset``: the file offset of ``raw[0]``) and, for text in another
    encoding, its line (``line0``: the file lines before ``raw[line_lo]``).

    Pure ASCII, the usual case, is recognised by one C call. Other text is decoded a window at
    a time (cut just after a '\n', which never occurs inside a UTF-8 sequence) and thrown
    away: the rows are decoded again, a chunk at a time, when they are parsed, so no decoded
    copy of the whole file ever exists.
    """
    nul = raw.find(b"\0", lo)
    if nul >= 0:
        raise _binary(offset + nul, source)
    if raw.isascii():
        return
    view = memoryview(raw)
    while lo < len(raw):
        hi = _window_end(raw, lo)
        try:
            str(view[lo:hi], "utf-8")
        except UnicodeDecodeError as exc:
            at = lo + exc.start
            line = line0 + raw.count(b"\n", line_lo, at) + 1
            raise _not_utf8(raw, at, offset, source, line) from exc
        lo = hi


def _binary(at: int, source: str) -> DataError:
    """A file that is not text: a NUL byte, or a control byte in a line that is not UTF-8, at
    file offset ``at``."""
    return DataError(f"not a text CSV file (binary data at byte {at})", source)


def _not_utf8(raw: bytes, at: int, offset: int, source: str, line: int) -> DataError:
    """``raw[at]`` (file offset ``offset + at``, on file line ``line``) is no part of UTF-8:
    the file is text in another encoding unless that line holds bytes that no text holds
    (the line only, so that the whole-file and the streaming reader agree). The hint names
    Windows-1252 when the text from that line on (in this block) has its punctuation."""
    start = raw.rfind(b"\n", 0, at) + 1
    end = raw.find(b"\n", at)
    end = len(raw) if end < 0 else end
    if _BINARY_BYTES.search(raw, start, end):
        return _binary(offset + at, source)
    codec = "cp1252" if _CP1252_BYTES.search(raw, start) else "latin-1"
    return DataError(f"not valid UTF-8 (byte 0x{raw[at]:02x} at byte {offset + at}); if the "
                     f"file is Latin-1 or Windows-1252, give --encoding {codec}", source, line)


def undecodable_error(codec: str, what: str, source: str, line: int) -> DataError:
    """Text read as ``codec`` (--encoding, or UTF-16 after its byte order mark) that it cannot
    decode; ``what`` says where (a byte and its file offset) or why."""
    return DataError(f"not valid {codec} ({what})", source, line)


def nul_character_error(codec: str, source: str, line: int) -> DataError:
    """Text read as ``codec`` that holds a NUL character: not a text file, or not ``codec``."""
    return DataError(f"not a text CSV file (a NUL character in the text read as {codec})",
                     source, line)


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


def tokenise(raw: bytes, lo: int, line0: int, n_columns: int, separator: str, source: str,
             final: bool) -> tuple[Rows, int, int]:
    """The rows of ``raw[lo:]``, checked text of whole lines whose first is file line
    ``line0 + 1``; ``n_columns`` is the file's column count (-1 before its first row).

    Returns the rows, how many bytes of ``raw`` they used, and the column count. They use all
    of it but in a block that is not the ``final`` one and ends inside a quoted cell: that
    cell's row is left for the next block, which will hold more of it.
    """
    if raw.find(b'"', lo) < 0:
        starts, ends, numbers, width = _split_plain(raw, lo, source, separator, line0,
                                                    n_columns)
        return Rows(raw, starts, ends, numbers, separator), len(raw), width
    return _split_quoted(raw, lo, line0, n_columns, separator, source, final)


def _split_plain(raw: bytes, base: int, source: str, separator: str = ",", line0: int = 0,
                 n_columns: int = -1) -> tuple[Offsets, Offsets, np.ndarray, int]:
    """Rows of a CSV without quotes (from byte ``base`` on, after a BOM): the start and end
    offset in ``raw`` of each non-blank line (without its '\n' and a '\r' before it), its
    1-based line number, and the number of columns (``n_columns`` when there is no row).

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
    numbers = np.flatnonzero(keep) + 1 + line0
    starts, ends, found = starts[keep], ends[keep], commas[keep] + 1
    if not len(found):
        return starts, ends, numbers, n_columns
    expected = int(found[0]) if n_columns < 0 else n_columns
    ragged = np.flatnonzero(found != expected)
    if ragged.size:
        i = int(ragged[0])
        raise width_error(expected, int(found[i]), source, int(numbers[i]))
    return starts, ends, numbers, expected


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


class _Lines:
    """The lines of a block for the csv module, noting whether it asked for one past the last:
    then the row it returns is cut short by the end of the block."""

    def __init__(self, lines: typing.Iterator[str]) -> None:
        self._lines = lines
        self.ended = False

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        try:
            return next(self._lines)
        except StopIteration:
            self.ended = True
            raise


def _split_quoted(raw: bytes, lo: int, line0: int, n_columns: int, separator: str,
                  source: str, final: bool) -> tuple[Rows, int, int]:
    """Rows of a block with quotes, parsed by the csv module and re-joined without quotes (see
    tokenise for the arguments and the result).

    This is the rare path, so it goes row by row through the csv module and holds the block's
    cells while it reads; only its result is compact. Re-joining lets the fast numeric path
    treat both kinds of file alike.
    """
    # rows end at '\n' only (a '\r' before it is fine), as in _split_plain: a bare '\r'
    # outside quotes is a CSV error, not a line break
    text = io.StringIO(str(memoryview(raw)[lo:], "utf-8"), newline="\n")
    # only a block that is not the last can cut a row short; the whole file goes at C speed
    lines = None if final else _Lines(text)
    reader = csv.reader(text if lines is None else lines, delimiter=separator)
    rows: list[list[str]] = []
    numbers: list[int] = []
    end, used = 0, len(raw)  # end: block lines consumed so far; a row starts on the next one
    try:
        for row in reader:
            start, end = end + 1, reader.line_num
            if lines is not None and lines.ended:  # a quoted cell goes on in the next block
                used = _line_start(raw, lo, start)
                break
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if n_columns < 0:
                n_columns = len(row)
            elif len(row) != n_columns:
                raise width_error(n_columns, len(row), source, line0 + start)
            rows.append([_one_line(cell) for cell in row])
            numbers.append(line0 + start)
    except csv.Error as exc:
        raise DataError(f"cannot parse CSV: {exc}", source, line0 + end + 1) from exc
    return pack_cells(rows, numbers, separator, source), used, n_columns


def _line_start(raw: bytes, lo: int, k: int) -> int:
    """The offset in ``raw`` of the ``k``-th (1-based) line from ``lo``."""
    return lo if k == 1 else int(_newlines(np.frombuffer(raw, dtype=np.uint8), lo)[k - 2]) + 1


def _one_line(cell: str) -> str:
    """A cell with its line breaks turned into spaces: the numeric parser takes one line per
    row, and such a cell can only be a text label, which is stripped anyway."""
    if "\n" in cell or "\r" in cell:
        return cell.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    return cell


def pack_cells(rows: list[list[str]], numbers: typing.Sequence[int], separator: str,
               source: str) -> Rows:
    """Rows given as cells (none holding a line break) in compact form, joined by the file's
    ``separator`` unless some cell holds it; then by a control character that no cell holds."""
    delimiter = separator
    if any(separator in cell for row in rows for cell in row):
        text = "".join("".join(row) for row in rows)
        delimiter = next((d for d in _JOIN_DELIMITERS if d not in text), "")
        if not delimiter:
            raise DataError("cannot split rows: quoted cells hold the delimiter and the file uses "
                            "every spare separator character", source)
    return _packed((delimiter.join(row) for row in rows), numbers, delimiter)


def _packed(lines: typing.Iterable[str], numbers: typing.Sequence[int], delimiter: str) -> Rows:
    """Rows given as strings (none holding a '\n') in compact form: joined by '\n' as UTF-8."""
    line_numbers = np.asarray(numbers, dtype=np.int64)
    if not len(line_numbers):
        return Rows(b"", no_offsets(), no_offsets(), line_numbers, delimiter)
    text = "\n".join(lines).encode("utf-8")
    breaks = _newlines(np.frombuffer(text, dtype=np.uint8))
    starts = np.concatenate((np.zeros(1, dtype=np.int64), breaks + 1))
    ends = np.append(breaks, np.int64(len(text)))
    return Rows(text, starts, ends, line_numbers, delimiter)


def joined(parts: list[Rows], separator: str, source: str) -> Rows:
    """Rows of several blocks as one (a block of rows that the streaming reader hands out may
    span what it tokenised in several reads). Rows of one delimiter are copied as bytes; rows
    of several (a block with quoted cells holding the separator) are joined anew."""
    parts = [part for part in parts if len(part)]
    if not parts:
        return Rows(b"", no_offsets(), no_offsets(), no_offsets(), separator)
    if len(parts) == 1:
        return parts[0]
    if any(part.delimiter != parts[0].delimiter for part in parts):
        cells = [row.split(part.delimiter) for part in parts
                 for row in (part.text[a:b].decode("utf-8")
                             for a, b in zip(part.starts.tolist(), part.ends.tolist()))]
        return pack_cells(cells, np.concatenate([part.numbers for part in parts]), separator,
                          source)
    texts, starts, ends, shift = [], [], [], 0
    for part in parts:
        a, b = int(part.starts[0]), int(part.ends[-1])
        texts.append(part.text[a:b])
        starts.append(part.starts - a + shift)
        ends.append(part.ends - a + shift)
        shift += b - a
    return Rows(b"".join(texts), np.concatenate(starts), np.concatenate(ends),
                np.concatenate([part.numbers for part in parts]), parts[0].delimiter)
