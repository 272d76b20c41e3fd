"""Checkpoints: what makes a model file a resumable checkpoint of a run (``checkpoint_parts``),
and taking a checkpoint's training state over (``take_over``, called by ``prepare(resume=...)``),
so that the resumed run goes on bit for bit as if it had never stopped."""

from __future__ import annotations

import numpy as np

from nncli import optim
from nncli.errors import ModelFileError, UsageError
from nncli.train.state import STATE_FIELDS, EpochReport, Training, TrainState, new_state


def state_tensor_name(name: str) -> str:
    """The model file's tensor of an optimizer state tensor (``optimizer.m``)."""
    return f"optimizer.{name}"


def checkpoint_parts(run: Training) -> tuple[dict, dict[str, np.ndarray]]:
    """(training_state document, extra tensors) that make a model file a checkpoint of ``run``.

    Pass them to ``modelfile.save_model(run.model, path, state, tensors)``.
    """
    st = run.state if run.state is not None else new_state(run.model, run.config)
    state = {"epoch": st.epoch, "rows_done": st.rows_done, "loss_sum": st.loss_sum,
             "correct": st.correct, "seconds": st.seconds, "step": st.step, "rng": st.rng,
             "rows": len(run.X), "optimizer": run.model.info["optimizer"]["name"]}
    tensors = {state_tensor_name(name): getattr(st, name)
               for name in optim.optimizer_of(run.model.info["optimizer"]).state}
    if run.early is not None:
        state["early_stopping"] = run.early.summary()
        if run.early.weights is not None:
            tensors["early_stopping.best"] = run.early.weights
    if run.plateau is not None:
        state["reduce_lr_on_plateau"] = run.plateau.summary()
    return state, tensors


def take_over(run: Training, saved) -> None:
    """Take over the training state of checkpoint ``saved`` (a modelfile.ModelFile)."""
    name, model = saved.path, run.model
    if saved.state is None:
        raise UsageError(f"{name}: a finished model, not a checkpoint (it holds no optimizer "
                         f"state); to train on from its weights use --init-from {name}")
    base = saved.model
    if (base.loss, base.logits) != (model.loss, model.logits):
        raise UsageError(f"--resume {name}: the checkpoint was trained with --loss {base.loss}"
                         f"{' --logits' if base.logits else ''}; resume it with the same loss")
    if base.classes != model.classes:
        raise UsageError(f"--resume {name}: the checkpoint's classes are {base.classes}, this "
                         f"data's are {model.classes}")
    try:
        state = saved.state
        opt_name = str(state["optimizer"])
        rows = int(state["rows"])
        kept = optim.get_optimizer(opt_name)
        st = TrainState(**{name: np.ascontiguousarray(saved.tensors[state_tensor_name(name)])
                           if name in kept.state else np.zeros(0, np.float32)
                           for name in STATE_FIELDS},
                        rng=dict(state["rng"]), epoch=int(state["epoch"]),
                        rows_done=int(state["rows_done"]), loss_sum=float(state["loss_sum"]),
                        correct=int(state["correct"]), seconds=float(state["seconds"]),
                        step=int(state["step"]))
        np.random.default_rng().bit_generator.state = st.rng
        history = [EpochReport.from_dict(h) for h in base.info.get("history") or []]
    except (KeyError, TypeError, ValueError, OverflowError, UsageError) as e:
        # OverflowError: int() of a JSON Infinity
        raise ModelFileError(f"{name}: damaged training state ({type(e).__name__}: {e})") from None
    if opt_name != model.info["optimizer"]["name"]:
        raise UsageError(f"--resume {name}: the checkpoint's optimizer state is {opt_name}'s; "
                         f"resume it with --optimizer {opt_name}")
    if rows != len(run.X):
        raise UsageError(f"--resume {name}: the checkpoint was trained on {rows} rows, this run "
                         f"has {len(run.X)}; give the same data and validation split")
    if not 0 <= st.rows_done <= rows or st.epoch < 0 or len(history) != st.epoch:
        raise ModelFileError(f"{name}: damaged training state (epoch {st.epoch}, rows "
                             f"{st.rows_done}, {len(history)} epochs of history)")
    needed = st.epoch + (1 if st.rows_done else 0)
    if run.config.epochs < needed:
        raise UsageError(f"--resume {name}: the checkpoint is {'in' if st.rows_done else 'after'}"
                         f" epoch {needed}, but --epochs is {run.config.epochs}; --epochs counts"
                         f" all epochs, so give at least {needed}")
    run.state, run.history, run.resumed_from = st, history, name
    model.info["history"] = [h.as_dict() for h in history]
    es_state = state.get("early_stopping")
    if run.early is not None and isinstance(es_state, dict) \
            and es_state.get("monitor") == run.early.monitor:
        try:
            es = run.early
            es.best = None if es_state.get("best") is None else float(es_state["best"])
            es.best_epoch = int(es_state.get("best_epoch", 0))
            es.wait = int(es_state.get("wait", 0))
            es.stopped_epoch = int(es_state.get("stopped_epoch", 0))
            best = saved.tensors.get("early_stopping.best")
            es.weights = None if best is None else best.copy()
        except (TypeError, ValueError, OverflowError) as e:
            raise ModelFileError(f"{name}: damaged early-stopping state ({e})") from None
    _take_plateau(run, state.get("reduce_lr_on_plateau"), name)


def _take_plateau(run: Training, saved: dict | None, name: str) -> None:
    """--reduce-lr-on-plateau's state as the checkpoint left it (when it watched the same
    metric): the learning rate it lowered to, the best value and the epochs waited."""
    plateau = run.plateau
    if plateau is None or not isinstance(saved, dict) or saved.get("monitor") != plateau.monitor:
        return
    try:
        plateau.lr = float(saved["lr"])
        plateau.best = None if saved.get("best") is None else float(saved["best"])
        plateau.wait = int(saved.get("wait", 0))
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise ModelFileError(f"{name}: damaged reduce-lr-on-plateau state ({e})") from None
