"""The metric table: which metrics a run reports, in which order, and which way is better."""

from __future__ import annotations

import pytest

from nncli.errors import UsageError
from nncli.metrics import (
    EPOCH_METRICS,
    METRICS,
    RANKED_METRICS,
    check_metric,
    epoch_metrics,
    mode,
)


def test_epoch_metrics_are_the_training_ones_then_every_one_on_validation_data():
    assert RANKED_METRICS == ("loss", "accuracy", "val_loss", "val_accuracy", "val_mse",
                              "val_mae", "val_r2")
    assert EPOCH_METRICS == (*RANKED_METRICS, "lr")   # then the settings, never validated
    assert epoch_metrics(True, True, scheduled=True) == ["loss", "accuracy", "val_loss",
                                                         "val_accuracy", "lr"]
    assert epoch_metrics(False, False, scheduled=True) == ["loss", "lr"]
    assert epoch_metrics(True, True) == ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert epoch_metrics(True, False) == ["loss", "accuracy"]
    assert epoch_metrics(False, True) == ["loss", "val_loss", "val_mse", "val_mae", "val_r2"]
    assert epoch_metrics(False, False) == ["loss"]


def test_mode_comes_from_the_base_metric():
    assert [mode(m) for m in RANKED_METRICS] == ["min", "max", "min", "max", "min", "min", "max"]
    assert all(m.mode in ("min", "max") for m in METRICS.values())


@pytest.mark.parametrize("name, what, classifier, validation, match", [
    ("val_f1", "--monitor", True, True, "unknown --monitor 'val_f1'; expected one of loss, "),
    ("lr", "--metric", None, True, "--metric lr: lr is reported, not ranked by; expected one "),
    ("val_loss", "--monitor", True, False, "needs validation data.*or monitor loss"),
    ("val_loss", "--metric", None, False, "or rank by --metric loss"),
    ("val_accuracy", "--monitor", False, True, "a regression model has no accuracy; monitor "
                                               "val_loss"),
    ("val_r2", "--monitor", True, True, "a classification model has no r2"),
])
def test_check_metric_names_what_is_wrong(name, what, classifier, validation, match):
    with pytest.raises(UsageError, match=match):
        check_metric(name, what, classifier, validation)


def test_epoch_report_reads_the_tables_metrics_as_attributes():
    from nncli.train import EpochReport

    report = EpochReport(3, {"val_r2": 0.5, "loss": 1.0, "accuracy": None}, 0.25)
    assert report.loss == 1.0 and report.val_r2 == 0.5 and report.val_accuracy is None
    assert list(report.as_dict()) == ["epoch", "loss", "val_r2", "seconds"]
    assert EpochReport.from_dict(report.as_dict()) == EpochReport(3, {"loss": 1.0,
                                                                      "val_r2": 0.5}, 0.25)
    with pytest.raises(AttributeError):
        report.val_f1
