"""Reading text tables: bytes (a file, a .gz file, standard input, or a stream read a block at
a time) into the rows of a :class:`~nncli.data.table.Table`, with the delimiter and the header
detected.

One reader serves both ways of reading: :func:`parse_csv` hands :class:`CsvReader` the whole
file as its one chunk and takes all its rows as one block (the rows then stay the file's own
bytes); ``iter_features`` streams, a chunk of about a megabyte at a time, in blocks of rows.
The bytes become rows in ``tokeniser``.

Text is UTF-8 unless the file starts with a UTF-16 or UTF-32 byte order mark or the reader is
given an encoding (``--encoding``): such text is decoded and re-encoded as UTF-8 once, a chunk
at a time (:func:`utf8_chunks`), and read from there as a UTF-8 file would be. UTF-8 itself is
never decoded here.
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import csv
import gzip
import io
import itertools
import os
import sys
import typing
import zlib

from nncli.data.cells import parse_float
from nncli.data.table import STDIN_NAME, Table
from nncli.data.tokeniser import (Rows, check_text, joined, nul_character_error, tokenise,
                                  undecodable_error)
from nncli.errors import DataError

# How far below the first row header detection looks for a repeat of a text cell.
HEADER_LOOKAHEAD = 1000


# Bytes read per call by the streaming reader (iter_features).
_READ_BYTES = 1 << 20


# The delimiters detected, in order of preference when several read the first lines alike.
DELIMITERS = (",", ";", "\t", "|")
# Non-blank lines (the header and a few rows) that must agree on the delimiter, and the bytes
# at the start of the file they are looked for in.
_SNIFF_LINES = 10
_SNIFF_BYTES = 1 << 16


HeaderTest = typing.Callable[[list[str]], bool]


# Byte order marks that say a file is not UTF-8, and the codec that reads it (and skips the
# mark); UTF-32's first, as UTF-32-LE's mark starts with UTF-16-LE's.
_BOM_CODECS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
               (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# Names of the codec the reader reads without decoding.
_UTF8 = ("utf-8", "utf-8-sig")


def _cannot_read(exc: Exception, source: str) -> DataError:
    return DataError(f"cannot read: {getattr(exc, 'strerror', None) or exc}", source)


def _stdin_stream(stdin: typing.BinaryIO | None) -> typing.BinaryIO:
    """``stdin``, else the process's standard input as bytes."""
    stream = stdin if stdin is not None else getattr(sys.stdin, "buffer", None)
    if stream is None:  # e.g. pythonw, or a daemon with stdin closed
        raise DataError("there is no standard input to read", STDIN_NAME)
    return stream


def read_stdin(stdin: typing.BinaryIO | None) -> bytes:
    """All of standard input; CSV cannot be parsed in one pass while detecting the header."""
    stream = _stdin_stream(stdin)
    try:
        data = stream.read()
    except (OSError, ValueError) as exc:  # ValueError: the stream is closed
        raise _cannot_read(exc, STDIN_NAME) from exc
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
            raise _cannot_read(exc, path) from exc
    if not path.lower().endswith(".gz"):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"not a valid gzip file ({exc})", path) from exc


@contextlib.contextmanager
def csv_chunks(path: str,
               stdin: typing.BinaryIO | None) -> typing.Iterator[tuple[str, typing.Iterator[bytes]]]:
    """(source name, chunks of bytes) of ``path`` (``-``: standard input) for CsvReader; the
    file is closed on leaving. A .gz file is decompressed whole (in memory), not streamed."""
    if path == "-":
        yield STDIN_NAME, _chunks(_stdin_stream(stdin), STDIN_NAME)
        return
    with (io.BytesIO(read_bytes(path)) if path.lower().endswith(".gz")
          else open_binary(path)) as stream:
        yield path, _chunks(stream, path)


def _chunks(stream: typing.BinaryIO, source: str) -> typing.Iterator[bytes]:
    """The bytes of ``stream``, _READ_BYTES at most at a time."""
    # read1: what a pipe has now (at most a block) rather than waiting for a whole block
    read = getattr(stream, "read1", stream.read)
    while True:
        try:
            chunk = read(_READ_BYTES)
        except (OSError, ValueError) as exc:  # ValueError: the stream is closed
            raise _cannot_read(exc, source) from exc
        if not chunk:
            return
        yield chunk.encode("utf-8") if isinstance(chunk, str) else chunk  # a text stream


def parse_csv(raw: bytes, source: str, is_model_header: HeaderTest | None,
              separator: str | None = None, encoding: str | None = None) -> Table:
    """Split CSV bytes into checked rows and detect the header: the reader given the whole
    file, and all its rows as one block.

    ``separator``: the file's delimiter, or None to detect it (see detect_delimiter);
    ``encoding``: the codec of its text, or None for UTF-8 (or what a byte order mark says).
    A UTF-8 file without quotes keeps ``raw`` as its rows' text (see Table); only the first
    rows become strings here, for header detection.
    """
    return CsvReader.of_bytes(raw, source, separator, encoding).first_block(is_model_header,
                                                                            None)


def utf8_chunks(chunks: typing.Iterable[bytes], codec: str,
                source: str) -> typing.Iterator[bytes]:
    """``chunks`` of text in ``codec`` (a whole file), as UTF-8, a chunk for a chunk.

    A byte that does not decode, and a NUL character, are DataErrors naming the line and (for
    the byte) the file offset. A byte order mark that the codec leaves in the text is dropped.
    """
    decoder = codecs.getincrementaldecoder(codec)()
    fed, lines, first = 0, 0, True   # bytes fed to the decoder, lines decoded
    for chunk, final in itertools.chain(((c, False) for c in chunks), ((b"", True),)):
        state = decoder.getstate()
        try:
            text = decoder.decode(chunk, final)
        except UnicodeError as exc:
            raise _undecodable(exc, codec, state, chunk, fed, lines, source) from exc
        nul = text.find("\0")
        if nul >= 0:
            raise nul_character_error(codec, source, lines + text.count("\n", 0, nul) + 1)
        if first and text:
            text, first = text.removeprefix("\ufeff"), False
        fed += len(chunk)
        lines += text.count("\n")
        if text:
            # "replace": only a lone surrogate (from an escape codec) cannot be UTF-8
            yield text.encode("utf-8", "replace")


def _undecodable(exc: UnicodeError, codec: str, state: tuple[bytes, int], chunk: bytes,
                 fed: int, lines: int, source: str) -> DataError:
    """The DataError for ``exc``, raised decoding ``chunk`` (after ``fed`` bytes, decoded
    into ``lines`` lines) with a decoder in ``state`` (bytes it held back, and its flag)."""
    if not isinstance(exc, UnicodeDecodeError):  # no place: "UTF-16 stream does not start ..."
        return undecodable_error(codec, str(exc), source, lines + 1)
    held = len(state[0])   # the decoder saw held bytes + chunk; exc.start counts from there
    at = fed - held + exc.start
    # (no chunk: the final flush found the text ending inside a character)
    what = (f"byte 0x{exc.object[exc.start]:02x} at byte {at}"
            if chunk and exc.start < len(exc.object)
            else f"the text ends inside a character at byte {at}")
    # the line: the lines of what decoded before the bad byte, decoded again from the state
    decoder = codecs.getincrementaldecoder(codec)(errors="replace")
    try:
        decoder.setstate(state)
        before = decoder.decode(chunk[:max(0, exc.start - held)]).count("\n")
    except (UnicodeError, ValueError, TypeError):
        before = 0
    return undecodable_error(codec, what, source, lines + before + 1)


class CsvReader:
    """CSV bytes, given whole or as a stream of chunks, into blocks of checked rows.

    A byte order mark is skipped (or says the text is UTF-16 or UTF-32), text in another
    encoding is decoded to UTF-8 (``encoding``: a codec name, None for UTF-8), the delimiter
    detected and the header recognised once, at the start; each chunk is cut after its last
    '\n' (a '\n' never occurs inside a UTF-8 sequence), checked and tokenised (see
    ``tokeniser``), the rest waiting for the next chunk.
    """

    def __init__(self, chunks: typing.Iterator[bytes], source: str,
                 separator: str | None, encoding: str | None = None) -> None:
        self.source = source
        self.separator = separator   # None until detected
        self.encoding = encoding
        self.n_columns = -1          # until the first row
        self._chunks = chunks
        self._data = b""             # bytes read; those from _lo on are not tokenised yet
        self._lo = 0
        self._offset = 0             # the file offset of _data[0], for error messages
        self._checked = 0            # the file offset up to which the text is checked
        self._line = 0               # file lines before _data[_lo]
        self._done = False           # every chunk is in _data
        self._started = False
        self._rows: collections.deque[Rows] = collections.deque()  # not yet handed out
        self._buffered = 0           # rows in _rows

    @classmethod
    def of_bytes(cls, raw: bytes, source: str, separator: str | None,
                 encoding: str | None = None) -> "CsvReader":
        """A reader of a whole file already in memory: its one, final chunk."""
        reader = cls(iter(()), source, separator, encoding)
        reader._data, reader._done = raw, True
        return reader

    def first_block(self, is_model_header: HeaderTest | None, n_rows: int | None) -> Table:
        """A Table of the first ``n_rows`` rows (None: all of them), less the header if the
        first row is one (``is_model_header`` recognises one too); it has at least
        1 + HEADER_LOOKAHEAD rows to detect the header in, or the whole file."""
        rows = self.take(n_rows)
        if not len(rows):
            raise DataError("empty file", self.source)
        assert self.separator is not None
        table = Table(source=self.source, kind="csv", n_columns=self.n_columns,
                      separator=self.separator)
        _set_rows(table, rows)
        table.header = take_header(table.rows(0, 1 + HEADER_LOOKAHEAD), rows.delimiter,
                                   is_model_header)
        if table.header is not None:
            _set_rows(table, rows.split(1)[1])
            if not table.n_rows:
                raise DataError("no data rows (only a header)", self.source)
        return table

    def next_block(self, table: Table, n_rows: int) -> bool:
        """Put the next ``n_rows`` rows into ``table`` (False at the end of the file)."""
        table.set_rows(b"", table.starts[:0], table.ends[:0], table.line_numbers[:0])
        rows = self.take(n_rows)
        _set_rows(table, rows)
        return bool(len(rows))

    def take(self, n_rows: int | None) -> Rows:
        """The next ``n_rows`` rows (None: all the rest); fewer only at the end of the file."""
        while (n_rows is None or self._buffered < n_rows) and self._more():
            pass
        parts: list[Rows] = []
        got = 0
        while self._rows and (n_rows is None or got < n_rows):
            rows = self._rows.popleft()
            if n_rows is not None and got + len(rows) > n_rows:
                rows, rest = rows.split(n_rows - got)
                self._rows.appendleft(rest)
            parts.append(rows)
            got += len(rows)
        self._buffered -= got
        return joined(parts, self.separator or ",", self.source)

    def _start(self) -> None:
        """Skip a byte order mark, decode text that is not UTF-8, and detect the delimiter."""
        self._started = True
        self._fill(len(codecs.BOM_UTF32_LE))
        codec = self.encoding
        if codec is None:
            codec = next((c for bom, c in _BOM_CODECS if self._data.startswith(bom)), None)
        elif codecs.lookup(codec).name in _UTF8:
            codec = None
        if codec is not None:
            # from here on the reader's bytes are the UTF-8 copy, read as any UTF-8 file
            chunks = itertools.chain((self._data,), self._chunks)
            self._chunks = utf8_chunks(chunks, codec, self.source)
            self._data, self._done = b"", False
        self._fill(len(codecs.BOM_UTF8))
        if self._data.startswith(codecs.BOM_UTF8):
            self._lo = len(codecs.BOM_UTF8)
        if self.separator is None:
            self._fill(_SNIFF_BYTES + 1)
            self.separator = detect_delimiter(_first_lines(self._data, self._lo), self.source)

    def _more(self) -> bool:
        """Tokenise the next whole lines read into _rows; False when nothing is left."""
        if not self._started:
            self._start()
        need = 1
        while True:
            self._fill(need)
            data, lo = self._data, self._lo
            if lo == len(data) and self._done:
                return False
            cut = len(data) if self._done else data.rfind(b"\n", lo) + 1
            if cut > lo and self._tokenise(data if cut == len(data) else data[:cut]):
                return True
            # no whole line, or a quoted cell runs on: read as much again before trying again
            need = 2 * (len(data) - lo) + 1

    def _tokenise(self, block: bytes) -> bool:
        """Tokenise ``block`` (whole lines: _data from its start to a line end); False when
        it holds no whole row."""
        lo = self._lo
        check_text(block, max(lo, self._checked - self._offset), self._offset, self.source,
                   self._line, lo)
        self._checked = self._offset + len(block)
        assert self.separator is not None
        final = self._done and len(block) == len(self._data)
        rows, used, self.n_columns = tokenise(block, lo, self._line, self.n_columns,
                                              self.separator, self.source, final)
        if used == lo:
            return False
        if not final:  # (a count of the whole file's lines would be a pass for nothing)
            self._line += block.count(b"\n", lo, used)
        self._lo = used
        if len(rows):
            self._rows.append(rows)
            self._buffered += len(rows)
        return True

    def _fill(self, n: int) -> None:
        """Read chunks until ``n`` bytes wait from _lo on, or the input ends."""
        while not self._done and len(self._data) - self._lo < n:
            chunk = next(self._chunks, b"")
            if not chunk:
                self._done = True
                return
            self._offset += self._lo
            self._data = self._data[self._lo:] + chunk
            self._lo = 0


def _set_rows(table: Table, rows: Rows) -> None:
    table.set_rows(rows.text, rows.starts, rows.ends, rows.numbers)
    table.delimiter = rows.delimiter


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
    head = raw[base:base + _SNIFF_BYTES]
    cut = head.rfind(b"\n") if len(raw) - base > len(head) else len(head)
    text = head[:cut if cut > 0 else len(head)].decode("utf-8", errors="replace")
    return _sniff_sample(text.split("\n"))


def _sniff_sample(lines: typing.Iterable[str]) -> list[str]:
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


