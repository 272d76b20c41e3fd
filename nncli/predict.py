"""Predictions as a table: what ``nncli predict`` writes as CSV.

``proba`` (default): probabilities; the link (sigmoid/softmax) is applied when the model was
trained with --logits, so the user never has to remember. One column per class for softmax
models (named by class), one per label for sigmoid outputs (a single binary output is the
probability of the second class, e.g. ``malignant`` of benign/malignant). Regression: values,
in the targets' own units.
``class``: the predicted label, one column (or one 0/1 column per label for multi-label), decided
as ``eval`` decides (nncli.decision): argmax for softmax, probability above ``threshold`` (default
0.5) for sigmoid outputs.
``logits``: what the last layer outputs, untouched (for an mse model that standardises its
targets, in standardised units).
"""

from __future__ import annotations

from typing import TextIO

import numpy as np

from nncli.decision import check_threshold, decide, probabilities
from nncli.errors import UsageError
from nncli.evaluate import class_names, output_names
from nncli.model import Model

OUTPUTS = ("proba", "class", "logits")


def predict(model: Model, X: np.ndarray, output: str = "proba",
            threshold: float | None = None) -> tuple[list[str], np.ndarray]:
    """(column names, values) for raw features X (preprocessed into a new array: X is left as
    it is); ``threshold``: --threshold, for ``class`` only (see check_options)."""
    check_options(model, output, threshold)
    spec = model.loss_spec
    raw = model.outputs(model.preprocessing.transform(X))
    if output == "logits":
        return output_columns(model), raw
    if not spec.classifier:
        if output == "class":
            raise UsageError(f"--output class needs a classifier; this model is a regression "
                             f"model (--loss {model.loss}); use --output proba for its values")
        return output_columns(model), model.preprocessing.unscale_outputs(raw)
    if output == "proba":
        return output_columns(model), model.probabilities(raw)
    chosen = decide(model, probabilities(model, raw), check_threshold(model, threshold))
    if spec.targets in ("index", "onehot"):
        names = np.array(class_names(model), dtype=object)
        return [_target_name(model)], names[chosen][:, None]
    if model.n_outputs == 1 and model.classes:
        return [_target_name(model)], np.array(class_names(model), dtype=object)[chosen]
    return output_names(model), chosen


def check_options(model: Model, output: str, threshold: float | None) -> None:
    """A UsageError for an unknown ``output``, or a threshold given with an output it does not
    decide (anything but ``class``) or for a model that takes none (see decision)."""
    if output not in OUTPUTS:
        raise UsageError(f"unknown --output '{output}'; expected one of {', '.join(OUTPUTS)}")
    if threshold is not None and output != "class":
        raise UsageError(f"--threshold decides classes: it goes with --output class, not "
                         f"--output {output}")
    check_threshold(model, threshold)


def write_csv(stream: TextIO, columns: list[str], values: np.ndarray) -> None:
    """CSV with a header; floats in the shortest form that round-trips float32."""
    stream.write(",".join(_csv_cell(c) for c in columns) + "\n")
    if values.dtype.kind == "f":
        np.savetxt(stream, values, fmt="%.9g", delimiter=",")
    else:
        for row in values:
            stream.write(",".join(_csv_cell(str(v)) for v in row) + "\n")


def output_columns(model: Model) -> list[str]:
    """The column names of ``--output proba`` and ``logits`` (and of the exported graph's
    first output): one per class, the positive class of a single binary output, else one per
    output unit."""
    spec = model.loss_spec
    if spec.targets in ("index", "onehot"):
        return class_names(model)
    if spec.targets == "binary" and model.n_outputs == 1 and model.classes:
        return [class_names(model)[-1]]
    return output_names(model)


def _target_name(model: Model) -> str:
    return model.target_names[0] if model.target_names else "class"


def _csv_cell(text: str) -> str:
    if any(ch in text for ch in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text
