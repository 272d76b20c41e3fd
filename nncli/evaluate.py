"""What ``nncli eval`` reports: the loss and the scores of a trained model on labelled data.

The scores are scikit-learn's (see nncli.scores, which computes them); this module decides which
a model gets and lays them out:

- every classifier: ``accuracy``, ``balanced_accuracy``, ``log_loss``, ``per_class`` {name:
  {precision, recall, f1, support}}, ``macro`` and ``weighted`` {precision, recall, f1}, and
  ``confusion_matrix`` (rows = true class, columns = predicted) with its ``labels``;
- two classes (one sigmoid output, or a softmax of two): ``precision``, ``recall``, ``f1``,
  ``roc_auc`` and ``average_precision`` of the positive class (the second, index 1);
- more classes: ``roc_auc`` of each class against the rest, their mean (macro);
- multi-label (bce with several outputs): ``accuracy`` the fraction of labels right (Keras's
  binary_accuracy), ``subset_accuracy`` the fraction of rows with every label right
  (scikit-learn's accuracy_score), ``log_loss`` the mean over labels, ``label_accuracy``,
  ``per_label`` {name: {precision, recall, f1, roc_auc, average_precision, support,
  best_threshold}} and ``macro`` {precision, recall, f1, roc_auc, average_precision};
- a sigmoid model (binary or multi-label): ``threshold`` (positive when p > threshold) and, for
  binary, ``best_threshold`` {threshold, f1, precision, recall}, the threshold maximising F1;
- regression: ``mse``, ``rmse``, ``mae``, ``r2`` and ``max_error`` in the targets' own units,
  and ``per_output`` {name: {those five}} with several outputs.

``loss`` is what training minimised: in standardised units when the model standardises its
targets (then ``loss_units`` says so), including the kernels' penalty of a model trained with
--l1/--l2, as Keras's evaluate (``penalty`` says how much), and unweighted. ``sample_weight``
weighs every score (scikit-learn's ``sample_weight``) but the loss. An undefined score (a ROC
AUC with one class present) is null.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from nncli.decision import check_threshold, decide, probabilities, thresholded
from nncli.errors import DataError
from nncli.losses import prepare_targets
from nncli.model import Model
from nncli.scores.classification import (ClassScores, accuracy, balanced_accuracy,
                                         confusion_matrix, log_loss)
from nncli.scores.ranking import average_precision, one_vs_rest, roc_auc
from nncli.scores.regression import PER_OUTPUT, overall, per_output
from nncli.scores.thresholds import best_f1_threshold
from nncli.scores.weighting import weighted_mean

# The report's single numbers, in the order eval's table shows them.
HEADLINE = ("rows", "loss", "penalty", "accuracy", "balanced_accuracy", "subset_accuracy",
            "log_loss", "precision", "recall", "f1", "roc_auc", "average_precision",
            "threshold", "mse", "rmse", "mae", "r2", "max_error")
# The scores of one class (per_class), one label (per_label) and their averages.
CLASS_SCORES = ("precision", "recall", "f1")
LABEL_SCORES = (*CLASS_SCORES, "roc_auc", "average_precision")


def evaluate(model: Model, X: np.ndarray, Y: np.ndarray, source: str,
             lines: Sequence[int] | None = None, own_data: bool = False,
             threshold: float | None = None,
             sample_weight: np.ndarray | None = None) -> dict:
    """The report of ``model`` on raw features X and raw targets Y (see the module docstring).
    X is left as it is, unless ``own_data``: then it is preprocessed in place, so a large data
    set is not copied (the command line hands its freshly loaded data over). ``threshold``:
    --threshold (sigmoid models; default 0.5); ``sample_weight``: one weight per row."""
    spec = model.loss_spec
    stage = model.preprocessing
    threshold = check_threshold(model, threshold)
    w = _checked_weights(sample_weight, len(X), source)
    X, Y = prepared(model, X, Y, source, lines, own_data)
    loss, _, out = model.evaluate_outputs(X, stage.scale_targets(Y))
    report: dict = {"rows": int(len(X)), "loss": loss}
    if model.penalties != (0.0, 0.0):
        report["penalty"] = model.penalty()
    if not spec.classifier:
        if stage.scales_targets:
            report["loss_units"] = "standardized targets"
        report.update(regression_report(stage.unscale_outputs(out), Y, output_names(model), w))
    elif thresholded(model) and model.n_outputs > 1:
        report.update(multilabel_report(probabilities(model, out), Y, output_names(model),
                                        threshold, w))
    else:
        report.update(classifier_report(model, probabilities(model, out), Y, threshold, w))
    return json_numbers(report)


def prepared(model: Model, X: np.ndarray, Y: np.ndarray, source: str,
             lines: Sequence[int] | None = None,
             own_data: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(X, Y) as the model takes them: raw features through its preprocessing stage (in place
    when ``own_data``), raw targets prepared for its loss (one-hot rows, 0/1 columns)."""
    stage = model.preprocessing
    Y = prepare_targets(model.loss_spec, Y, model.n_outputs, source, lines)
    X = stage.transform_in_place(X, source) if own_data else stage.transform(X, source)
    return X, Y


def class_view(model: Model, proba: np.ndarray, Y: np.ndarray, threshold: float | None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A single-label classifier's rows as classes: (true class (n,), decided class (n,), each
    class's probability (n, k)), from its probabilities (n, units) and prepared targets Y
    (one-hot rows, or a 0/1 column for one sigmoid output, which becomes two classes: 1 - p
    and p)."""
    predicted = decide(model, proba, threshold)
    if thresholded(model):   # one sigmoid output: the probability of class 1
        return ((Y[:, 0] >= 0.5).astype(np.int64), predicted[:, 0],
                np.column_stack([1.0 - proba[:, 0], proba[:, 0]]))
    return Y.argmax(axis=1), predicted, proba


def classifier_report(model: Model, proba: np.ndarray, Y: np.ndarray,
                      threshold: float | None, w: np.ndarray | None) -> dict:
    """The scores of a single-label classifier from its probabilities (n, units) and prepared
    targets Y (one-hot rows, or a 0/1 column for one sigmoid output)."""
    truth, predicted, proba = class_view(model, proba, Y, threshold)
    names = class_names(model)
    cm = confusion_matrix(truth, predicted, len(names), w)
    scores = ClassScores.of(cm)
    report: dict = {"accuracy": accuracy(cm), "balanced_accuracy": balanced_accuracy(cm),
                    "log_loss": log_loss(truth, proba, w)}
    if len(names) == 2:
        report.update({name: float(getattr(scores, name)[1]) for name in CLASS_SCORES})
        report["roc_auc"] = roc_auc(truth, proba[:, 1], w)
        report["average_precision"] = average_precision(truth, proba[:, 1], w)
    else:
        report["roc_auc"] = float(np.mean(one_vs_rest(truth, proba, roc_auc, w)))
    report["per_class"] = {name: {**{s: float(getattr(scores, s)[j]) for s in CLASS_SCORES},
                                  "support": _count(scores.support[j])}
                           for j, name in enumerate(names)}
    report.update(scores.averages())
    report["confusion_matrix"] = cm.tolist()
    report["labels"] = names
    if threshold is not None:
        report["threshold"] = threshold
        report["best_threshold"] = best_f1_threshold(truth, proba[:, 1], w)
    return report


def multilabel_report(proba: np.ndarray, Y: np.ndarray, names: list[str], threshold: float,
                      w: np.ndarray | None) -> dict:
    """The scores of a multi-label model: each label a binary problem of its own."""
    truth = (Y >= 0.5).astype(np.int64)
    predicted = (proba > threshold).astype(np.int64)
    correct = predicted == truth
    per_label = {}
    for j, name in enumerate(names):
        scores = ClassScores.of(confusion_matrix(truth[:, j], predicted[:, j], 2, w))
        per_label[name] = {**{s: float(getattr(scores, s)[1]) for s in CLASS_SCORES},
                           "roc_auc": roc_auc(truth[:, j], proba[:, j], w),
                           "average_precision": average_precision(truth[:, j], proba[:, j], w),
                           "support": _count(scores.support[1]),
                           "best_threshold": best_f1_threshold(truth[:, j], proba[:, j], w)}
    label_accuracy = weighted_mean(correct, w, axis=0)
    return {"accuracy": float(label_accuracy.mean()),
            "subset_accuracy": float(weighted_mean(correct.all(axis=1), w)),
            "log_loss": float(np.mean([log_loss(truth[:, j], proba[:, j], w)
                                       for j in range(len(names))])),
            "label_accuracy": dict(zip(names, label_accuracy.tolist())),
            "per_label": per_label,
            # a mean with an undefined member is undefined, as scikit-learn's average="macro"
            "macro": {s: float(np.mean([v[s] for v in per_label.values()]))
                      for s in LABEL_SCORES},
            "threshold": threshold}


def regression_report(out: np.ndarray, Y: np.ndarray, names: list[str],
                      w: np.ndarray | None) -> dict:
    """mse, rmse, mae, r2 and max_error over all outputs, and per output when there are
    several, of outputs and targets in the targets' own units."""
    report: dict = overall(Y, out, w)
    if Y.shape[1] > 1:
        columns = per_output(Y, out, w)
        report["per_output"] = {name: {s: float(columns[s][j]) for s in PER_OUTPUT}
                                for j, name in enumerate(names)}
    return report


def regression_metrics(out: np.ndarray, Y: np.ndarray) -> dict:
    """mse, mae and r2 over every output: training's validation metrics of a regression."""
    scores = overall(Y, out)
    return {name: scores[name] for name in ("mse", "mae", "r2")}


def json_numbers(value):
    """``value`` with every NaN float (an undefined score) as None, JSON's null."""
    if isinstance(value, dict):
        return {k: json_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_numbers(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _count(support: float | int):
    """A class's support: an int when rows are counted, a float when they are weighed."""
    return int(support) if isinstance(support, (np.integer, int)) else float(support)


def _checked_weights(sample_weight: np.ndarray | None, n: int,
                     source: str) -> np.ndarray | None:
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    if len(w) != n:
        raise DataError(f"{len(w)} sample weights for {n} rows", source)
    if not w.sum() > 0:
        raise DataError("the sample weights sum to 0: no row weighs anything", source)
    return w


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
