"""The Table: a data file read into memory but not yet turned into numbers, and how error
messages name its rows, columns and cells."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field

import numpy as np

STDIN_NAME = "<stdin>"


# Names listed in error messages before "... (N in all)".
PREVIEW = 10


Offsets = np.ndarray  # int64 byte offsets into a Table's text


def no_offsets() -> Offsets:
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
    For NPZ/NPY, ``X`` is already a checked float32 array and ``y`` is the NPZ's ``y`` as stored
    (``members``: other arrays of an NPZ that the reader asked for, as stored).
    """

    source: str
    kind: typing.Literal["csv", "npz", "npy"]
    n_columns: int
    header: list[str] | None = None
    text: bytes = b""
    starts: Offsets = field(default_factory=no_offsets)
    ends: Offsets = field(default_factory=no_offsets)
    line_numbers: np.ndarray = field(default_factory=no_offsets)
    delimiter: str = ","           # what separates the cells of ``text``
    separator: str = ","           # what separated them in the file (see text.DELIMITERS)
    X: np.ndarray | None = None
    y: np.ndarray | None = None
    array_names: list[str] = field(default_factory=list)
    members: dict[str, np.ndarray] = field(default_factory=dict)   # NPZ arrays asked for

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
        return list(self.header) if self.header is not None else numbered("x", self.n_columns)

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

    def subset(self, keep: np.ndarray) -> "Table":
        """A copy holding only the rows where the boolean mask ``keep`` is true, in file order
        (cross-validation's folds): a CSV's text is shared, an NPZ's arrays are copied."""
        part = dataclasses.replace(self)
        if self.kind == "csv":
            part.keep_rows(keep)
        else:
            assert self.X is not None
            part.X = self.X[keep]
            part.y = None if self.y is None else self.y[keep]
            # an array of another length stays as it is, for its reader to refuse
            part.members = {name: array[keep] if len(array) == len(keep) else array
                            for name, array in self.members.items()}
        return part


def numbered(prefix: str, n: int) -> list[str]:
    """prefix0, prefix1, ..."""
    return [f"{prefix}{i}" for i in range(n)]


def target_numbering(n: int) -> list[str]:
    """Target names of a file without a header: "y" for one, y0, y1, ... for several."""
    return ["y"] if n == 1 else numbered("y", n)


def preview(names: list[str], limit: int = PREVIEW) -> str:
    """Up to ``limit`` names, then how many there are in all."""
    shown = ", ".join(names[:limit])
    return f"{shown}, ... ({len(names)} in all)" if len(names) > limit else shown


def column_label(table: Table, j: int) -> str:
    """How error messages name column ``j``: 'name' from the header, else its 1-based number."""
    if table.header is not None and table.header[j]:
        return f"'{table.header[j]}'"
    return str(j + 1)


def shown(cell: str) -> str:
    """A cell as quoted in an error message, cut short if long."""
    cell = cell.strip()
    if not cell:
        return "an empty cell"
    return f"'{cell[:40]}...'" if len(cell) > 40 else f"'{cell}'"
