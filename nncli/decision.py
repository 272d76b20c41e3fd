"""How a classifier's outputs become probabilities and then classes: one rule for ``eval`` and
``predict --output class``.

Probabilities are computed in float64 from what the last layer outputs: the link (sigmoid or
softmax) applied to logits (--logits), the outputs themselves otherwise. A softmax (cce) model's
class is the argmax of its probabilities. A sigmoid (bce) model's output, one binary class or
each label of a multi-label model, is positive when its probability is above the threshold,
``p > T`` (Keras's ``BinaryAccuracy`` and ``Precision``; the default T = 0.5 is the rule of
nncli before --threshold, and of training's accuracy).
"""

from __future__ import annotations

import numpy as np

from nncli.errors import UsageError
from nncli.model import Model

DEFAULT_THRESHOLD = 0.5


def _sigmoid(z: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


LINKS = {"sigmoid": _sigmoid, "softmax": _softmax}


def probabilities(model: Model, outputs: np.ndarray) -> np.ndarray:
    """A classifier's outputs (``Model.outputs``) as float64 probabilities."""
    z = np.asarray(outputs, dtype=np.float64)
    link = model.loss_spec.link
    return LINKS[link](z) if model.logits and link is not None else z


def thresholded(model: Model) -> bool:
    """Whether the model's classes are decided by a threshold (sigmoid outputs: bce)."""
    return model.loss_spec.targets == "binary"


def check_threshold(model: Model, threshold: float | None) -> float | None:
    """The threshold the model's decisions use: ``threshold`` (--threshold), else the default
    for a sigmoid model and None for the others; a UsageError when it is outside [0, 1] or
    the model decides without one."""
    if threshold is None:
        return DEFAULT_THRESHOLD if thresholded(model) else None
    if not 0.0 <= threshold <= 1.0:
        raise UsageError(f"--threshold {threshold:g}: a threshold on a probability lies in "
                         f"[0, 1]")
    if not model.loss_spec.classifier:
        raise UsageError(f"--threshold needs a binary or multi-label classifier; this model is "
                         f"a regression model (--loss {model.loss})")
    if not thresholded(model):
        raise UsageError(f"--threshold applies to sigmoid outputs (--loss bce); this model's "
                         f"softmax output (--loss {model.loss}) decides by argmax")
    return threshold


def decide(model: Model, proba: np.ndarray, threshold: float | None) -> np.ndarray:
    """Classes from probabilities (n, units): for softmax, the class index of each row (n,);
    for sigmoid outputs, 0/1 per output (n, units), 1 where the probability is above
    ``threshold``."""
    if thresholded(model):
        return (proba > threshold).astype(np.int64)
    return proba.argmax(axis=1)
