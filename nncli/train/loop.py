"""The training loop: from a prepared run to a fitted Model, one EpochReport at a time.

``fit`` never prints: callers (the CLI, tests, scripts) decide what to show. Each epoch shuffles
the training rows, then runs the mini-batches in compiled code (kernels.train_batches), a chunk
of ``ROWS_PER_CALL`` rows per call so that a progress callback can be told how far the epoch is.
A batch never straddles two calls. ``run.state`` is updated after every chunk, so a run can be
saved at any chunk boundary and resumed with bit-identical results.

Faults are handled at chunk boundaries too:

* a stop request (``interruptible()``: the first SIGINT or SIGTERM) is honoured after the current
  chunk: ``fit`` raises ``Interrupted`` with the state standing where it stopped. A chunk is a few
  milliseconds to a second of work, so "finishes the current mini-batch" means "finishes the
  current chunk of mini-batches". A second signal raises ``StopNow`` at once;
* a NaN or infinite batch loss stops the kernel before that batch's update; a chunk that leaves
  any weight NaN or infinite is rolled back to the weights before it. Either way ``fit`` raises
  ``DivergedError`` naming the epoch and batch, with the last finite weights in the model.

Also here: compiling the kernels before a run (``warm_up``, ``kernels_cached``) and the number of
compute threads (``set_threads``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import time
from typing import Iterator

import numpy as np

from nncli import optim, schedules
from nncli.arch import parse_arch
from nncli.errors import DivergedError, Interrupted, UsageError
from nncli.evaluate import regression_metrics
from nncli.losses import PROB_EPSILON
from nncli.metrics import VALIDATION_PREFIX
from nncli.model import K, Model, Workspace
from nncli.options import TrainConfig
from nncli.train.state import EpochReport, ProgressFn, StopFn, Training, TrainState, new_state

# Rows per compiled call: large enough that Python is invisible, small enough for a live bar
# and a prompt reaction to Ctrl-C.
ROWS_PER_CALL = 8192


def fit(run: Training, on_progress: ProgressFn | None = None,
        stop: StopFn | None = None) -> Iterator[EpochReport]:
    """Train until ``run.config.epochs`` epochs are done in all, yielding a report after each.

    Continues from ``run.state`` (a fresh state when None). ``stop`` is asked after every chunk
    but the last of an epoch, and before every epoch; when it returns a signal number, ``fit``
    raises ``Interrupted`` with the state where it stands. With early stopping, the best
    weights are put back when the loop ends (not when it is interrupted).
    """
    model, cfg = run.model, run.config
    if run.state is None:
        run.state = new_state(model, cfg)
    st, es = run.state, run.early
    n = len(run.X)
    batch = min(cfg.batch_size, n)
    ws = Workspace(model.layer_table(), batch, np.float32)
    grads = np.zeros_like(model.params)
    opt = model.info["optimizer"]
    velocity = st.m if optim.optimizer_of(opt).velocity else None
    hyper = optim.hyper_vector(opt, cfg.l1, cfg.l2)   # the penalties: the run's, not the file's
    Xb = np.zeros((batch, run.X.shape[1]), np.float32)
    Yb = np.zeros((batch, run.Y.shape[1]), np.float32)
    Wb = np.zeros(batch, np.float32) if run.W is not None else None
    X, Y = np.ascontiguousarray(run.X), np.ascontiguousarray(run.Y)
    rng = np.random.default_rng()
    perm = np.empty(n, dtype=np.int64)
    per_call = max(1, ROWS_PER_CALL // batch) * batch
    schedule = lr_schedule(cfg, n)
    # The weights and moments before the current chunk, to roll back to if it leaves any
    # weight non-finite.
    saved = (np.empty_like(model.params), np.empty_like(st.m), np.empty_like(st.v))
    while st.epoch < cfg.epochs and not (es is not None and es.stopped_epoch):
        _check_stop(stop, st, n)
        epoch = st.epoch + 1
        rng.bit_generator.state = st.rng
        perm[:] = np.arange(n)
        rng.shuffle(perm)
        start = time.perf_counter() - st.seconds
        for s in range(st.rows_done, n, per_call):
            e = min(s + per_call, n)
            for keep, now in zip(saved, (model.params, st.m, st.v)):
                keep[...] = now
            rates = schedule.rates(_lr(run, hyper), st.step, -(-(e - s) // batch))
            ls, c, step, diverged_at = K.train_batches(
                model.params, grads, st.m, st.v, velocity, Xb, Yb, ws.Z, ws.A,
                ws.dZ, ws.dA, ws.T, ws.table, X, Y, perm, s, e, batch, model.kernel_code,
                PROB_EPSILON, hyper, rates, st.step, ws.windowed, run.W, Wb,
                ws.fused)
            if diverged_at >= 0 or not np.isfinite(model.params).all():
                _diverged(run, epoch, s, e, batch, ls, c, step, diverged_at, saved, start)
            st.loss_sum += ls
            st.correct += c
            st.step = step
            st.rows_done = e
            if on_progress is not None:
                on_progress(epoch, e, n, st.loss_sum / e)
            if e < n:
                st.seconds = time.perf_counter() - start
                _check_stop(stop, st, n)
        report = EpochReport(epoch, {"loss": st.loss_sum / n,
                                     "accuracy": model.accuracy(st.correct, n)},
                             time.perf_counter() - start)
        if run.X_val is not None and len(run.X_val):
            report.metrics.update(_validation_metrics(model, run.X_val, run.Y_val))
        if run.scheduled:
            report.metrics["lr"] = schedule.lr(_lr(run, hyper), st.step - 1)
        st.epoch, st.rows_done, st.loss_sum, st.correct, st.seconds = epoch, 0, 0.0, 0, 0.0
        st.rng = rng.bit_generator.state
        run.history.append(report)
        model.info["history"].append(report.as_dict())
        if es is not None:
            es.update(report, model.params)
        if run.plateau is not None:
            run.plateau.update(report)
        yield report
    if es is not None:
        if es.weights is not None:
            model.params[...] = es.weights
        model.info["early_stopping"] = es.summary()


def lr_schedule(cfg: TrainConfig, n: int) -> schedules.Schedule:
    """The run's --lr-schedule with its --warmup-epochs, for ``n`` training rows: a step is a
    mini-batch, ceil(n / batch) of them an epoch (cosine's STEPS: the run's steps after the
    warm-up)."""
    steps = math.ceil(n / min(cfg.batch_size, n))
    return schedules.build(cfg.lr_schedule, cfg.warmup_epochs * steps, cfg.epochs * steps)


def _lr(run: Training, hyper: np.ndarray) -> float:
    """The optimizer's learning rate now: --lr, or lower once --reduce-lr-on-plateau cut it."""
    return run.plateau.lr if run.plateau is not None else hyper[0]


def _validation_metrics(model: Model, X_val: np.ndarray, Y_val: np.ndarray) -> dict:
    """The epoch's metrics on the validation rows (prepared: normalised, targets scaled), as
    val_<name>; a regression model's beyond the loss in the targets' own units."""
    out: dict = {}
    if model.loss_spec.classifier:
        out["loss"], out["accuracy"] = model.evaluate(X_val, Y_val)
    else:
        out["loss"], out["accuracy"], outputs = model.evaluate_outputs(X_val, Y_val)
        out.update(regression_metrics(model.unscale_outputs(outputs),
                                      model.unscale_outputs(Y_val)))
    return {VALIDATION_PREFIX + name: value for name, value in out.items()}


def _check_stop(stop: StopFn | None, st: TrainState, n: int) -> None:
    signum = stop() if stop is not None else 0
    if signum:
        name = signal.Signals(signum).name
        where = (f"in epoch {st.epoch + 1} after {st.rows_done} of {n} rows" if st.rows_done
                 else f"after epoch {st.epoch}")
        raise Interrupted(f"interrupted by {name} {where}", signum)


def _diverged(run: Training, epoch: int, s: int, e: int, batch: int, ls: float, c: int,
              step: int, diverged_at: int, saved: tuple, start: float) -> None:
    """Leave the state at the last finite weights and raise DivergedError."""
    model, st = run.model, run.state
    lr = model.info["optimizer"]["learning_rate"]
    if diverged_at >= 0 and np.isfinite(model.params).all():
        # The kernel stopped before the bad batch's update: keep the batches before it.
        st.loss_sum += ls
        st.correct += c
        st.step = step
        st.rows_done = diverged_at
        batches = str(diverged_at // batch + 1)
        what = f"the loss became NaN or infinite in epoch {epoch}, batch {batches}"
    else:
        for keep, now in zip(saved, (model.params, st.m, st.v)):
            now[...] = keep
        st.rows_done = s
        first, last = s // batch + 1, math.ceil(e / batch)
        batches = f"{first}" + (f"-{last}" if last > first else "")
        what = f"a weight became NaN or infinite in epoch {epoch}, batch {batches}"
    st.seconds = time.perf_counter() - start
    raise DivergedError(what, epoch, batches, f"; hint: try a smaller --lr (it is {lr:g})")


def warm_up(config: TrainConfig, n_inputs: int, validation: bool = False) -> None:
    """Compile (or load from Numba's cache) the kernels a run of ``config`` on ``n_inputs``
    features calls (with ``validation``, those of the validation metrics too), by training a
    throwaway model on one row of zeros: no data needed."""
    layers = parse_arch(config.arch)
    info = {"optimizer": optim.settings(config.optimizer, config.lr, config.momentum),
            "history": []}
    model = Model.create(layers, n_inputs, config.loss, config.logits, seed=config.seed,
                         channels=config.channels, info=info)
    X = np.zeros((1, n_inputs), np.float32)
    Y = np.zeros((1, model.n_outputs), np.float32)
    one = Training(model, dataclasses.replace(config, epochs=1, batch_size=1,
                                              early_stopping=None, monitor=None, min_delta=0.0),
                   X, Y, X if validation else None, Y if validation else None)
    try:
        for _ in fit(one):
            pass
    except DivergedError:
        pass  # a one-row step may blow up where the real run does not; it compiled all the same


def kernels_cached() -> bool:
    """Whether the training kernels have been compiled into Numba's cache before (a first run
    after install compiles them, ~20 s). Reads a Numba internal; when that fails, says True."""
    try:
        index = K.train_batches._cache._cache_file._index_path
    except AttributeError:
        return True
    return os.path.exists(index)


def set_threads(threads: int | None) -> None:
    """Use ``threads`` compute threads (None: all cores). Results do not depend on it."""
    import numba

    if threads is not None:
        if threads < 1:
            raise UsageError(f"--threads must be at least 1, received {threads}")
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
