"""The loss table: what each ``--loss`` name means, which targets it takes, which fused kernel
computes it, and which link (sigmoid/softmax) turns logits into probabilities at predict time.

Reduction convention, the one Keras uses, written once (in kernels.loss_forward_backward):
mean over the rows of a batch; bce and mse are also averaged over the outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from nncli.arch import LayerSpec
from nncli.errors import DataError, UsageError

# Keras's clipping of probabilities before the log (backend.epsilon()).
PROB_EPSILON = 1e-7


@dataclass(frozen=True)
class Loss:
    """One row of the loss table."""

    name: str
    targets: str                 # "values", "binary", "onehot" or "index": what a target row holds
    classifier: bool
    logits_kernel: int | None    # kernel code when the last layer outputs logits (--logits)
    probs_kernel: int            # kernel code when the last layer outputs the values themselves
    link: str | None             # activation that maps logits to probabilities; required last
                                 # activation without --logits
    min_units: int = 1
    summary: str = ""


LOSSES: dict[str, Loss] = {
    "mse": Loss("mse", "values", False, None, 0, None,
                summary="mean squared error (regression, one or more outputs)"),
    "bce": Loss("bce", "binary", True, 1, 2, "sigmoid",
                summary="binary cross-entropy (binary or multi-label, targets in [0, 1])"),
    "cce": Loss("cce", "onehot", True, 3, 4, "softmax", min_units=2,
                summary="categorical cross-entropy (one-hot or probability targets)"),
    "sparse_cce": Loss("sparse_cce", "index", True, 3, 4, "softmax", min_units=2,
                       summary="categorical cross-entropy with integer class labels"),
}


def get_loss(name: str) -> Loss:
    """The table row for ``name``, or a UsageError listing the known losses."""
    try:
        return LOSSES[name]
    except KeyError:
        raise UsageError(f"unknown loss '{name}'; expected one of {', '.join(LOSSES)}") from None


def kernel_code(loss: Loss, logits: bool) -> int:
    """The code of the fused loss kernel for this loss and output kind."""
    return loss.logits_kernel if logits else loss.probs_kernel


def check_output_layer(loss: Loss, logits: bool, layers: list[LayerSpec],
                       outputs: int | None = None) -> None:
    """Reject architectures whose last layer contradicts the loss or the --logits flag.

    ``outputs`` is the width of the last layer's flat output when known (for a conv or local
    last layer it is positions x filters, which depends on the input); default its units."""
    last = layers[-1]
    outputs = last.units if outputs is None else outputs
    if logits:
        if loss.logits_kernel is None:
            raise UsageError(f"--logits does not apply to --loss {loss.name}: it compares the "
                             f"outputs directly; drop --logits")
        if last.activation != "linear":
            raise UsageError(
                f"--logits needs a linear last layer (the loss applies {loss.link} itself), but "
                f"it is '{last}'; hint: use '{_with(last, 'linear')}', or drop --logits")
    elif loss.link is not None and last.activation != loss.link:
        better = f"'{_with(last, 'linear')}' with --logits (more stable)"
        use = (f"'{_with(last, loss.link)}'" if last.kind == "dense" or loss.link != "softmax"
               else f"a dense last layer such as '{last.units}softmax'")
        raise UsageError(
            f"--loss {loss.name} without --logits needs a {loss.link} last layer, but it is "
            f"'{last}'; hint: use {use}, or {better}")
    if outputs < loss.min_units:
        raise UsageError(
            f"--loss {loss.name} needs at least {loss.min_units} output units, the last layer "
            f"'{last}' has {outputs}; hint: for two classes use '1linear' with --loss bce "
            f"--logits, or '2linear' with --loss {loss.name} --logits")


def _with(layer: LayerSpec, activation: str) -> str:
    """``layer`` as written, with another activation."""
    return str(replace(layer, activation=activation))


def prepare_targets(loss: Loss, Y: np.ndarray, units: int, source: str,
                    lines: Sequence[int] | None = None) -> np.ndarray:
    """Check the targets against the loss and the output width; return (n, units) float32.

    Integer class labels (``sparse_cce``, or ``cce`` given one label column) become one-hot rows,
    so one fused kernel serves both cross-entropies. ``lines`` holds each row's line in the
    file, to point at a bad label.
    """
    if Y.shape[1] == 1 and loss.targets in ("index", "onehot") and units > 1:
        return _one_hot(Y[:, 0], units, source, lines, loss.name)
    if Y.shape[1] != units:
        raise DataError(f"--loss {loss.name} needs {units} target column(s) for {units} output "
                        f"unit(s), found {Y.shape[1]}; hint: choose them with --target",
                        source)
    if loss.targets == "binary":
        bad = np.flatnonzero(((Y < 0) | (Y > 1)).any(axis=1))
        if bad.size:
            r = int(bad[0])
            raise DataError(f"bce targets must lie in [0, 1], found {Y[r].tolist()}; hint: "
                            f"use sparse_cce for class labels", source, _line(lines, r))
    return np.ascontiguousarray(Y, dtype=np.float32)


def _one_hot(labels: np.ndarray, units: int, source: str, lines: Sequence[int] | None,
             name: str) -> np.ndarray:
    ok = (labels >= 0) & (labels < units) & (labels == np.floor(labels))
    if not ok.all():
        r = int(np.flatnonzero(~ok)[0])
        raise DataError(
            f"class label {labels[r]:g} is outside [0, {units}) for the {units} output units of "
            f"--loss {name}; hint: widen the last layer or relabel the classes 0..{units - 1}",
            source, _line(lines, r))
    Y = np.zeros((labels.shape[0], units), dtype=np.float32)
    Y[np.arange(labels.shape[0]), labels.astype(np.int64)] = 1.0
    return Y


def _line(lines: Sequence[int] | np.ndarray | None, row: int) -> int | None:
    # ``lines`` may be a NumPy array (Dataset.line_numbers), whose truth value is ambiguous
    return None if lines is None or len(lines) == 0 else int(lines[row])
