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

import functools
import os
from collections.abc import Iterable
from typing import TextIO

import numpy as np

from nncli.decision import check_threshold, decide, probabilities
from nncli.errors import UsageError
from nncli.evaluate import class_names, output_names
from nncli.model import K, Model, PredictScratch

OUTPUTS = ("proba", "class", "logits")
# Rows write_csv formats at a time: its text buffer is CSV_ROWS x columns x K.MAX_CELL bytes.
CSV_ROWS = 4096


class Buffers:
    """What ``predict`` reuses from one block of rows to the next: the preprocessed rows and
    the network's scratch, made for the first block and remade only for a longer one, and the
    preprocessing's fill values (one model's: a Buffers serves one model)."""

    def __init__(self) -> None:
        self.inputs: np.ndarray | None = None
        self.network: PredictScratch | None = None
        self.fill: np.ndarray | None = None     # the stage's fill_values(), once

    def outputs(self, model: Model, X: np.ndarray) -> np.ndarray:
        """``model``'s outputs for raw features X (left as they are), through the buffers."""
        if X.dtype == np.float64:   # float64 rows stay float64 (Preprocessing.transform)
            return model.outputs(model.preprocessing.transform(X))
        if self.inputs is None or len(self.inputs) < len(X) or \
                self.inputs.shape[1] != X.shape[1]:
            self.inputs = np.empty(X.shape, np.float32)
            self.network = model.predict_scratch(len(X))
        if self.fill is None:
            self.fill = model.preprocessing.fill_values()
        inputs = model.preprocessing.transform(X, out=self.inputs[:len(X)], fill=self.fill)
        return model.outputs(inputs, self.network)


def predict(model: Model, X: np.ndarray, output: str = "proba",
            threshold: float | None = None,
            buffers: Buffers | None = None) -> tuple[list[str], np.ndarray]:
    """(column names, values) for raw features X (preprocessed into another array: X is left
    as it is); ``threshold``: --threshold, for ``class`` only (see check_options);
    ``buffers``: kept by a caller predicting a block of rows at a time."""
    check_options(model, output, threshold)
    spec = model.loss_spec
    raw = (buffers or Buffers()).outputs(model, X)
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


def write_predictions(stream: TextIO, model: Model, blocks: Iterable[np.ndarray],
                      output: str = "proba", threshold: float | None = None) -> None:
    """Predictions of each block of raw rows (``nncli.data.iter_features``) as one CSV with
    one header: each block preprocessed, run through the network, formatted and written before
    the next is read, in buffers reused from block to block."""
    buffers = Buffers()
    header = True
    for X in blocks:
        columns, values = predict(model, X, output, threshold, buffers)
        write_csv(stream, columns, values, header)
        header = False


def check_options(model: Model, output: str, threshold: float | None) -> None:
    """A UsageError for an unknown ``output``, or a threshold given with an output it does not
    decide (anything but ``class``) or for a model that takes none (see decision)."""
    if output not in OUTPUTS:
        raise UsageError(f"unknown --output '{output}'; expected one of {', '.join(OUTPUTS)}")
    if threshold is not None and output != "class":
        raise UsageError(f"--threshold decides classes: it goes with --output class, not "
                         f"--output {output}")
    check_threshold(model, threshold)


def write_csv(stream: TextIO, columns: list[str], values: np.ndarray,
              header: bool = True) -> None:
    """CSV with a header (unless not ``header``: the rows of a later block); floats as '%.9g'
    writes them (the shortest form that round-trips float32), formatted by a compiled kernel
    CSV_ROWS rows at a time and written a block's bytes at a time."""
    if header:
        stream.write(",".join(_csv_cell(c) for c in columns) + "\n")
    if values.dtype.kind != "f":
        for row in values:
            stream.write(",".join(_csv_cell(str(v)) for v in row) + "\n")
        return
    if values.dtype not in (np.float32, np.float64):
        values = values.astype(np.float64)   # '%.9g' % float(v) sees float64 too
    sink = _byte_sink(stream)
    step = max(1, min(CSV_ROWS, len(values)))
    buf = np.empty(step * max(1, values.shape[1]) * K.MAX_CELL, np.uint8)
    for lo in range(0, len(values), step):
        text = csv_rows(buf, np.ascontiguousarray(values[lo:lo + step]))
        if sink is None:
            stream.write(text.tobytes().decode("ascii"))
        else:
            sink.write(text)


def csv_rows(buf: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The rows of ``values`` (float32 or float64, C-contiguous) as CSV text in ``buf`` (uint8,
    K.MAX_CELL bytes a cell); returns the view of ``buf`` they fill."""
    k = values.shape[1]
    written = K.format_parts(buf, values, _powers_of_ten())
    if written >= 0:
        return buf[:written]
    idx, pos = 0, 0
    while True:
        idx, pos = K.format_rows(buf, values, _powers_of_ten(), idx, pos)
        if idx == values.size:
            return buf[:pos]
        # a cell too near a tie for the kernel's integers (nncli.kernels_text): Python decides
        r, c = divmod(idx, k)
        text = ("%.9g" % float(values[r, c]) + ("," if c < k - 1 else "\n")).encode("ascii")
        buf[pos:pos + len(text)] = np.frombuffer(text, np.uint8)
        pos += len(text)
        idx += 1


@functools.cache
def _powers_of_ten() -> np.ndarray:
    return K.powers_of_ten()


def _byte_sink(stream: TextIO):
    """The binary buffer under a text stream, flushed, when bytes written there read as the
    same text (ASCII-compatible encoding, no newline translation); else None."""
    buffer = getattr(stream, "buffer", None)
    encoding = getattr(stream, "encoding", None)
    if buffer is None or encoding is None or os.linesep != "\n":
        return None
    try:
        if "0.5e-,\n".encode(encoding) != b"0.5e-,\n":
            return None
    except LookupError:
        return None
    stream.flush()
    return buffer


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
