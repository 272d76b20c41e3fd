"""Training: from data and options to a fitted Model, one EpochReport at a time.

``run(config, inputs, sink)`` is the one run that ``nncli train`` and a sweep's trials call;
``fit`` (the epochs) never prints: a ``Sink`` decides what to show and write. A run can be saved
at any chunk boundary and resumed later with bit-identical results (``checkpoint_parts`` /
``prepare(resume=...)``).

The options of a run (``TrainConfig``, built from the table ``OPTIONS``) live in
``nncli.options``, outside this package, so that the command line can build its options without
loading the kernels. One module per responsibility, imports pointing one way (each imports only
those above it):

    state        Training (a prepared run), TrainState, EpochReport, EarlyStopping, new_state
    inputs       load_inputs: the data, validation data and starting model of a run
    checkpoints  checkpoint_parts, and taking a checkpoint's state over (take_over)
    preparing    validate and prepare: checks, split, fill values, standardisation, the model
    loop         fit (chunks, stop requests, divergence), warm_up, kernels_cached, set_threads
    running      run, run_in_step, Sink and Result: the order of a run's steps
    signals      interruptible: SIGINT/SIGTERM ask a run to stop
    saving       FileSink and RunFiles: the model, checkpoints and history CSV of a run

The public names are re-exported here. A module reads its own globals: to patch a constant or a
function for a test (``ROWS_PER_CALL``, ``fit`` as ``run`` calls it, ...), patch it on the
submodule that reads it (``nncli.train.loop``, ``nncli.train.running``, ...).
"""

from nncli.options import OPTIONS, TrainConfig
from nncli.train.state import EarlyStopping, EpochReport, Training, TrainState, new_state
from nncli.train.inputs import Inputs, load_inputs
from nncli.train.checkpoints import checkpoint_parts
from nncli.train.preparing import prepare, validate, validation_rows
from nncli.train.loop import fit, kernels_cached, set_threads, warm_up
from nncli.train.running import Result, Sink, Sinks, run, run_in_step, run_prepared
from nncli.train.signals import interruptible
from nncli.train.saving import FileSink, HistoryLog, RunFiles, default_checkpoint, history_columns

__all__ = ["OPTIONS", "TrainConfig", "EarlyStopping", "EpochReport", "Training", "TrainState",
           "new_state", "Inputs", "load_inputs", "checkpoint_parts", "prepare", "validate",
           "validation_rows", "fit", "kernels_cached", "set_threads", "warm_up", "Result",
           "Sink", "Sinks", "run", "run_in_step", "run_prepared", "interruptible", "FileSink",
           "HistoryLog", "RunFiles", "default_checkpoint", "history_columns"]
