"""``nncli export``: a model file written as an ONNX graph."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nncli.cli.app import command, prepare_numba, tell
from nncli.errors import UsageError


@command(summary="Write MODEL as an ONNX graph.",
         epilog="Example: nncli export digits.safetensors -o digits.onnx")
def export(
    model: Path = typer.Argument(..., help="A model file written by nncli train."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Where to write the "
                                          "ONNX file \\[default: MODEL with the suffix .onnx]."),
    opset: Optional[int] = typer.Option(None, "--opset", help="ONNX opset to write, 13 up to "
                                        "the newest the installed onnx knows \\[default: 17]."),
) -> None:
    """Write MODEL as an ONNX graph: raw features in ('features'), what predict prints out
    ('probabilities' or 'values'; 'logits' too for --logits classifiers). Needs nncli\\[onnx]."""
    prepare_numba()
    from nncli.export import write_onnx  # ExportError naming the extra when onnx is missing
    from nncli.modelfile import load_model

    m = load_model(model)
    target = output if output is not None else model.with_suffix(".onnx")
    if target.exists() and target.resolve() == model.resolve():
        raise UsageError(f"{target}: refusing to write the ONNX graph over the model file; "
                         f"choose another -o")
    size = write_onnx(m, target, opset)
    tell(f"wrote {target} ({m.arch}, {size} bytes)")
