"""A command run on a pseudo-terminal, and the screen a user is left with: for tests of what
nncli draws live (Rich's Live tables), which only a terminal shows."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time

# What Rich's Live writes: text, CR, LF, backspace, CSI sequences (cursor up "A", erase in line
# "K", colours "m", cursor show/hide "?25h/l"), and OSC titles; other escapes are skipped.
TOKENS = re.compile(r"\x1b\[([?0-9;]*)([A-Za-z])|\x1b\][^\x07]*\x07|\x1b.|[\r\n\b]|[^\x1b\r\n\b]")


def run_on_terminal(argv: list[str], env: dict, columns: int = 120, rows: int = 50,
                    timeout: float = 180) -> tuple[int, str]:
    """(exit code, every byte written, decoded) of ``argv`` with stdin, stdout and stderr on a
    pseudo-terminal of ``columns`` x ``rows``."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    proc = subprocess.Popen(argv, env=env, stdin=slave, stdout=slave, stderr=slave,
                            close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:           # EIO: every holder of the terminal closed it
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            elif proc.poll() is not None:
                break
        else:
            raise TimeoutError(f"{argv} still running after {timeout} s")
        return proc.wait(timeout=30), b"".join(chunks).decode("utf-8", "replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def screen(text: str, columns: int = 120, rows: int = 50) -> list[str]:
    """The lines a terminal of ``columns`` x ``rows`` shows (scrollback included) after
    ``text``: the subset of VT100 that Rich's Live uses, with auto-wrap at the last column
    and a cursor that cannot move up past the top of the screen."""
    lines: list[list[str]] = [[]]
    row = col = 0
    for m in TOKENS.finditer(text):
        token, final = m.group(0), m.group(2)
        if token == "\r":
            col = 0
        elif token == "\n":
            row += 1
        elif token == "\b":
            col = max(col - 1, 0)
        elif final == "A":
            row = max(row - int(m.group(1) or 1), len(lines) - rows, 0)
        elif final == "K":
            lines[row] = [] if m.group(1) == "2" else lines[row][:col]
        elif not token.startswith("\x1b"):
            if col >= columns:
                row, col = row + 1, 0
            while row >= len(lines):
                lines.append([])
            line = lines[row]
            line.extend(" " * (col + 1 - len(line)))
            line[col] = token
            col += 1
        while row >= len(lines):
            lines.append([])
    return ["".join(line).rstrip() for line in lines]
