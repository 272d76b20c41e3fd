"""The command line: parse options, call the library, render. The only package that imports
typer and rich. Library modules are imported inside the commands so that ``nncli --help`` does
not load numba.

Exit codes: 0 ok, 1 a check failed (gradcheck) or training diverged, 2 bad usage or input,
130 interrupted (SIGINT), 143 terminated (SIGTERM).
Data (predictions, --json) goes to stdout; progress, tables and messages to stderr.

One module per responsibility: ``app`` (the Typer app, ``command``, the stderr console and
messages, the helpers several commands share and ``main``, which maps errors to exit codes),
``options`` (Typer parameters from the library's option table), ``training`` (train),
``using`` (eval, predict), ``inspecting`` (gradcheck, info), ``plotting`` (plot),
``crossvalidating`` (cv), ``sweeping`` (sweep), ``exporting`` (export) and ``completing``
(the hidden completions command). A command is registered on ``app`` when its module is
imported, and ``nncli --help`` lists them in that order: keep the imports below in the order
the help should show.
"""

# the order of these imports is the order of the commands in --help
# isort: off
from nncli.cli.app import app, err, main
from nncli.cli.training import train
from nncli.cli.using import eval_, predict
from nncli.cli.inspecting import gradcheck, info
from nncli.cli.plotting import plot
from nncli.cli.crossvalidating import cv
from nncli.cli.sweeping import sweep
from nncli.cli.exporting import export
from nncli.cli.completing import completion_script, completions
# isort: on

__all__ = ["app", "err", "main", "train", "eval_", "predict", "gradcheck", "info", "plot", "cv",
           "sweep", "export", "completions", "completion_script"]
