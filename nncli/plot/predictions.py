"""Each member's probabilities on labelled data, what the evaluation figures are drawn from:
a model file on ``--data FILE`` read with its own columns (as ``nncli eval`` reads it), a
cross-validation's fold on its held-out rows (as ``nncli cv`` judged it). The probabilities
and targets go through ``nncli.evaluate``'s own steps, so an AUC drawn is eval's AUC.

A *series* is one curve's input: a name (a class, a label, ``top class``), the 0/1 truth of
each row and each row's score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from nncli.data import Dataset, ReadOptions, read_table, training_data
from nncli.decision import check_threshold, decide, probabilities, thresholded
from nncli.errors import UsageError
from nncli.evaluate import class_names, class_view, output_names, prepared
from nncli.model import Model
from nncli.plot.sources import CvSource, Member
from nncli.scores.classification import confusion_matrix

Series = tuple[str, np.ndarray, np.ndarray]
# the name of the one curve of a reliability diagram of more than two classes
TOP_CLASS = "top class"


@dataclass
class Scored:
    """One member's probabilities on its rows: ``proba`` (n, units) from its outputs and ``Y``
    its targets as prepared for its loss (one-hot rows, 0/1 columns). ``cv`` is the
    cross-validation a fold belongs to."""

    label: str
    model: Model
    Y: np.ndarray
    proba: np.ndarray
    cv: CvSource | None = None

    @property
    def multilabel(self) -> bool:
        return thresholded(self.model) and self.model.n_outputs > 1

    @property
    def names(self) -> list[str]:
        """The classes (single-label) or the labels (multi-label), in column order."""
        return output_names(self.model) if self.multilabel else class_names(self.model)

    def ranked(self) -> list[Series]:
        """The curves of a ranking (ROC, precision-recall): the positive class (the second)
        of two, else each class against the rest, or each label."""
        names = self.names
        if self.multilabel:
            truth = self.Y >= 0.5
            return [(name, truth[:, j], self.proba[:, j]) for j, name in enumerate(names)]
        truth, _, proba = self._classes(None)
        if len(names) == 2:
            return [(names[1], truth == 1, proba[:, 1])]
        return [(name, truth == j, proba[:, j]) for j, name in enumerate(names)]

    def confidence(self) -> list[Series]:
        """The curves of a reliability diagram: the positive class's probability (two
        classes), each label's (multi-label), or with more classes the top class's
        probability against whether it is the true class (top-label calibration)."""
        if self.multilabel or len(self.names) == 2:
            return self.ranked()
        truth, predicted, proba = self._classes(None)
        return [(TOP_CLASS, predicted == truth, proba.max(axis=1))]

    def matrices(self, threshold: float | None) -> list[tuple[str | None, list[str], np.ndarray]]:
        """(label or None, class names, confusion matrix (rows true, columns decided)): one
        for a single-label classifier, one 2 x 2 per label of a multi-label one; a sigmoid
        output is positive when its probability is above ``threshold`` (default 0.5)."""
        if self.multilabel:
            decided = decide(self.model, self.proba, check_threshold(self.model, threshold))
            truth = (self.Y >= 0.5).astype(np.int64)
            return [(name, ["0", "1"], confusion_matrix(truth[:, j], decided[:, j], 2))
                    for j, name in enumerate(self.names)]
        truth, decided, _ = self._classes(threshold)
        return [(None, self.names, confusion_matrix(truth, decided, len(self.names)))]

    def _classes(self, threshold: float | None):
        return class_view(self.model, self.proba, self.Y, check_threshold(self.model, threshold))


def score_members(members: Sequence[Member], data: str | None = None,
                  targets: list[str] | None = None, options: ReadOptions | None = None,
                  say: Callable[[str], None] | None = None) -> list[Scored]:
    """Each member's probabilities: a model file's on ``data`` (read once, then through each
    model's columns; ``targets``: --target), a fold's on its held-out rows (from the file its
    cv.json records, or ``data``). ``say`` hears what reading the data noted."""
    table = None
    out = []
    for member in members:
        model = member.model
        if not model.loss_spec.classifier:
            raise UsageError(f"{member.path}: a regression model (--loss {model.loss}); "
                             f"--kind roc, pr, confusion and calibration draw classifiers "
                             f"(--kind history draws its training curves)")
        if member.cv is not None:
            ds = _held_out(member, data)
        else:
            if data is None:
                raise UsageError(f"{member.path}: which rows to judge the model on? Give "
                                 f"labelled data with --data FILE")
            if table is None:
                options = options or ReadOptions()
                table = read_table(data, delimiter=options.delimiter, encoding=options.encoding)
            ds = training_data(table.subset(np.ones(table.n_rows, dtype=bool)), targets,
                               classes=model.classes, options=options,
                               schema=model.input_schema(), model_targets=model.target_lookup())
        for message in ds.messages():
            if say is not None:
                say(f"{message} ({member.label})")
        out.append(_scored(member, ds))
    return out


def _held_out(member: Member, data: str | None) -> Dataset:
    from nncli.crossval import held_out_data

    folds = member.cv.folds(data)
    return held_out_data(folds, member.fold, member.model, member.cv.document["options"]
                         .get("target"))


def _scored(member: Member, ds: Dataset) -> Scored:
    model = member.model
    X, Y = prepared(model, ds.X, ds.Y, ds.source, ds.line_numbers, own_data=True)
    return Scored(member.label, model, Y, probabilities(model, model.outputs(X)), member.cv)
