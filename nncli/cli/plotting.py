"""``nncli plot``: the training curves of models (or a sweep's best trials) in one figure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from nncli.cli.app import command, prepare_numba, tell
from nncli.errors import UsageError


@command(summary="Draw the training curves of models or of a sweep's trials.",
         epilog="Example: nncli plot adam.safetensors sgd.safetensors --label adam "
                "--label sgd -o curves.png")
def plot(
    models: list[Path] = typer.Argument(..., help="Model files (or checkpoints) written by "
                                        "nncli train."),
    output: Path = typer.Option(Path("curves.png"), "-o", "--output", help="Where to write "
                                "the figure; .png, .svg or .pdf by the suffix."),
    label: Optional[list[str]] = typer.Option(None, "--label", help="Legend name of each "
                                              "MODEL, in order \\[default: the file names]."),
    metric: Optional[list[str]] = typer.Option(None, "--metric", help="A panel to draw "
                                               "(loss, accuracy, ...); repeat for several "
                                               "\\[default: every metric in the histories]."),
    json_out: bool = typer.Option(False, "--json", help="Print what was drawn as JSON on "
                                  "stdout."),
    top: int = typer.Option(5, "--top", help="For a sweep's folder given as MODEL: how many "
                            "of its best trials to draw."),
) -> None:
    """Draw the training curves of MODELS in one figure: loss and each metric against the
    epoch, validation dashed beside training, one colour per model. A sweep's --out-dir
    stands for its --top best trials. Needs matplotlib (pip install 'nncli\\[plot]')."""
    prepare_numba()
    from nncli.plot import check_output, plot_histories, read_runs

    check_output(output)  # matplotlib, suffix, folder: fail before reading the models
    if top < 1:
        raise UsageError(f"--top must be at least 1, received {top}")
    summary = plot_histories(read_runs(models, label, top), output, metric)
    runs, panels = len(summary.labels), len(summary.panels)
    tell(f"wrote {output} ({runs} model{'s' if runs > 1 else ''}, "
         f"{panels} panel{'s' if panels > 1 else ''})")
    if json_out:
        typer.echo(json.dumps(summary.as_dict(), indent=2))
