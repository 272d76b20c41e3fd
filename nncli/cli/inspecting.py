"""Looking into networks: ``nncli gradcheck`` (analytic against numerical gradients) and
``nncli info`` (a model file's architecture, layers, columns and training summary)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from nncli.cli.app import command, err, prepare_numba, tell
from nncli.errors import CheckFailed, UsageError
from nncli.options import GRADCHECK_DEFAULTS


@command(summary="Check every analytic gradient against central differences.",
         epilog="Examples: nncli gradcheck --arch 25relu-15relu-10linear --loss sparse_cce "
                "--logits;  nncli gradcheck digits.safetensors datasets/digits.csv")
def gradcheck(
    model: Optional[Path] = typer.Argument(None, help="Check this model's gradients on DATA "
                                           "(instead of --arch)."),
    data: Optional[str] = typer.Argument(None, help="Data for MODEL."),
    arch: Optional[str] = typer.Option(None, "--arch", help="Architecture to build with random "
                                       "weights and data."),
    loss: Optional[str] = typer.Option(None, "--loss", help="mse, bce, cce or sparse_cce."),
    logits: bool = typer.Option(False, "--logits", help="The loss takes logits."),
    inputs: int = typer.Option(GRADCHECK_DEFAULTS["inputs"], "--inputs",
                               help="Input features of the random data."),
    channels: int = typer.Option(1, "--channels", help="Read the inputs as a signal of "
                                 "inputs/CHANNELS positions x CHANNELS (conv and local layers)."),
    batch: int = typer.Option(GRADCHECK_DEFAULTS["batch"], "--batch",
                              help="Rows of data to check on."),
    seed: int = typer.Option(GRADCHECK_DEFAULTS["seed"], "--seed",
                             help="Seed of the random weights and data."),
    tol: float = typer.Option(GRADCHECK_DEFAULTS["tol"], "--tol",
                              help="Largest error allowed: |a-n| / max(|a|+|n|, 1e-3) between "
                                   "analytic and central-difference gradients."),
    l2: Optional[float] = typer.Option(None, "--l2", metavar="L", help="Check the loss with "
                                       "this L2 kernel penalty added, as train --l2 \\[default: "
                                       "MODEL's, else 0]."),
    l1: Optional[float] = typer.Option(None, "--l1", metavar="L", help="Check the loss with "
                                       "this L1 kernel penalty added, as train --l1 \\[default: "
                                       "MODEL's, else 0]."),
    class_weight: Optional[str] = typer.Option(None, "--class-weight", metavar="WEIGHTS",
                                               help="MODEL DATA: weigh each row's loss by its "
                                                    "class, as train --class-weight (balanced "
                                                    "counts the rows checked)."),
    sample_weight: Optional[str] = typer.Option(None, "--sample-weight", metavar="COL",
                                                help="MODEL DATA: weigh each row's loss by "
                                                     "this column of DATA, as train "
                                                     "--sample-weight."),
    json_out: bool = typer.Option(False, "--json", help="Print the errors as JSON on stdout."),
) -> None:
    """Compare every analytic gradient with central differences in float64; exit 1 on failure."""
    prepare_numba()
    from nncli import gradcheck as gc
    from nncli.train.preparing import check_penalties
    from nncli.weightspec import check_class_weight

    if batch < 1 or inputs < 1:
        raise UsageError("--batch and --inputs must be at least 1")
    check_penalties(l1 or 0.0, l2 or 0.0)
    if model is not None:
        if arch or loss or data is None:
            raise UsageError("give either MODEL DATA, or --arch and --loss")
        if channels != 1:
            raise UsageError("--channels applies to --arch; a model file knows its channels")
        from nncli.data import ReadOptions, load_training_data
        from nncli.modelfile import load_model

        m = load_model(model)
        ds = load_training_data(data, classes=m.classes, schema=m.input_schema(),
                                model_targets=m.target_lookup(),
                                options=ReadOptions(sample_weight=sample_weight))
        X, Y = ds.X[:batch], ds.Y[:batch]
        sample = ds.sample_weight[:batch] if ds.sample_weight is not None else None
        own_l1, own_l2 = m.penalties
        penalties = (own_l1 if l1 is None else l1, own_l2 if l2 is None else l2)
        spec = check_class_weight(class_weight) if class_weight is not None else None
        results = gc.gradcheck_on_data(m, X, Y, ds.source, penalties, spec, sample)
        what = (f"{model} on {len(X)} rows of {data}" + _penalty_words(*penalties)
                + _flag_words(("--class-weight", spec), ("--sample-weight", sample_weight)))
    else:
        if not arch or not loss:
            raise UsageError("gradcheck needs --arch and --loss (or MODEL DATA)")
        if class_weight is not None or sample_weight is not None:
            raise UsageError("--class-weight and --sample-weight weigh the rows of MODEL DATA; "
                             "--arch checks on random rows")
        from nncli.arch import parse_arch

        results = gc.gradcheck_arch(parse_arch(arch), loss, logits, inputs, batch, seed,
                                    channels, l1 or 0.0, l2 or 0.0)
        what = (f"{arch} --loss {loss}{' --logits' if logits else ''} on {batch} random rows"
                f" of {inputs} inputs" + (f" ({channels} channels)" if channels > 1 else "")
                + _penalty_words(l1 or 0.0, l2 or 0.0))
    ok = all(r.ok(tol) for r in results)
    if json_out:
        typer.echo(json.dumps({"ok": ok, "tol": tol, "tensors": [
            {"name": r.name, "size": r.size, "max_error": r.max_error} for r in results]},
            indent=2))
    table = Table(title=f"gradcheck: {what}")
    for col in ("tensor", "size", "max error", ""):
        table.add_column(col, justify="left" if col == "tensor" else "right")
    for r in results:
        table.add_row(r.name, str(r.size), f"{r.max_error:.2e}",
                      "ok" if r.ok(tol) else "[red]FAIL[/red]")
    err.print(table)
    tell(f"gradcheck {'passed' if ok else 'FAILED'} (tolerance {tol:g})")
    if not ok:
        raise CheckFailed("gradcheck failed")


def _penalty_words(l1: float, l2: float) -> str:
    """The penalties in a gradcheck's title (nothing when there are none)."""
    return _flag_words(("--l2", l2), ("--l1", l1))


def _flag_words(*pairs: tuple[str, float | str | None]) -> str:
    """' FLAG VALUE' for each (flag, value) that has a value, for a gradcheck's title."""
    return "".join(f" {flag} {value:g}" if isinstance(value, float) else f" {flag} {value}"
                   for flag, value in pairs if value)


# --------------------------------------------------------------------------- info

@command(summary="Show a model's architecture, layers, columns and training.",
         epilog="Example: nncli info digits.safetensors --json | jq .arch")
def info(
    model: Path = typer.Argument(..., help="A model file written by nncli train."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Show a model's architecture, layers (kind, output shape, parameters), loss, classes and
    training summary."""
    prepare_numba()
    from nncli.modelfile import read_model_file

    saved = read_model_file(model)
    m = saved.model
    history = m.info.get("history") or []
    state = saved.state or {}
    summary = {
        "arch": m.arch, "inputs": m.n_inputs, "channels": m.channels, "outputs": m.n_outputs,
        "parameters": int(m.params.size),
        "layers": _layer_summaries(m),
        "loss": m.loss, "logits": m.logits, "classes": m.classes,
        "targets": m.target_names, "optimizer": m.info.get("optimizer"),
        "normalize": m.info.get("normalize"), "seed": m.info.get("seed"),
        "epochs": len(history), "final": history[-1] if history else None,
        "early_stopping": m.info.get("early_stopping"),
        "regularization": _regularization(m),
        "lr_schedule": _lr_schedule(m.info.get("options") or {}),
        "class_weight": m.info.get("class_weight"),
        "sample_weight": (m.info.get("options") or {}).get("sample_weight"),
        "checkpoint": {"epoch": state.get("epoch"), "rows_done": state.get("rows_done"),
                       "rows": state.get("rows")} if saved.is_checkpoint else None,
        "nncli_version": m.info.get("nncli_version"),
        "columns": [c.as_dict() for c in m.input_schema().columns],
        "ignored_columns": [c.name for c in m.input_schema().ignored],
        "left_out": [{"name": c.name, "why": c.why} for c in m.input_schema().ignored],
        "target_normalization": None if m.target_mean is None else {
            "mean": m.target_mean.tolist(), "std": m.target_std.tolist()},
        "sweep": m.info.get("sweep"),
    }
    if json_out:
        typer.echo(json.dumps(summary, indent=2))
        return
    table = Table(title=str(model), show_header=False)
    for key in ("arch", "inputs", "channels", "outputs", "parameters", "loss", "logits",
                "classes", "targets", "optimizer", "normalize", "target_normalization", "seed",
                "epochs", "final",
                "early_stopping", "regularization", "lr_schedule", "class_weight",
                "sample_weight", "checkpoint"):
        value = summary[key]
        shown = _SHOWN.get(key, _json_or_text)
        table.add_row(key, shown(value) if value is not None else str(value))
    err.print(table)
    layers = Table(title="layers")
    for col in ("", "layer", "kind", "output shape", "parameters"):
        layers.add_column(col, justify="left" if col in ("layer", "kind") else "right")
    for i, (layer, entry) in enumerate(zip(m.layers, summary["layers"]), start=1):
        layers.add_row(str(i), str(layer), entry["kind"],
                       " x ".join(str(d) for d in entry["output_shape"]),
                       str(entry["parameters"]))
    err.print(layers)
    columns = Table(title="input columns")
    for col in ("column", "kind", "features", "missing values become"):
        columns.add_column(col, justify="right" if col == "features" else "left")
    for c in m.input_schema().columns:
        categories = ", ".join(c.categories[:8]) + (", ..." if len(c.categories) > 8 else "")
        kind = c.kind if c.kind == "numeric" else f"categorical ({categories})"
        gap = ((f"{c.fill:.6g} (training mean)" if c.fill is not None else "an error")
               if c.kind == "numeric" else
               ("a category of their own" if c.missing_category else "all zeros (unseen)"))
        columns.add_row(c.name, kind, str(c.width), gap)
    err.print(columns)
    if summary["left_out"]:
        tell("left out: " + ", ".join(f"{c['name']} ({c['why']})" for c in summary["left_out"]))


def _json_or_text(value) -> str:
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


# The rows of info's table shown otherwise than as JSON (each given a value that is not None).
_SHOWN = {
    "class_weight": lambda weights: ", ".join(f"{label}={w:.6g}"
                                              for label, w in weights.items()),
}


def _regularization(m) -> dict | None:
    """The kernel penalties it was trained with, {"l2": L, "l1": L}; None without any."""
    l1, l2 = m.penalties
    return {"l2": l2, "l1": l1} if l1 or l2 else None


def _lr_schedule(options: dict) -> dict | None:
    """How the learning rate moved (--lr-schedule, --warmup-epochs, --reduce-lr-on-plateau);
    None for a constant rate, and for files from before schedules."""
    keys = ("lr_schedule", "warmup_epochs", "reduce_lr_on_plateau", "lr_factor", "min_lr")
    moved = options.get("lr_schedule", "constant") != "constant" or \
        options.get("warmup_epochs") or options.get("reduce_lr_on_plateau") is not None
    return {key: options.get(key) for key in keys} if moved else None


def _layer_summaries(m) -> list[dict]:
    """Per layer: kind, units, activation, window (conv, local), the output shape (units, or
    positions x filters) and the kernel and bias shapes and parameter count."""
    return [record.summary() for record in m.layer_records()]
