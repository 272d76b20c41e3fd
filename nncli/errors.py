"""The one exception hierarchy of nncli and the exit codes it maps to.

Library code raises these; only the CLI turns them into ``nncli: error: ...`` and an exit code.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130   # 128 + SIGINT
EXIT_TERMINATED = 143    # 128 + SIGTERM


class NncliError(Exception):
    """Base of every error a user can cause; its message is one line, shown as is."""

    exit_code = EXIT_USAGE


class UsageError(NncliError):
    """Options that contradict each other or an architecture that cannot be built."""


class ArchError(UsageError):
    """An architecture string that does not parse."""


class DataError(NncliError):
    """A data file that cannot be read as the data it should be.

    The location, where known, is part of the message: ``FILE:LINE:COLUMN: what``.
    """

    def __init__(self, message: str, path: str | None = None, line: int | None = None,
                 column: int | None = None) -> None:
        self.path, self.line, self.column = path, line, column
        where = ":".join(str(p) for p in (path, line, column) if p is not None)
        super().__init__(f"{where}: {message}" if where else message)


class ModelFileError(NncliError):
    """A model file that is missing, truncated, foreign or inconsistent."""


class DivergedError(NncliError):
    """Training produced a NaN or infinite loss or weight; the last finite weights are kept."""

    exit_code = EXIT_CHECK_FAILED


class Interrupted(NncliError):
    """SIGINT or SIGTERM asked a training run to stop; it stopped after the current chunk of
    mini-batches and (when run through ``train.train_and_save``) saved where it stood.

    The exit code is the shell's for that signal: 130 for SIGINT, 143 for SIGTERM.
    """

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class StopNow(KeyboardInterrupt):
    """A second SIGINT or SIGTERM: stop at once, writing nothing (atomic writes clean up)."""

    def __init__(self, signum: int) -> None:
        super().__init__()
        self.exit_code = 128 + signum
