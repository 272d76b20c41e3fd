"""The one exception hierarchy of nncli and the exit codes it maps to.

Library code raises these; only the CLI turns them into ``nncli: error: ...`` and an exit code
(``nncli.cli.app.main``, from each class's ``exit_code``). What an error carries besides its
message is declared on its class: a data error's place, a divergence's epoch, batch and hint,
an interruption's signal, the file a stopped run was saved to.
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130   # 128 + SIGINT
EXIT_TERMINATED = 143    # 128 + SIGTERM


class NncliError(Exception):
    """Base of every error a user can cause; its message is one line, shown as is.

    ``reported``: the command has told the user already (only the exit code is left to give).
    ``hard_exit``: a library thread is stuck, so the process must end without waiting for it.
    """

    exit_code = EXIT_USAGE
    reported = False
    hard_exit = False


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


class ExportError(UsageError):
    """A model that cannot be exported, an opset out of range, or onnx missing."""


class JoinTimeout(UsageError):
    """No Ray cluster answered in time: Ray's connecting thread is still stuck, so the process
    ends at once."""

    hard_exit = True


class CheckFailed(NncliError):
    """A check (gradcheck) failed; the command has shown what failed."""

    exit_code = EXIT_CHECK_FAILED
    reported = True


class DivergedError(NncliError):
    """Training produced a NaN or infinite loss or weight; the last finite weights are kept.

    ``what`` says where (``epoch``, ``batch``: the first batch, or a range ``"3-5"``), ``hint``
    what to try; ``path`` is the file the stopped run was written to, once it is.
    """

    exit_code = EXIT_CHECK_FAILED

    def __init__(self, what: str, epoch: int, batch: str, hint: str = "",
                 path: Path | None = None) -> None:
        super().__init__(what)
        self.what, self.epoch, self.batch, self.hint, self.path = what, epoch, batch, hint, path

    def __reduce__(self):   # pickled whole (a Ray trial's error crosses processes)
        return type(self), (self.what, self.epoch, self.batch, self.hint, self.path)

    def __str__(self) -> str:
        saved = (f"; wrote the last finite weights, with the optimizer state, to {self.path}"
                 if self.path is not None else "")
        return f"{self.what}{saved}{self.hint}"


class Interrupted(NncliError):
    """SIGINT or SIGTERM (``signum``) asked a run to stop; it stopped after the current chunk of
    mini-batches and (when run with a FileSink) saved where it stood, to ``path``. ``resume``
    is the command that continues it, where the command line knows it.

    The exit code is the shell's for that signal: 130 for SIGINT, 143 for SIGTERM.
    """

    def __init__(self, message: str, signum: int, path: Path | None = None,
                 resume: str | None = None) -> None:
        super().__init__(message)
        self.message, self.signum, self.path, self.resume = message, signum, path, resume
        self.exit_code = 128 + signum

    def __reduce__(self):
        return type(self), (self.message, self.signum, self.path, self.resume)

    def __str__(self) -> str:
        saved = (f"; wrote the weights as they stand, with the optimizer state, to {self.path}"
                 if self.path is not None else "")
        resume = f"; resume with: {self.resume}" if self.resume else ""
        return f"{self.message}{saved}{resume}"


class StopNow(KeyboardInterrupt):
    """A second SIGINT or SIGTERM: stop at once, writing nothing (atomic writes clean up)."""

    def __init__(self, signum: int) -> None:
        super().__init__()
        self.exit_code = 128 + signum
