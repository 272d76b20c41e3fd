"""Output files written whole or not at all: every file nncli writes (models, checkpoints,
predictions, ONNX graphs, pictures) goes to a temporary file in its folder and is renamed into
place, so a reader never sees half a file and a failed write leaves nothing behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Callable

from nncli.errors import UsageError


def check_writable(path: str | os.PathLike, what: str = "the model") -> None:
    """Fail now, not after training, when ``path`` cannot be written.

    The folder is probed by creating (and removing) a temporary file in it, the way the real
    write will: ``os.access`` alone says yes to root on a read-only mount.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"{path}: cannot write {what}: folder '{folder}' does not exist")
    if path.is_dir():
        raise UsageError(f"{path}: cannot write {what}: it is a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{path}: cannot write {what}: folder '{folder}' is not writable")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise UsageError(f"{path}: cannot write {what}: folder '{folder}' is not writable "
                         f"({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)


def write_atomically(path: str | os.PathLike, write: Callable[[IO], None],
                     text: bool = False) -> None:
    """Call ``write`` with a temporary file in ``path``'s folder (binary, or text with ``\\n``
    line ends), sync it and rename it to ``path``; on any failure remove it and re-raise."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with (os.fdopen(fd, "w", newline="") if text else os.fdopen(fd, "wb")) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
