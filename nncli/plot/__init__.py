"""``nncli plot``: pictures of models, one module per responsibility, each importing only those
above it; matplotlib is imported inside the drawing functions only, so importing this package
(or running any other command) never loads it.

    figure       formats, the matplotlib check, a bare Figure's settings, colours, atomic save
    sources      what MODELS stand for: model files, a sweep's best trials, a cv's folds
    history      the training curves of each model's history (--kind history)
    predictions  each model's probabilities on labelled data (a cv fold: its held-out rows)
    evaluation   ROC, precision-recall, confusion matrix and reliability figures
"""

from __future__ import annotations

from nncli.plot.evaluation import KINDS, EvaluationSummary, plot_evaluation
from nncli.plot.figure import (DPI, FORMATS, INSTALL_HINT, check_output, output_format,
                               require_matplotlib)
from nncli.plot.history import Panel, PlotSummary, metric_families, plot_histories, read_runs
from nncli.plot.predictions import Scored, score_members
from nncli.plot.sources import Member, members

__all__ = ["DPI", "FORMATS", "INSTALL_HINT", "check_output", "output_format",
           "require_matplotlib", "Panel", "PlotSummary", "metric_families", "plot_histories",
           "read_runs", "KINDS", "EvaluationSummary", "plot_evaluation", "Scored",
           "score_members", "Member", "members"]
