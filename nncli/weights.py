"""Row weights of a training run: ``--class-weight`` (Keras's ``class_weight``) and
``--sample-weight`` (Keras's ``sample_weight``).

Each training row's loss (and its gradient) is multiplied by its weight, the product of its
class's weight and its own; the mean stays over the batch's rows (Keras's
``sum_over_batch_size``), and validation losses are not weighted, as in Keras. The kernels take
the weights as one float32 vector per training row (kernels.train_batches ``W``), None when
the run weighs nothing.

``--class-weight balanced`` gives class c the weight n / (n_classes * count_c) over the
training rows (scikit-learn's ``compute_class_weight("balanced", classes=np.unique(y), y)``:
n_classes counts the classes present); ``--class-weight LABEL=W,...`` names labels as they are
written in the file, and classes not named weigh 1.

The option's syntax is checked where the command line is read, by nncli.weightspec.
"""

from __future__ import annotations

import math

import numpy as np

from nncli.errors import UsageError
from nncli.losses import Loss
from nncli.weightspec import BALANCED, pairs


def row_classes(loss: Loss, Y: np.ndarray) -> np.ndarray:
    """Each row's class index, from the targets as the loss takes them (one-hot rows for
    cce and sparse_cce; for bce on one output 0 or 1, a target in [0, 1] rounded as Keras
    does). UsageError for a loss without classes."""
    if loss.targets == "values":
        raise UsageError(f"--class-weight applies to classifier losses (bce, cce, sparse_cce), "
                         f"not --loss {loss.name}; use --sample-weight COL to weigh rows")
    if loss.targets == "binary":
        if Y.shape[1] != 1:
            raise UsageError(f"--class-weight needs one bce output (classes 0 and 1), found "
                             f"{Y.shape[1]} (multi-label); use --sample-weight COL")
        return np.rint(Y[:, 0]).astype(np.int64)
    return np.argmax(Y, axis=1)


def class_labels(loss: Loss, n_out: int, classes: list[str] | None) -> list[str]:
    """The labels of the classes by index, as the file writes them."""
    count = 2 if loss.targets == "binary" else n_out
    return list(classes) + [str(c) for c in range(len(classes), count)] if classes else \
        [str(c) for c in range(count)]


def class_weights(spec: str, loss: Loss, Y: np.ndarray, classes: list[str] | None,
                  source: str) -> dict[str, float]:
    """The weight of each class (by label, in class order) that --class-weight ``spec`` gives
    on the training targets ``Y``; UsageError for a label the data's classes do not have."""
    index = row_classes(loss, Y)
    labels = class_labels(loss, Y.shape[1], classes)
    weights = [1.0] * len(labels)
    if spec == BALANCED:
        counts = np.bincount(index, minlength=len(labels))
        present = int((counts > 0).sum())
        for c, count in enumerate(counts):
            if count:
                weights[c] = len(index) / (present * float(count))
    else:
        for label, weight in pairs(spec):
            weights[_label_index(label, labels, classes, source)] = weight
    return dict(zip(labels, weights))


def _label_index(label: str, labels: list[str], classes: list[str] | None, source: str) -> int:
    """The class index of a --class-weight label: a text label as written, a number label by
    its value (so '1' and '1.0' name class 1)."""
    if label in labels and classes:
        return labels.index(label)
    if not classes:
        try:
            value = float(label)
        except ValueError:
            value = math.nan
        if value == int(value if math.isfinite(value) else 0) and 0 <= value < len(labels):
            return int(value)
    shown = ", ".join(labels[:10]) + (", ..." if len(labels) > 10 else "")
    raise UsageError(f"--class-weight: {source} has no class {label!r}; its classes are {shown}")


def row_weights(class_weight: dict[str, float] | None, loss: Loss, Y: np.ndarray,
                sample: np.ndarray | None) -> np.ndarray | None:
    """Each training row's weight (float32, contiguous): its class's weight times its own
    (``sample``, --sample-weight's column); None when neither is given."""
    if class_weight is None and sample is None:
        return None
    W = np.ones(len(Y), np.float64)
    if class_weight is not None:
        W *= np.asarray(list(class_weight.values()), np.float64)[row_classes(loss, Y)]
    if sample is not None:
        W *= sample
    with np.errstate(over="ignore"):   # beyond float32: refused by check_row_weights
        return np.ascontiguousarray(W, dtype=np.float32)


def check_row_weights(W: np.ndarray | None, source: str, given: str) -> None:
    """The training rows' weights (``row_weights``) must be finite in float32 and leave some
    row weighing more than 0: a run where every row weighs 0 would learn nothing. ``given``
    says which options weighed them, as typed."""
    if W is None:
        return
    if not np.isfinite(W).all():
        raise UsageError(f"{source}: a training row's weight under {given} is beyond float32's "
                         f"range")
    if not W.any():
        raise UsageError(f"{source}: every training row has weight 0 under {given}; nothing "
                         f"would be learnt")
