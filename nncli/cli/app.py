"""The Typer app and what every command shares: the option enums, the stderr console ``err``,
``_say`` and ``_fail``, the helpers several commands use, and ``main``, the one place that turns
errors into one stderr line and an exit code. The commands register themselves on ``app`` in
their own modules (see ``nncli.cli``)."""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

try:  # newer typer vendors click; older ones use the click package
    from typer._click.exceptions import ClickException
    from typer._click.exceptions import UsageError as ClickUsageError
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException
    from click.exceptions import UsageError as ClickUsageError

from nncli import __version__
from nncli.errors import (EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, EXIT_USAGE, NncliError,
                          UsageError)

app = typer.Typer(
    name="nncli",
    help="Train small dense and 1-D convolutional neural networks on the CPU from a one-line architecture string.",
    epilog="Example: nncli train datasets/digits.csv --arch 25relu-15relu-10linear --loss "
           "sparse_cce --logits --epochs 40 --validation-split 0.2",
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
err = Console(stderr=True, highlight=False)


class Output(str, Enum):
    proba = "proba"
    klass = "class"
    logits = "logits"


class Optim(str, Enum):
    adam = "adam"
    sgd = "sgd"


class Monitor(str, Enum):
    val_loss = "val_loss"
    loss = "loss"
    val_accuracy = "val_accuracy"
    accuracy = "accuracy"


class Missing(str, Enum):
    mean = "mean"
    error = "error"
    drop = "drop"


class Shell(str, Enum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nncli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of errors."),
) -> None:
    """Train small dense and 1-D convolutional neural networks on the CPU from a one-line architecture string."""


# --------------------------------------------------------------------------- helpers

def _say(message: str) -> None:
    """A message for the user on stderr (not progress: shown even with --quiet)."""
    if message:
        print(f"nncli: {message}", file=sys.stderr, flush=True)


def _value(option):
    """An enum option's value (typer hands enums, a sweep's grid hands strings)."""
    return option.value if isinstance(option, Enum) else option


def _delimiter(text: Optional[str]) -> Optional[str]:
    """--delimiter as a character: 'tab' (or a typed \\t) means a tab."""
    if text is None:
        return None
    text = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}.get(
        text.lower(), text)
    if len(text) != 1 or text in "\"\n\r":
        raise UsageError(f"--delimiter must be one character (or 'tab'), received {text!r}")
    return text


def _prepare_numba(threads: Optional[int] = None) -> None:
    """Get Numba ready before nncli's kernels are first imported (see
    ``nncli.kernel_cache.prepare_numba``); its one note goes to stderr."""
    from nncli import kernel_cache

    kernel_cache.prepare_numba(threads, _say)


def _show_bar(quiet: bool) -> bool:
    return not quiet and err.is_terminal


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _model_targets(m) -> tuple[list[str], list[int]] | None:
    """The model's target names and columns, to find its targets in a file."""
    if m.target_columns:
        return list(m.target_names or []), list(m.target_columns)
    return None


def _write_atomically(path: Path, write) -> None:
    from nncli.files import write_atomically

    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"{path}: folder '{folder}' does not exist")
    write_atomically(path, write, text=True)


# --------------------------------------------------------------------------- main

_ARGV: list[str] = []   # the arguments of the running command, for the resume hint (set by main, read by train)


def main(argv: list[str] | None = None) -> int:
    """The ``nncli`` console script: run a command, map errors to one line and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv) or ["--help"]
    _ARGV[:] = args  # in place: the train command reads it through its own import
    if "_NNCLI_COMPLETE" in os.environ:
        # A shell is asking for completions: register typer's shell classes first.
        from typer.completion import completion_init

        completion_init()
    debug = "--debug" in args or os.environ.get("NNCLI_DEBUG") == "1"
    try:
        result = app(args=args, prog_name="nncli", standalone_mode=False)
    except NncliError as e:
        if debug:
            raise
        _fail(str(e))
        if getattr(e, "hard_exit", False):  # a library thread is stuck (see JoinTimeout)
            sys.stdout.flush()
            os._exit(e.exit_code)
        return e.exit_code
    except ClickException as e:
        if debug:
            raise
        ctx = getattr(e, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        _fail(f"{e.format_message()}{hint}")
        return EXIT_USAGE if isinstance(e, ClickUsageError) else e.exit_code
    except KeyboardInterrupt as e:
        # Ctrl-C outside training, or a second Ctrl-C/SIGTERM during it (StopNow)
        result = getattr(e, "exit_code", EXIT_INTERRUPTED)
    except typer.Abort:
        result = EXIT_INTERRUPTED
    if result in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        _fail("interrupted")
    return result if isinstance(result, int) else EXIT_OK


def _fail(message: str) -> None:
    print(f"nncli: error: {message}", file=sys.stderr, flush=True)
