"""Typer parameters from the library's option table (``nncli.options.OPTIONS``): a
command declares which rows it takes, and its function receives them as keyword arguments."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Literal, Optional

import typer

from nncli.options import Option


def typer_parameter(option: Option, hidden: bool = False) -> inspect.Parameter:
    """The keyword parameter Typer reads for one row of the table (``hidden``: parsed but left
    out of --help, for an option the command refuses with a reason)."""
    kind: Any = Literal[option.choices] if option.choices else option.type
    if option.repeat:
        kind = list[kind]
    if option.default is None and not option.required:
        kind = Optional[kind]
    info = typer.Option(... if option.required else option.default, *option.flags,
                        help=option.help, metavar=option.metavar, hidden=hidden)
    return inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, default=info,
                             annotation=kind)


def with_options(options: tuple[Option, ...],
                 hidden: frozenset[str] = frozenset()) -> Callable[[Callable], Callable]:
    """Give a command function the parameters of ``options`` after its own: Typer reads the
    signature, the function takes them as keyword arguments (``**o``), by option name. Those
    named in ``hidden`` are parsed but not shown in --help."""

    def decorate(func: Callable) -> Callable:
        own = [p for p in inspect.signature(func, eval_str=True).parameters.values()
               if p.kind is not inspect.Parameter.VAR_KEYWORD]
        func.__signature__ = inspect.Signature(own + [typer_parameter(o, o.name in hidden)
                                                  for o in options])
        return func

    return decorate
