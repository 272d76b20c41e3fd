"""Loss and metrics of a trained model on labelled data: what ``nncli eval`` reports.

Classifiers: loss, accuracy and a confusion matrix (rows = true class, columns = predicted);
multi-label bce adds per-label accuracy. Regression: loss, mse, mae and r2 (R^2 of all outputs
together, 1 - SS_res / SS_tot, as Keras's R2Score with uniform averaging over outputs); mse, mae
and r2 are in the targets' own units, and ``loss`` (what training minimised) is in standardised
units when the model standardises its targets (then ``loss_units`` says so). A model trained
with --l1/--l2 includes its kernels' penalty in ``loss``, as Keras's evaluate does, and says how
much of it that is (``penalty``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nncli.losses import prepare_targets
from nncli.model import Model


def evaluate(model: Model, X: np.ndarray, Y: np.ndarray, source: str,
             lines: Sequence[int] | None = None, own_data: bool = False) -> dict:
    """Metrics of ``model`` on raw features X and raw targets Y. X is left as it is, unless
    ``own_data``: then it is preprocessed in place, so a large data set is not copied (the
    command line hands its freshly loaded data over)."""
    spec = model.loss_spec
    stage = model.preprocessing
    Y = prepare_targets(spec, Y, model.n_outputs, source, lines)
    X = stage.transform_in_place(X, source) if own_data else stage.transform(X, source)
    loss, accuracy = model.evaluate(X, stage.scale_targets(Y))
    report: dict = {"rows": int(len(X)), "loss": loss}
    if model.penalties != (0.0, 0.0):
        report["penalty"] = model.penalty()
    out = model.outputs(X)
    if not spec.classifier:
        if stage.scales_targets:
            report["loss_units"] = "standardized targets"
        report.update(regression_metrics(stage.unscale_outputs(out), Y))
        return report
    report["accuracy"] = accuracy
    if spec.targets in ("index", "onehot"):
        report["confusion_matrix"] = confusion(Y.argmax(axis=1), out.argmax(axis=1),
                                               model.n_outputs).tolist()
        report["labels"] = class_names(model)
    else:
        threshold = 0.0 if model.logits else 0.5
        predicted, truth = out > threshold, Y >= 0.5
        if model.n_outputs == 1:
            report["confusion_matrix"] = confusion(truth[:, 0], predicted[:, 0], 2).tolist()
            report["labels"] = class_names(model)
        else:
            report["label_accuracy"] = dict(zip(output_names(model),
                                                (predicted == truth).mean(axis=0).tolist()))
    return report


def regression_metrics(out: np.ndarray, Y: np.ndarray) -> dict:
    """mse, mae and r2 over every output, computed in float64."""
    out, Y = out.astype(np.float64), Y.astype(np.float64)
    err = out - Y
    ss_tot = ((Y - Y.mean(axis=0)) ** 2).sum()
    r2 = 1.0 - (err ** 2).sum() / ss_tot if ss_tot > 0 else float("nan")
    return {"mse": float((err ** 2).mean()), "mae": float(np.abs(err).mean()), "r2": float(r2)}


def confusion(truth: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """k x k counts: rows are true classes, columns predicted ones."""
    m = np.zeros((k, k), dtype=np.int64)
    np.add.at(m, (truth.astype(np.int64), predicted.astype(np.int64)), 1)
    return m


def class_names(model: Model) -> list[str]:
    """Names of the classes, one per class the output holds (two for a single binary unit):
    the string labels of the training data, else their indices. Units beyond the labels (the
    training data named fewer classes than the output has units) are named by their index."""
    k = 2 if model.n_outputs == 1 else model.n_outputs
    named = list(model.classes or [])[:k]
    return named + [str(i) for i in range(len(named), k)]


def output_names(model: Model) -> list[str]:
    """One name per output unit (multi-output targets), for column headers and reports."""
    names = model.target_names or []
    if len(names) == model.n_outputs:
        return list(names)
    return [f"y{i}" for i in range(model.n_outputs)]
