"""Ray's output kept off stdout and off the terminal while a sweep runs.

Ray writes from places nncli does not call: its C++ core prints to file descriptor 2
(``logging.cc: Set ray log level ...``), the driver's error listener prints a dead worker's
message (``(raylet) A worker died or was killed ...``) to ``sys.stdout``, and its loggers hold
the ``sys.stderr`` of the moment Ray was imported. On stdout that breaks ``--json``; on the
terminal it lands in the middle of the live table, whose redraws then leave pieces behind. So
while Ray runs, descriptors 1 and 2 and ``sys.stdout`` point at a log file in the sweep's
folder, and nncli's own messages go to a copy of the real stderr.
"""

from __future__ import annotations

import io
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

STREAMS = (1, 2)   # the descriptors of stdout and stderr, which C++ code writes to directly


@contextmanager
def output_into(log: Path) -> Iterator[None]:
    """While inside, whatever this process writes to descriptors 1 and 2 or to ``sys.stdout``
    is appended to ``log``; ``sys.stderr``, when it is descriptor 2, becomes a copy of the
    real stderr, so nncli's messages and live table still reach the user."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = {fd: os.dup(fd) for fd in STREAMS}
    target = open(log, "a", buffering=1, encoding="utf-8", errors="replace")
    ours = _copy_of(sys.stderr, saved[2])
    before = sys.stdout, sys.stderr
    try:
        for fd in STREAMS:
            os.dup2(target.fileno(), fd)
        sys.stdout = target
        if ours is not None:
            sys.stderr = ours
        yield
    finally:
        for stream in (sys.stdout, sys.stderr, *before):
            try:
                stream.flush()
            except (OSError, ValueError):   # a stream closed meanwhile has nothing to keep
                pass
        sys.stdout, sys.stderr = before
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        if ours is not None:
            ours.close()
        target.close()


def _copy_of(stream, fd: int) -> io.TextIOWrapper | None:
    """A text stream on a duplicate of ``fd`` (the real stderr) set up as ``stream`` is, when
    ``stream`` writes to descriptor 2; None when it writes elsewhere (a test's capture), which
    the redirection does not touch."""
    try:
        if stream.fileno() != 2:
            return None
    except (AttributeError, OSError, ValueError):   # io.UnsupportedOperation is an OSError
        return None
    return open(os.dup(fd), "w", buffering=1, encoding=stream.encoding,
                errors=stream.errors or "backslashreplace")
