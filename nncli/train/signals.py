"""Stopping a run from outside: the first SIGINT or SIGTERM asks ``fit`` to stop after its
current chunk (``interruptible`` yields the flag it asks), a second one stops at once."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

from nncli.errors import StopNow


class StopFlag:
    """Set by the first SIGINT/SIGTERM; ``fit`` asks it after every chunk."""

    def __init__(self) -> None:
        self.signum = 0

    def __call__(self) -> int:
        return self.signum


@contextmanager
def interruptible() -> Iterator[StopFlag]:
    """While inside: the first SIGINT or SIGTERM sets the flag yielded (fit stops after its
    current chunk), a second one raises ``StopNow`` (a KeyboardInterrupt) at once. The previous
    handlers come back on exit. Outside the main thread signals cannot be caught: the flag is
    never set and the usual handlers apply."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    signals = (signal.SIGINT, signal.SIGTERM)

    def again(signum, frame):
        raise StopNow(signum)

    def first(signum, frame):
        flag.signum = signum
        for s in signals:
            signal.signal(s, again)

    before = {s: signal.getsignal(s) for s in signals}
    for s in signals:
        signal.signal(s, first)
    try:
        yield flag
    finally:
        for s, handler in before.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
