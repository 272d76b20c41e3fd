"""README "Quick start" and .ci/run say the same thing (issue 18): CI runs the README's two
commands, in the README's order, in a virtual environment of its own."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def quick_start_commands() -> list[str]:
    """The lines of the code blocks in README "Quick start"."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    blocks = section.split("```")[1::2]
    return [line for block in blocks for line in block.strip().splitlines()]


def test_ci_runs_the_readmes_two_commands_in_order_in_a_new_venv():
    commands = quick_start_commands()
    assert len(commands) == 2 and commands[0].startswith("pip install . && nncli train ")
    script = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert [line for line in script if line in commands] == commands
    venv = next(i for i, line in enumerate(script) if " -m venv " in line)
    activate = next(i for i, line in enumerate(script) if line.startswith(". ")
                    and line.endswith('/bin/activate"'))
    assert venv < activate < script.index(commands[0])
