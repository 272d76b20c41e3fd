"""The Typer app and what every command shares: ``command`` (registers one), the stderr console
``err``, ``say``/``tell`` (the one way to print a message), the helpers several commands use,
and ``main``, the one place that turns errors into one stderr line and an exit code. The
commands register themselves on ``app`` in their own modules (see ``nncli.cli``)."""

from __future__ import annotations

import inspect
import os
import sys
from contextlib import nullcontext
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Callable, ContextManager, Optional

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


def command(name: str | None = None, *, summary: str, epilog: str,
            **settings) -> Callable[[Callable], Callable]:
    """Register a command on ``app``: ``summary`` is its line in ``nncli --help`` (one line at 80
    columns), ``epilog`` its example, its docstring its help, each paragraph one line so that
    the help wraps at the terminal's width, not the source's."""

    def decorate(func: Callable) -> Callable:
        paragraphs = (inspect.getdoc(func) or "").split("\n\n")
        text = "\n\n".join(" ".join(p.split()) for p in paragraphs)
        return app.command(name, help=text, short_help=summary, epilog=epilog,
                           **settings)(func)

    return decorate


# --------------------------------------------------------------------------- messages

def say(message: str) -> None:
    """A message for the user on stderr, ``nncli: ...`` (shown even with --quiet)."""
    if message:
        print(f"nncli: {message}", file=sys.stderr, flush=True)


def tell(line: str) -> None:
    """A line of a command's progress or outcome on stderr, as it is (callers leave it out
    with --quiet); no Rich markup or wrapping, so file names stay as they are."""
    print(line, file=sys.stderr, flush=True)


def status(text: str, shown: bool) -> ContextManager:
    """A spinner with ``text`` on stderr while inside, when ``shown``."""
    return err.status(text, spinner="dots") if shown else nullcontext()


# --------------------------------------------------------------------------- helpers

def prepare_numba(threads: Optional[int] = None) -> None:
    """Get Numba ready before nncli's kernels are first imported (see
    ``nncli.kernel_cache.prepare_numba``); its one note goes to stderr."""
    from nncli import kernel_cache

    kernel_cache.prepare_numba(threads, say)


def show_bar(quiet: bool) -> bool:
    """Whether progress is drawn live (a terminal, not --quiet)."""
    return not quiet and err.is_terminal


def write_output(path: Path, write) -> None:
    """Write a command's output file whole or not at all; its folder must exist."""
    from nncli.files import write_atomically

    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"{path}: folder '{folder}' does not exist")
    write_atomically(path, write, text=True)


# --------------------------------------------------------------------------- main

@dataclass
class Invocation:
    """What a command knows of how it was called (``ctx.obj``): the arguments, for the
    command line that resumes an interrupted run."""

    argv: list[str] = field(default_factory=list)
    # The command has written and closed everything and stopped what it started (a sweep: Ray):
    # the console script then exits without tearing the interpreter down, which takes Ray
    # Tune's modules 0.3-0.45 s (measured). Never in process: main(argv) returns.
    exit_at_once: bool = False


def main(argv: list[str] | None = None) -> int:
    """The ``nncli`` console script: run a command, map errors to one line and an exit code."""
    invocation = Invocation(list(sys.argv[1:] if argv is None else argv) or ["--help"])
    code = _run(invocation)
    if argv is None and invocation.exit_at_once:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _run(invocation: Invocation) -> int:
    """Run the command of ``invocation``, errors mapped to one line and an exit code."""
    args = invocation.argv
    if "_NNCLI_COMPLETE" in os.environ:
        # A shell is asking for completions: register typer's shell classes first.
        from typer.completion import completion_init

        completion_init()
    debug = "--debug" in args or os.environ.get("NNCLI_DEBUG") == "1"
    try:
        result = app(args=args, prog_name="nncli", standalone_mode=False, obj=invocation)
    except NncliError as e:
        if debug:
            raise
        if not e.reported:
            _fail(str(e))
        if e.hard_exit:  # a library thread is stuck (see errors.JoinTimeout)
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
    except MemoryError as e:
        # the memory check (nncli.memory) comes first; this is what it could not foresee
        if debug:
            raise
        _fail(f"out of memory: {str(e) or 'an allocation failed'}")
        return EXIT_USAGE
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
