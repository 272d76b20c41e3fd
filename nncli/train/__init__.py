"""Training: from data and options to a fitted Model, one EpochReport at a time.

``fit`` never prints: callers (the CLI, tests, scripts) decide what to show. A run can be saved
at any chunk boundary and resumed later with bit-identical results (``checkpoint_parts`` /
``prepare(resume=...)``); ``train_and_save`` runs ``fit`` the way the command line does.

One module per responsibility, imports pointing one way (each imports only those above it):

    options      TrainConfig, its defaults, MONITORS
    state        Training (a prepared run), TrainState, EpochReport, EarlyStopping, new_state
    inputs       load_inputs: the data, validation data and starting model of a run
    checkpoints  checkpoint_parts, and taking a checkpoint's state over (_resume)
    preparing    validate and prepare: checks, split, fill values, standardisation, the model
    loop         fit (chunks, stop requests, divergence), warm_up, kernels_cached, set_threads
    running      train_and_save with RunFiles, the history CSV and signal handling

Every name is re-exported here, so ``from nncli.train import X`` works for all of them. A module
reads its own globals: to patch a constant or a function for a test (``ROWS_PER_CALL``,
``fit`` as ``train_and_save`` calls it, ...), patch it on the submodule that reads it
(``nncli.train.loop``, ``nncli.train.running``, ...), not on this package.
"""

from nncli.train.options import DEFAULT_EPOCHS, MONITORS, TrainConfig
from nncli.train.state import (EarlyStopping, EpochReport, ProgressFn, StopFn, Training,
                               TrainState, _is_adam, _opt_float, new_state)
from nncli.train.inputs import Inputs, load_inputs
from nncli.train.checkpoints import _resume, checkpoint_parts
from nncli.train.preparing import (MIN_STD, STATS_BLOCK, _check_classes, _check_config,
                                   _early_stopping, _fit_scaling, _inputs, _take_weights,
                                   column_means, feature_stats, prepare, validate,
                                   validation_rows)
from nncli.train.loop import (ROWS_PER_CALL, _check_stop, _diverged, fit, kernels_cached,
                              set_threads, warm_up)
from nncli.train.running import (BACKUP_SECONDS, HistoryLog, RunFiles, StopFlag, _cell,
                                 _checkpoint_due, _remove_backup, default_checkpoint,
                                 history_columns, interruptible, train_and_save)

__all__ = [
    # options
    "DEFAULT_EPOCHS", "MONITORS", "TrainConfig",
    # state
    "EarlyStopping", "EpochReport", "ProgressFn", "StopFn", "Training", "TrainState",
    "new_state", "_is_adam", "_opt_float",
    # inputs
    "Inputs", "load_inputs",
    # checkpoints
    "checkpoint_parts", "_resume",
    # preparing
    "MIN_STD", "STATS_BLOCK", "column_means", "feature_stats", "prepare", "validate",
    "validation_rows", "_check_classes", "_check_config", "_early_stopping", "_fit_scaling",
    "_inputs", "_take_weights",
    # loop
    "ROWS_PER_CALL", "fit", "kernels_cached", "set_threads", "warm_up", "_check_stop",
    "_diverged",
    # running
    "BACKUP_SECONDS", "HistoryLog", "RunFiles", "StopFlag", "default_checkpoint",
    "history_columns", "interruptible", "train_and_save", "_cell", "_checkpoint_due",
    "_remove_backup",
]
