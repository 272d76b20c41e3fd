"""Gradient checks: every analytic gradient against central differences, in float64.

The error of one parameter is ``|analytic - numeric| / max(|analytic| + |numeric|, FLOOR)``:
relative for ordinary gradients, absolute below FLOOR, where finite differences (about 1e-10
of noise in float64 at h = 1e-6) cannot resolve a relative error. Returns results, prints nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from nncli.arch import LayerSpec, layer_shapes, param_names
from nncli.losses import PROB_EPSILON, check_output_layer, get_loss, prepare_targets
from nncli.memory import check_fits
from nncli.model import K, Model, Workspace
from nncli.options import GRADCHECK_DEFAULTS
from nncli.weights import class_weights, row_weights

STEP = 1e-6
FLOOR = 1e-3
DEFAULT_TOL = GRADCHECK_DEFAULTS["tol"]

# The optimizer step whose dropout masks every evaluation of the loss draws: one fixed mask, so
# that the loss is a smooth function of the weights that finite differences can follow.
GRADCHECK_STEP = 0

GradFn = Callable[[np.ndarray], tuple[float, np.ndarray]]   # params -> (loss, gradient)


@dataclass
class TensorCheck:
    """The worst error over one tensor."""

    name: str
    size: int
    max_error: float

    def ok(self, tol: float) -> bool:
        return bool(self.max_error <= tol)


def check_gradients(loss_and_grad: GradFn, params: np.ndarray,
                    tensors: dict[str, slice], step: float = STEP) -> list[TensorCheck]:
    """Compare ``loss_and_grad``'s gradient with central differences of its loss, per tensor.

    ``tensors`` names slices of the flat ``params`` (float64; restored on return).
    """
    _, analytic = loss_and_grad(params)
    analytic = analytic.copy()
    numeric = np.empty_like(analytic)
    for i in range(params.size):
        keep = params[i]
        params[i] = keep + step
        up = loss_and_grad(params)[0]
        params[i] = keep - step
        down = loss_and_grad(params)[0]
        params[i] = keep
        numeric[i] = (up - down) / (2 * step)
    errors = np.abs(analytic - numeric) / np.maximum(np.abs(analytic) + np.abs(numeric), FLOOR)
    return [TensorCheck(name, sl.stop - sl.start, float(errors[sl].max(initial=0.0)))
            for name, sl in tensors.items()]


def model_gradient_fn(model: Model, X: np.ndarray, Y: np.ndarray, l1: float = 0.0,
                      l2: float = 0.0, weights: np.ndarray | None = None) -> GradFn:
    """(mean loss + weight penalty, gradient) of ``model`` on rows X, Y as a function of float64
    parameters: the loss training minimises with --l1 ``l1`` and --l2 ``l2``, each row's loss
    multiplied by its entry of ``weights`` when given (--class-weight, --sample-weight)."""
    w = None if weights is None else np.ascontiguousarray(weights, dtype=np.float64)
    X = np.ascontiguousarray(X, dtype=np.float64)
    Y = np.ascontiguousarray(Y, dtype=np.float64)
    ws = Workspace(model.layer_table(), len(X), np.float64)
    grads = np.zeros(model.params.size, np.float64)

    def loss_and_grad(params: np.ndarray) -> tuple[float, np.ndarray]:
        loss_sum, _ = K.network_forward_backward(grads, ws.Z, ws.A, ws.dZ, ws.dA, ws.T, params,
                                                 ws.table, X, Y, ws.cap, model.kernel_code,
                                                 PROB_EPSILON, GRADCHECK_STEP, ws.windowed, w)
        if l1 or l2:
            loss_sum += len(X) * K.penalty_forward(params, ws.table, l1, l2)
            K.penalty_backward(grads, params, ws.table, l1, l2)
        return loss_sum / len(X), grads

    return loss_and_grad


def tensor_slices(model: Model) -> dict[str, slice]:
    """Slices of the flat parameters named as in the model file."""
    out = {}
    for i, row in enumerate(model.layer_table()):
        w, b = int(row[K.W_OFF]), int(row[K.B_OFF])
        kernel, bias = param_names(i)
        out[kernel] = slice(w, b)
        out[bias] = slice(b, b + model.bias(i).size)
    return out


def gradcheck_model(model: Model, X: np.ndarray, Y: np.ndarray, l1: float = 0.0,
                    l2: float = 0.0, weights: np.ndarray | None = None) -> list[TensorCheck]:
    """Check the gradients of ``model`` on preprocessed rows X and prepared, scaled targets Y,
    of its loss (each row's multiplied by its entry of ``weights`` when given) plus the weight
    penalty of ``l1`` and ``l2``."""
    params = model.params.astype(np.float64)
    return check_gradients(model_gradient_fn(model, X, Y, l1, l2, weights), params,
                           tensor_slices(model))


def gradcheck_on_data(model: Model, X: np.ndarray, Y: np.ndarray, source: str,
                      penalties: tuple[float, float] | None = None,
                      class_weight: str | None = None,
                      sample_weight: np.ndarray | None = None) -> list[TensorCheck]:
    """Check the gradients of a trained ``model`` on raw rows X and raw targets Y (read from
    ``source``), preprocessed as training and eval preprocess them; X is left as it is.
    ``penalties`` (l1, l2) default to those the model was trained with. Each row's loss is
    weighted as training weighs it with --class-weight ``class_weight`` (its syntax checked;
    ``balanced`` counts the rows checked) and --sample-weight's ``sample_weight`` (one per
    row), when given."""
    stage = model.preprocessing
    spec = model.loss_spec
    Y = prepare_targets(spec, Y, model.n_outputs, source)
    per_class = (class_weights(class_weight, spec, Y, model.classes, source) if class_weight
                 else None)
    W = row_weights(per_class, spec, Y, sample_weight)
    l1, l2 = model.penalties if penalties is None else penalties
    return gradcheck_model(model, stage.transform(X, source), stage.scale_targets(Y), l1, l2, W)


def gradcheck_arch(layers: list[LayerSpec], loss: str, logits: bool,
                   n_inputs: int = GRADCHECK_DEFAULTS["inputs"],
                   batch: int = GRADCHECK_DEFAULTS["batch"], seed: int = GRADCHECK_DEFAULTS["seed"],
                   channels: int = 1, l1: float = 0.0, l2: float = 0.0) -> list[TensorCheck]:
    """Build ``layers`` on ``n_inputs`` features of ``channels`` channels with random weights,
    biases and data, and check the gradients of its loss plus the weight penalty of ``l1`` and
    ``l2`` (--l1, --l2).

    Biases are random too (not zero as in training) so their gradients and the kinks of relu
    are exercised away from zero.
    """
    spec = get_loss(loss)
    units = layer_shapes(layers, n_inputs, channels)[-1].n_out
    check_output_layer(spec, logits, layers, units)
    check_fits(layers, n_inputs, channels, batch, None, itemsize=8, what="the gradient check")
    rng = np.random.default_rng(seed)
    model = Model.create(layers, n_inputs, loss, logits, seed=seed, channels=channels)
    for i in range(len(layers)):
        model.bias(i)[...] = rng.normal(0.0, 0.5, model.bias(i).shape)
    X = rng.normal(size=(batch, n_inputs))
    Y = random_targets(spec.targets, batch, units, rng)
    Y = prepare_targets(spec, Y, units, "<random>")
    return gradcheck_model(model, X, Y, l1, l2)


def random_targets(kind: str, n: int, units: int, rng: np.random.Generator) -> np.ndarray:
    """Targets of the kind a loss takes: values, 0/1 labels, one-hot rows or class indices."""
    if kind == "values":
        return rng.normal(size=(n, units))
    if kind == "binary":
        return rng.integers(0, 2, size=(n, units)).astype(np.float64)
    labels = rng.integers(0, units, size=(n, 1)).astype(np.float64)
    return labels if kind == "index" else np.eye(units)[labels[:, 0].astype(int)]
