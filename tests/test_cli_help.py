"""Every command's help read whole in an 80-column terminal: the command list one line per
command, and no option's help cut short."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

COMMANDS = ["train", "eval", "predict", "gradcheck", "info", "plot", "cv", "sweep", "export"]


def _help(*argv: str) -> str:
    env = {**os.environ, "COLUMNS": "80", "TERMINAL_WIDTH": "80"}
    env.pop("NO_COLOR", None)
    proc = subprocess.run([sys.executable, "-m", "nncli", *argv, "--help"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_command_list_gives_each_command_one_line():
    text = _help()
    panel = text[text.index("Commands"):]
    lines = [line.strip("│ ").rstrip() for line in panel.splitlines()[1:]
             if line.startswith("│")]
    assert [line.split()[0] for line in lines] == COMMANDS, text


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_fits_80_columns_without_cutting_anything(command):
    text = _help(*([command] if command else []))
    assert "…" not in text, text
    assert max(len(line) for line in text.splitlines()) <= 80, text


def test_the_command_line_starts_without_numpy_or_numba():
    # every command pays for what importing nncli.cli loads; the kernels' libraries load only
    # in the commands that use them
    code = "import sys, nncli.cli; print('numpy' in sys.modules, 'numba' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]
