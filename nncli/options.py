"""The options of a training run, each declared once: ``OPTIONS``.

A row says an option's flag, type, default and help, what a sweep may do with it and why
``nncli cv`` refuses it, if it does. From the table come ``nncli train``'s options
(nncli.cli.options turns rows into Typer parameters), ``nncli cv``'s, the options ``nncli
sweep`` accepts and which of them may vary, ``TrainConfig`` (the options that shape the model
and its training, stored in the model file), and ``--json``'s ``options``.

The command line's spellings that differ from the library's are declared here too: a flag that
negates a field (``--no-normalize`` sets ``normalize`` False), ``--drop-invalid-rows`` (the same
as ``--missing drop``) and ``--delimiter tab``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from nncli.errors import UsageError
from nncli.metrics import RANKED_METRICS
from nncli.optim import OPTIMIZERS
from nncli import schedules, weightspec

MISSING_CHOICES = ("mean", "error", "drop")   # nncli.data's policies (a test checks they agree)


@dataclass(frozen=True)
class Sweep:
    """What ``nncli sweep`` does with an option: ``vary`` it (a list or a range gives each
    trial its value), take the ``same`` value for every trial, or take ``no`` such option;
    ``why`` says why not (shown in the error)."""

    role: str
    why: str = ""


VARY = Sweep("vary")
_DATA_ONCE = Sweep("same", "the data is read once, the same way for every trial")
_MODEL_ONCE = Sweep("same", "its model is read once, the same way for every trial")


def _not_swept(why: str = "") -> Sweep:
    return Sweep("no", why)


@dataclass(frozen=True)
class Option:
    """One option of ``nncli train``.

    ``name`` is the parameter's Python name; with ``field`` the TrainConfig field it sets
    (``negate``: to the opposite of the flag), without it the option belongs to the run (files,
    threads, output). ``type`` is a value's type (a repeatable option's item type);
    ``choices`` limit a text option; ``parse`` turns the text into the library's value.
    ``unset`` is the field's value when the command line leaves the option at its default
    None (so that the command can tell "not given", as --drop-invalid-rows must).
    ``cv``: why ``nncli cv``, whose folds are runs of their own, refuses the option (empty:
    it takes it as train does).
    """

    name: str
    flags: tuple[str, ...]
    type: type
    default: Any
    help: str
    sweep: Sweep = VARY
    field: str | None = None
    negate: bool = False
    required: bool = False
    repeat: bool = False
    choices: tuple[str, ...] = ()
    metavar: str | None = None
    parse: Callable[[Any], Any] | None = None
    unset: Any = None
    cv: str = ""

    @property
    def flag(self) -> str:
        return self.flags[0]

    @property
    def is_flag(self) -> bool:
        return self.type is bool

    @property
    def config_default(self) -> Any:
        """The TrainConfig field's default."""
        if self.negate:
            return not self.default
        if self.repeat:
            return []
        return self.unset if self.default is None and self.unset is not None else self.default


def delimiter_char(text: str | None) -> str | None:
    """--delimiter as a character: 'tab' (or a typed \\t) means a tab."""
    if text is None:
        return None
    text = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}.get(
        text.lower(), text)
    if len(text) != 1 or text in "\"\n\r":
        raise UsageError(f"--delimiter must be one character (or 'tab'), received {text!r}")
    return text


def encoding_name(text: str | None) -> str | None:
    """--encoding as typed, once Python is known to read text in it (a codec name Python does
    not know, or one of bytes to bytes such as base64, is a UsageError)."""
    if text is None:
        return None
    try:
        b"\n".decode(text)   # bytes.decode takes text encodings only (not rot13, base64)
    except UnicodeError:
        pass   # a text encoding that cannot read a lone b"\n" (UTF-16): it exists
    except (LookupError, ValueError):   # ValueError: a NUL in the name
        raise UsageError(f"--encoding {text}: not a text encoding Python knows (e.g. utf-8, "
                         f"latin-1, cp1252, utf-16)") from None
    return text


# cv writes a fold's model once it is trained, and starts again from the first fold
_NO_FOLD_CHECKPOINTS = "a cross-validation writes no checkpoints: it runs again from the start"
_MONITORS = ", ".join(RANKED_METRICS[:-1]) + " or " + RANKED_METRICS[-1]

OPTIONS: tuple[Option, ...] = (
    Option("arch", ("--arch",), str, None, "Layers, e.g. 25relu-15relu-10linear (activations: "
           "relu, sigmoid, tanh, linear, softmax), or 1-D conv/local layers: 8conv5s2relu, "
           "1local20s10relu.", field="arch", required=True),
    Option("loss", ("--loss",), str, None, "mse, bce, cce or sparse_cce.", field="loss",
           required=True),
    Option("logits", ("--logits",), bool, False, "The last layer is linear and the loss "
           "applies sigmoid/softmax itself (numerically stable).", field="logits"),
    Option("channels", ("--channels",), int, 1, "Read each row's features as a signal of "
           "length x CHANNELS values, channels last (for conv and local layers).",
           field="channels"),
    Option("optimizer", ("--optimizer",), str, "adam", " or ".join(OPTIMIZERS) + ".",
           field="optimizer", choices=tuple(OPTIMIZERS)),
    Option("lr", ("--lr",), float, None, "Learning rate \\[default: " + ", ".join(
        f"{o.lr:g} for {o.name}" for o in OPTIMIZERS.values()) + "].", field="lr"),
    Option("momentum", ("--momentum",), float, 0.0, "SGD momentum.", field="momentum"),
    Option("epochs", ("--epochs",), int, 20, "Passes over the training rows (0 writes the "
           "freshly initialised model).", field="epochs"),
    Option("batch_size", ("--batch-size",), int, 32, "Rows per step; >= rows is full-batch "
           "gradient descent.", field="batch_size"),
    Option("validation_split", ("--validation-split",), float, 0.0, "Hold out the LAST "
           "fraction of rows (before shuffling), as Keras.", field="validation_split"),
    Option("validation_data", ("--validation-data",), str, None, "Validate on this file "
           "instead.", sweep=_DATA_ONCE),
    Option("target", ("--target",), str, None, "Target column by name or 0-based index; repeat "
           "for several \\[default: the last column].", sweep=_DATA_ONCE, repeat=True),
    Option("seed", ("--seed",), int, 0, "Seed of the initial weights and shuffling.",
           field="seed"),
    Option("threads", ("--threads",), int, None, "Compute threads \\[default: all cores]; "
           "results do not depend on it.", sweep=_not_swept("use --threads-per-trial")),
    Option("no_normalize", ("--no-normalize",), bool, False, "Do not standardise features.",
           field="normalize", negate=True),
    Option("init_from", ("--init-from",), Path, None, "Start from this model's weights (same "
           "architecture).", sweep=_MODEL_ONCE),
    Option("output", ("-o", "--output"), Path, Path("model.safetensors"), "Where to write the "
           "model.", sweep=_not_swept("-o names the best model")),
    Option("resume", ("--resume",), Path, None, "Continue the run saved in this checkpoint (or "
           "interrupted model) with its optimizer and shuffling state; --epochs counts all "
           "epochs, those done included.",
           sweep=_not_swept("--resume DIR continues a sweep"),
           cv="a cross-validation is not resumed: it runs again from the start"),
    Option("checkpoint", ("--checkpoint",), Path, None, "Save the run here every "
           "--checkpoint-every epochs, and keep it \\[default: OUTPUT.ckpt, at most every "
           "10 s, removed once the model is written].",
           sweep=_not_swept("each trial checkpoints through Ray Tune"),
           cv=_NO_FOLD_CHECKPOINTS),
    Option("checkpoint_every", ("--checkpoint-every",), int, 1, "Epochs between checkpoints; "
           "0 writes none.", sweep=_not_swept("a trial checkpoints by time: --checkpoint-seconds"),
           cv=_NO_FOLD_CHECKPOINTS),
    Option("early_stopping", ("--early-stopping",), int, None, "Stop after PATIENCE epochs "
           "without improvement of --monitor, and keep the best epoch's weights.",
           field="early_stopping", metavar="PATIENCE"),
    Option("min_delta", ("--min-delta",), float, 0.0, "Smallest change of --monitor that counts "
           "as an improvement.", field="min_delta"),
    Option("l2", ("--l2",), float, 0.0, "L2 penalty on every kernel (not the biases): the "
           "loss gains L * sum(w^2), as Keras's kernel_regularizer L2(L); the reported loss "
           "and val_loss include it.", field="l2", metavar="L"),
    Option("l1", ("--l1",), float, 0.0, "L1 penalty on every kernel (not the biases): the "
           "loss gains L * sum(|w|), as Keras's kernel_regularizer L1(L) (with --l2: L1L2).",
           field="l1", metavar="L"),
    Option("lr_schedule", ("--lr-schedule",), str, schedules.DEFAULT, "How the learning rate "
           "changes from mini-batch to mini-batch: constant, exponential:RATE:STEPS (Keras "
           "ExponentialDecay(lr, decay_steps=STEPS, decay_rate=RATE)) or cosine[:STEPS[:ALPHA]] "
           "(Keras CosineDecay(lr, decay_steps=STEPS, alpha=ALPHA); STEPS defaults to the "
           "run's steps after the warm-up).", field="lr_schedule", parse=schedules.check,
           metavar="SCHEDULE"),
    Option("warmup_epochs", ("--warmup-epochs",), int, 0, "Raise the learning rate linearly "
           "from 0 over this many epochs before the schedule (Keras CosineDecay's "
           "warmup_steps, counted in epochs).", field="warmup_epochs"),
    Option("reduce_lr_on_plateau", ("--reduce-lr-on-plateau",), int, None, "Multiply the "
           "learning rate by --lr-factor after PATIENCE epochs without improvement of --monitor "
           "(Keras ReduceLROnPlateau, min_delta 1e-4, cooldown 0).",
           field="reduce_lr_on_plateau", metavar="PATIENCE"),
    Option("lr_factor", ("--lr-factor",), float, 0.1, "The factor by which "
           "--reduce-lr-on-plateau multiplies the learning rate.",
           field="lr_factor"),
    Option("min_lr", ("--min-lr",), float, 0.0, "--reduce-lr-on-plateau lowers the learning "
           "rate no further than this.", field="min_lr"),
    Option("class_weight", ("--class-weight",), str, None, "Multiply each training row's "
           "loss by its class's weight (Keras class_weight): balanced (n_rows / (n_classes * "
           "count), as scikit-learn), LABEL=W,... (labels as in the file; others weigh 1) or "
           "none. Classifier losses only; validation losses are not weighted.",
           field="class_weight", parse=weightspec.check_class_weight, metavar="WEIGHTS"),
    Option("sample_weight", ("--sample-weight",), str, None, "Multiply each training row's "
           "loss by its value in this column (name or 0-based index; in an NPZ, the 1-D array "
           "of that name), a number 0 or more, left out of the features (Keras sample_weight);"
           " with --class-weight the two multiply. Validation losses are not weighted.",
           sweep=_DATA_ONCE, field="sample_weight", metavar="COL"),
    Option("monitor", ("--monitor",), str, None, "What --early-stopping and "
           f"--reduce-lr-on-plateau watch: {_MONITORS} \\[default: val_loss with validation "
           "data, else loss].", field="monitor",
           choices=RANKED_METRICS, metavar="METRIC"),
    Option("history", ("--history",), Path, None, "Write one CSV row of metrics per epoch "
           "here, flushed every epoch.",
           sweep=_not_swept("each trial's history is in its model file"),
           cv="each fold's history is in its model file (-o DIR)"),
    Option("missing", ("--missing",), str, None, "Missing feature cells (empty, NA, NaN, N/A, "
           "?, null): mean fills a number with the column's training mean (a category column "
           "gets a 'missing' category); error stops at the first; drop leaves the row out "
           "\\[default: mean].", sweep=_DATA_ONCE, field="missing", choices=MISSING_CHOICES,
           unset="mean"),
    Option("drop_invalid_rows", ("--drop-invalid-rows",), bool, False, "Same as --missing drop "
           "(rows with missing, NaN or infinite features are left out, and counted).",
           sweep=_DATA_ONCE),
    Option("categorical", ("--categorical",), str, None, "One-hot encode this column (name or "
           "0-based index) even though it holds numbers; repeat for several. Text columns are "
           "categorical anyway.", sweep=_DATA_ONCE, field="categorical", repeat=True),
    Option("numeric", ("--numeric",), str, None, "Read this column (name or 0-based index) "
           "as numbers even though some cells are text (those become missing values); repeat "
           "for several.", sweep=_DATA_ONCE, field="numeric", repeat=True),
    Option("ignore", ("--ignore",), str, None, "Leave this column (name or 0-based index) "
           "out of the features, e.g. an ID; repeat for several.", sweep=_DATA_ONCE,
           field="ignore", repeat=True),
    Option("features", ("--features",), str, None, "Only these columns are features, in this "
           "order (names or 0-based indices, comma-separated).", sweep=_DATA_ONCE,
           field="features", repeat=True, metavar="COL,..."),
    Option("delimiter", ("--delimiter",), str, None, "The CSV delimiter: ',', ';', tab, '|' or "
           "another character \\[default: detected from the first lines; tab for .tsv].",
           sweep=_DATA_ONCE, field="delimiter", parse=delimiter_char),
    Option("encoding", ("--encoding",), str, None, "The CSV's text encoding, any Python reads: "
           "latin-1, cp1252, utf-16, ... \\[default: UTF-8, or UTF-16 after its byte order "
           "mark].", sweep=_DATA_ONCE, field="encoding", parse=encoding_name, metavar="NAME"),
    Option("no_normalize_target", ("--no-normalize-target",), bool, False, "mse: learn the "
           "targets as they are instead of standardised (predictions are in the targets' units "
           "either way).", field="normalize_target", negate=True),
    Option("quiet", ("--quiet", "-q"), bool, False, "No progress on stderr.",
           sweep=_not_swept()),
    Option("json_out", ("--json",), bool, False, "Print a JSON summary on stdout.",
           sweep=_not_swept()),
)
BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}
# nncli gradcheck's own settings, beside the network it builds: the library's defaults
# (nncli.gradcheck) and the command's, here so that the command line reads them without
# loading the kernels.
GRADCHECK_DEFAULTS = {"inputs": 5, "batch": 4, "seed": 0, "tol": 1e-5}
# The run's options that --json's "options" shows beside the TrainConfig (what the run read and
# wrote); -o is the document's "model", --quiet and --json shape the output.
RUN_RECORDED = ("validation_data", "target", "threads", "init_from", "resume", "checkpoint",
                "checkpoint_every", "history")


def _config_fields() -> list[tuple]:
    fields = []
    for o in OPTIONS:
        if o.field is None:
            continue
        default = o.config_default
        if o.required:
            fields.append((o.field, o.type))
        elif o.repeat:
            fields.append((o.field, list[o.type], dataclasses.field(default_factory=list)))
        else:
            kind: Any = o.type if default is not None else o.type | None
            fields.append((o.field, kind, dataclasses.field(default=default)))
    return fields


def _from_options(cls, **values) -> "TrainConfig":
    """The TrainConfig of ``nncli train``'s options as the command (or a sweep's trial)
    receives them, by parameter name; the run's own options (files, threads) are ignored.
    Options not given take their defaults."""
    missing = values.get("missing")
    if values.get("drop_invalid_rows") and missing not in (None, "drop"):
        raise UsageError(f"--drop-invalid-rows means --missing drop; it contradicts --missing "
                         f"{missing}")
    if values.get("drop_invalid_rows"):
        values["missing"] = "drop"
    out = {}
    for o in OPTIONS:
        if o.field is None or values.get(o.name) is None:
            continue
        value = values[o.name]
        if o.negate:
            value = not value
        elif o.repeat:
            value = list(value)
        elif o.parse is not None:
            value = o.parse(value)
        out[o.field] = value
    return cls(**out)


def _as_dict(self) -> dict:
    """The options as stored in the model file and printed by --json."""
    return dataclasses.asdict(self)


# Every option of a training run that shapes the model and its training (the model file and
# --json record them): the rows of OPTIONS that have a field, with their defaults. ``missing``
# None means mean, as the data readers take it.
TrainConfig = dataclasses.make_dataclass(
    "TrainConfig", _config_fields(),
    namespace={"from_options": classmethod(_from_options), "as_dict": _as_dict,
               "__doc__": "Every option of a training run that shapes the model and its "
                          "training; built from OPTIONS (see the module docstring)."})
TrainConfig.__module__ = __name__   # pickled by reference, as a Ray trial's arguments are


def config_defaults() -> dict[str, Any]:
    """Each TrainConfig field's default."""
    return {o.field: o.config_default for o in OPTIONS if o.field is not None}


def convert(name: str, text: str) -> Any:
    """One value of option ``name`` as typed, checked and converted as ``nncli train`` would
    (a text option stays text: TrainConfig.from_options parses it)."""
    option = BY_NAME[name]
    try:
        if option.type in (int, float):
            return option.type(text)
    except ValueError:
        raise UsageError(f"{option.flag} {text}: not a valid {option.type.__name__}") from None
    if option.choices and text not in option.choices:
        raise UsageError(f"{option.flag} {text}: not a valid {option.name}; expected one of "
                         f"{', '.join(option.choices)}")
    return text


def number_kind(name: str) -> str | None:
    """"int" or "float" for a numeric option (a sweep may give a range), else None."""
    return {int: "int", float: "float"}.get(BY_NAME[name].type)
