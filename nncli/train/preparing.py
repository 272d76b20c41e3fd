"""Preparing a run: every check of the options against the data (``validate``), then the split,
the fill values, the standardisation and the model (``prepare``), fresh, from a model
(``--init-from``) or from a checkpoint (``--resume``)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import numpy as np

from nncli import optim, schedules, weights
from nncli.arch import LayerSpec, format_arch, layer_shapes, parse_arch
from nncli.data import Dataset
from nncli.errors import UsageError
from nncli.losses import Loss, check_output_layer, get_loss, prepare_targets
from nncli.memory import check_fits
from nncli.metrics import check_metric
from nncli.model import Model
from nncli.options import TrainConfig
from nncli.preprocess import Preprocessing
from nncli.train.checkpoints import take_over
from nncli.train.state import EarlyStopping, ReduceLROnPlateau, Training


def prepare(config: TrainConfig, data: Dataset, val: Dataset | None = None,
            init_from: Model | None = None, resume=None, own_data: bool = False) -> Training:
    """Check the options against the data, split, fill, standardise and build the model.

    ``data`` (and ``val``, separate validation data encoded with ``data``'s schema) are left as
    they are unless ``own_data``: then their arrays are filled and normalised in place, so a
    large data set is not copied (the command line hands its freshly loaded data over; a caller
    reusing one data set for several runs keeps the default). ``resume`` is a checkpoint
    (``modelfile.ModelFile`` with a training state) to continue: its weights, input and target
    scaling, optimizer state, shuffling state, history and early-stopping state are taken
    over; the options of this call must describe the same network and data.
    """
    if resume is not None and init_from is not None:
        raise UsageError("give --resume or --init-from, not both (--resume continues a run with "
                         "its optimizer state; --init-from starts a new one from a model)")
    checked = validate(config, data, val)
    layers, loss, Y = checked.layers, checked.loss, checked.Y
    X = data.X if own_data else data.X.copy()
    opt = optim.settings(config.optimizer, config.lr, config.momentum)
    if val is not None:
        X_val = val.X if own_data else val.X.copy()
        X_train, Y_train, Y_val = X, Y, checked.Y_val
    else:
        n_val = validation_rows(config, len(X))
        X_train, Y_train = X[:len(X) - n_val], Y[:len(Y) - n_val]
        X_val, Y_val = (X[len(X) - n_val:], Y[len(Y) - n_val:]) if n_val else (None, None)
    # the training rows' --sample-weight: Keras's validation_split holds the last rows'
    # weights out with them (and weighs no validation row)
    sample = None if data.sample_weight is None else data.sample_weight[:len(X_train)]
    early = _early_stopping(config, loss.classifier, X_val is not None)
    plateau = _plateau(config, loss.classifier, X_val is not None, opt["learning_rate"])
    info = {"optimizer": opt, "seed": config.seed, "normalize": config.normalize,
            "normalize_target": False, "missing": config.missing,
            "options": config.as_dict(), "history": []}
    schema = copy.deepcopy(data.schema) if data.schema is not None else None
    model = Model.create(layers, X.shape[1], config.loss, config.logits, seed=config.seed,
                         channels=config.channels, info=info, classes=data.classes,
                         feature_names=data.feature_names, target_names=data.target_names,
                         target_columns=data.target_columns,
                         preprocessing=Preprocessing.identity(X.shape[1], schema))
    if resume is not None:
        _take_weights(model, resume.model, "--resume checkpoint")
    elif init_from is not None:
        _take_weights(model, init_from, "--init-from model")
    else:
        _fit_scaling(model, config, X_train, Y_train)
    stage = model.preprocessing
    info["normalize_target"] = stage.scales_targets
    for part in (X, X_val) if val is not None else (X,):
        stage.transform_in_place(part, data.source)  # ours: a copy, or handed over (own_data)
    Y_train = stage.scale_targets(Y_train)
    Y_val = stage.scale_targets(Y_val) if Y_val is not None else None
    class_weight = (weights.class_weights(config.class_weight, loss, Y_train, data.classes,
                                          data.source) if config.class_weight else None)
    if class_weight is not None:
        info["class_weight"] = class_weight
    run = Training(model, config, X_train, Y_train, X_val, Y_val, early=early, plateau=plateau,
                   W=weights.row_weights(class_weight, loss, Y_train, sample))
    if resume is not None:
        take_over(run, resume)
    return run


@dataclass
class Checked:
    """What validating a run found out on the way: its layers and loss, and the targets as
    the loss wants them (one-hot rows for class labels), which ``prepare`` goes on with."""

    layers: list[LayerSpec]
    loss: Loss
    Y: np.ndarray
    Y_val: np.ndarray | None


def validate(config: TrainConfig, data: Dataset, val: Dataset | None = None) -> Checked:
    """Every check of ``config`` against ``data`` that ``prepare`` makes, without copying or
    scaling the features (a sweep checks each combination before it starts any): the
    architecture, the loss against the last layer, the options' ranges, the classes, the
    memory training needs, the targets against the output layer, the validation split, early
    stopping, the row weights."""
    layers = parse_arch(config.arch)
    loss = get_loss(config.loss)
    n_out = layer_shapes(layers, data.X.shape[1], config.channels)[-1].n_out
    check_output_layer(loss, config.logits, layers, n_out)
    _check_config(config)
    _check_classes(loss, n_out, data.classes, data.source)
    optim.settings(config.optimizer, config.lr, config.momentum)
    check_fits(layers, data.X.shape[1], config.channels, min(config.batch_size, len(data.X)),
               config.optimizer, config.early_stopping is not None)
    Y = prepare_targets(loss, data.Y, n_out, data.source, data.line_numbers)
    Y_val = (prepare_targets(loss, val.Y, n_out, val.source, val.line_numbers)
             if val is not None else None)
    n_val = 0 if val is not None else validation_rows(config, len(data.X))
    if len(data.X) - n_val == 0:
        raise UsageError("no training rows left after the validation split")
    _early_stopping(config, loss.classifier, val is not None or n_val > 0)
    _plateau(config, loss.classifier, val is not None or n_val > 0, 1.0)
    _check_row_weights(config, loss, data, Y[:len(Y) - n_val])
    return Checked(layers, loss, Y, Y_val)


def _check_row_weights(config: TrainConfig, loss: Loss, data: Dataset,
                       Y_train: np.ndarray) -> None:
    """--class-weight's labels against the data, and the training rows' weights: --class-weight
    times --sample-weight, which must leave some row weighing more than 0."""
    sample = data.sample_weight
    if config.sample_weight is not None and (sample is None or len(sample) != len(data.X)):
        raise UsageError(f"--sample-weight {config.sample_weight}: {data.source} was read "
                         f"without one weight per row")
    if not config.class_weight and sample is None:
        return
    class_weight = (weights.class_weights(config.class_weight, loss, Y_train, data.classes,
                                          data.source) if config.class_weight else None)
    sample = None if sample is None else sample[:len(Y_train)]
    given = " ".join(f"{flag} {value}" for flag, value in (
        ("--class-weight", config.class_weight), ("--sample-weight", config.sample_weight))
        if value)
    weights.check_row_weights(weights.row_weights(class_weight, loss, Y_train, sample),
                              data.source, given or "the data's row weights")


def validation_rows(config: TrainConfig, n: int) -> int:
    """How many of ``n`` rows --validation-split holds out: Keras trains on the first
    int(n * (1 - split)) rows and validates on the rest."""
    n_val = n - int(n * (1.0 - config.validation_split))
    if config.validation_split and n_val == 0:
        raise UsageError(f"--validation-split {config.validation_split} of {n} rows leaves no "
                         f"validation row")
    return n_val


def _fit_scaling(model: Model, config: TrainConfig, X_train: np.ndarray,
                 Y_train: np.ndarray) -> None:
    """What a new model learns from its training rows besides the weights: its preprocessing
    stage (fill values, the features' standardisation and, for mse, the targets')."""
    model.preprocessing = Preprocessing.fit(
        model.input_schema(), X_train, Y_train, normalize=config.normalize,
        normalize_target=config.normalize_target and model.loss == "mse")


def _early_stopping(cfg: TrainConfig, classifier: bool, has_val: bool) -> EarlyStopping | None:
    if cfg.early_stopping is None:
        if cfg.monitor is not None and cfg.reduce_lr_on_plateau is None:
            raise UsageError("--monitor applies to --early-stopping PATIENCE and "
                             "--reduce-lr-on-plateau PATIENCE")
        if cfg.min_delta:
            raise UsageError("--min-delta applies to --early-stopping PATIENCE")
        return None
    return EarlyStopping(_monitor(cfg, classifier, has_val), cfg.early_stopping, cfg.min_delta)


def _plateau(cfg: TrainConfig, classifier: bool, has_val: bool,
             lr: float) -> ReduceLROnPlateau | None:
    """ReduceLROnPlateau of --reduce-lr-on-plateau, starting from learning rate ``lr``."""
    if cfg.reduce_lr_on_plateau is None:
        if cfg.lr_factor != 0.1 or cfg.min_lr:
            raise UsageError("--lr-factor and --min-lr apply to --reduce-lr-on-plateau PATIENCE")
        return None
    return ReduceLROnPlateau(_monitor(cfg, classifier, has_val), cfg.reduce_lr_on_plateau,
                             cfg.lr_factor, cfg.min_lr, lr)


def _monitor(cfg: TrainConfig, classifier: bool, has_val: bool) -> str:
    """--monitor, checked: by default val_loss with validation data, else loss."""
    monitor = cfg.monitor or ("val_loss" if has_val else "loss")
    return check_metric(monitor, "--monitor", classifier, has_val)



def _check_config(cfg: TrainConfig) -> None:
    if cfg.epochs < 0:
        raise UsageError(f"--epochs must be 0 or more, received {cfg.epochs}")
    if cfg.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, received {cfg.batch_size}")
    if not 0 <= cfg.validation_split < 1:
        raise UsageError(f"--validation-split must lie in [0, 1), received "
                         f"{cfg.validation_split}")
    if cfg.early_stopping is not None and cfg.early_stopping < 0:
        raise UsageError(f"--early-stopping PATIENCE must be 0 or more, received "
                         f"{cfg.early_stopping}")
    if not cfg.min_delta >= 0:
        raise UsageError(f"--min-delta must be 0 or more, received {cfg.min_delta}")
    check_penalties(cfg.l1, cfg.l2)
    _check_schedule(cfg)


def check_penalties(l1: float, l2: float) -> None:
    """--l1 and --l2: finite and 0 or more (UsageError)."""
    for flag, value in (("--l1", l1), ("--l2", l2)):
        if not 0 <= value < float("inf"):
            raise UsageError(f"{flag} must be a finite number, 0 or more, received {value}")


def _check_schedule(cfg: TrainConfig) -> None:
    """--lr-schedule, --warmup-epochs and --reduce-lr-on-plateau's settings."""
    schedules.parse(cfg.lr_schedule)
    if cfg.warmup_epochs < 0:
        raise UsageError(f"--warmup-epochs must be 0 or more, received {cfg.warmup_epochs}")
    if cfg.reduce_lr_on_plateau is not None and cfg.reduce_lr_on_plateau < 0:
        raise UsageError(f"--reduce-lr-on-plateau PATIENCE must be 0 or more, received "
                         f"{cfg.reduce_lr_on_plateau}")
    if not 0 < cfg.lr_factor < 1:
        raise UsageError(f"--lr-factor must lie in (0, 1), received {cfg.lr_factor}")
    if not cfg.min_lr >= 0:
        raise UsageError(f"--min-lr must be 0 or more, received {cfg.min_lr}")


def _check_classes(loss, units: int, classes: list[str] | None, source: str) -> None:
    """Text class labels that the output layer cannot hold, named by their text (numeric labels
    are checked row by row, with their line, by losses.prepare_targets)."""
    if not classes:
        return
    if loss.targets in ("index", "onehot"):
        room, fix = units, f"widen the last layer to {len(classes)} units"
    elif loss.targets == "binary" and units == 1:
        room, fix = 2, (f"for {len(classes)} classes use '{len(classes)}linear' with --loss "
                        f"sparse_cce --logits")
    else:
        return
    if len(classes) > room:
        shown = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
        raise UsageError(f"{source}: the labels name {len(classes)} classes ({shown}), but "
                         f"--loss {loss.name} on {units} output unit{'s' if units > 1 else ''}"
                         f" holds {room}; {fix}")


def _take_weights(model: Model, source: Model, what: str) -> None:
    if (source.arch, source.n_inputs, source.channels) != \
            (model.arch, model.n_inputs, model.channels):
        raise UsageError(
            f"{what} is '{source.arch}' on {_inputs(source)}, but this run is "
            f"'{format_arch(model.layers)}' on {_inputs(model)}; they must match")
    model.params[...] = source.params
    # Continuing from a model keeps the preprocessing its weights were trained for, and its
    # columns (the data was read with them).
    model.preprocessing = copy.deepcopy(replace(source.preprocessing,
                                                schema=source.input_schema()))


def _inputs(model: Model) -> str:
    return f"{model.n_inputs} inputs" + (f" of {model.channels} channels" if model.channels > 1
                                         else "")
