"""The hidden ``nncli completions`` command: the shell completion scripts in completions/."""

from __future__ import annotations

import typer

from nncli.cli.app import Shell, app


@app.command(hidden=True)
def completions(shell: Shell) -> None:
    """Print the completion script for SHELL (the files in completions/ are made by this)."""
    typer.echo(completion_script(shell.value))


def completion_script(shell: str) -> str:
    """The shell completion script of nncli for bash, zsh or fish."""
    from typer._completion_shared import get_completion_script

    return get_completion_script(prog_name="nncli", complete_var="_NNCLI_COMPLETE", shell=shell)
