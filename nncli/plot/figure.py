"""What every figure of ``nncli plot`` shares: the output format read from the suffix, the
check for matplotlib, a bare ``Figure`` with the same settings, a grid of panels, the colours,
and the atomic write.

Figures are drawn on a bare ``matplotlib.figure.Figure``, never through pyplot, so no GUI
backend is chosen and the caller's global backend is left as it is (headless by construction).
matplotlib is imported inside the functions only, so importing this module loads nothing.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from nncli.errors import UsageError
from nncli.files import write_atomically

# File suffix -> matplotlib's format name.
FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
DPI = 100
MAX_COLUMNS = 3             # panels per row
INSTALL_HINT = "nncli plot needs matplotlib: pip install 'nncli[plot]'"
# A fixed SVG id salt and text kept as text: the same drawing gives the same file, and tests
# read the labels from it.
_RC = {"svg.hashsalt": "nncli", "svg.fonttype": "none"}


def require_matplotlib() -> None:
    """Fail with the install hint when the ``plot`` extra is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(INSTALL_HINT) from None


def output_format(path: str | os.PathLike) -> str:
    """The figure format the suffix of ``path`` asks for: png, svg or pdf."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"{path}: cannot tell the figure format from the suffix: expected "
                         f"{', '.join(FORMATS)}, received '{suffix or '(none)'}'")
    return FORMATS[suffix]


def check_output(path: str | os.PathLike) -> str:
    """Everything that can fail before drawing: matplotlib, the suffix, a writable folder.
    Returns the format."""
    from nncli.files import check_writable

    fmt = output_format(path)
    require_matplotlib()
    check_writable(path, "the figure")
    return fmt


@contextmanager
def settings() -> Iterator[None]:
    """matplotlib's settings for drawing and saving a figure of nncli's."""
    from matplotlib import rc_context

    with rc_context(_RC):
        yield


def grid(panels: int) -> tuple[int, int]:
    """(rows, columns) of a grid holding ``panels`` panels, at most MAX_COLUMNS a row."""
    ncols = min(panels, MAX_COLUMNS)
    return math.ceil(panels / ncols), ncols


def colours() -> list[str]:
    """The colour cycle, one colour per model (or class) in turn."""
    from matplotlib import rcParams

    return [c["color"] for c in rcParams["axes.prop_cycle"]]


def colour(i: int) -> str:
    """The ``i``-th colour of the cycle, round again past its end."""
    cycle = colours()
    return cycle[i % len(cycle)]


def save_atomically(fig, path: Path, fmt: str, dpi: int = DPI) -> None:
    """Write ``fig`` to ``path`` in ``fmt``, whole or not at all."""
    # No dates in SVG and PDF, so the same drawing gives the same file.
    metadata = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(fmt)
    write_atomically(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi, metadata=metadata))
