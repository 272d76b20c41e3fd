"""The sweep's driver: check every combination, read the data once, run the trials on Ray Tune,
and leave the leaderboard, every trial's model and the best model behind.

Ray is imported only once the sweep has been checked against the data (``nncli.sweep.tuning``),
so a typo in the grid costs no Ray start, and a missing Ray is one line naming the extra to
install. Ray then starts in the background (``nncli.sweep.starting``) while the driver compiles
or loads the kernels.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import types
import typing
from contextlib import nullcontext
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, ContextManager

from nncli.errors import NncliError, UsageError
from nncli.jsondoc import load_json, shown
from nncli.sweep.packing import estimated_seconds, plan_packs
from nncli.sweep.results import FINISHED, TrialRow, leaderboard, summary, write_leaderboard
from nncli.sweep.space import Space, check_options, metric_mode
from nncli.sweep.starting import RayStart, import_ray

REQUEST_FILE = "sweep.json"
# Where Ray's own output goes while the sweep runs (nncli.sweep.redirect), in the sweep's folder.
RAY_LOG = "ray.log"
# Joining a cluster: how long Ray waits for an answer from its head (seconds) before it gives
# up, instead of its default minutes, so that an --address where something other than Ray
# listens is an error within 30 s too.
JOIN_TIMEOUTS = {"RAY_gcs_rpc_server_connect_timeout_s": "8",
                 "RAY_gcs_server_request_timeout_seconds": "8"}
# The number of trials a leaderboard recorded in the best model's metadata lists.
LEADERBOARD_IN_MODEL = 20


@dataclass
class Request:
    """Everything ``nncli sweep`` was asked, as typed: kept in the sweep's folder so that
    ``--resume DIR`` can run it again without the command line."""

    data: str
    options: dict[str, Any]                 # train's options as typed (comma lists, ranges)
    samples: int = 1
    metric: str = "val_loss"
    scheduler: str = "fifo"
    grace_epochs: int = 1
    max_failures: int = 2
    threads_per_trial: int = 1
    address: str | None = None
    storage: str | None = None
    output: str = "best.safetensors"
    out_dir: str = ""
    checkpoint_seconds: float = 5.0         # a trial checkpoints at most this often (0: each epoch)
    folds: int = 0                          # K-fold cross-validated trials (0: one split)
    stratify: bool = True                   # the folds stratified by class (as nncli cv's)
    group: str | None = None                # the column whose equal values share a fold
    pack: int = 0                           # configurations a trial trains (0: where it pays)
    packs: list | None = None               # the packs chosen (indices of space.corners())

    def save(self) -> None:
        path = Path(self.out_dir) / REQUEST_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, out_dir: str) -> "Request":
        """The request kept in the sweep's folder ``out_dir``, each key checked against the
        field it sets (its declared type; the options against train's option table): a
        damaged file is one UsageError naming it, before anything runs."""
        path = Path(out_dir) / REQUEST_FILE
        try:
            doc = load_json(path.read_bytes())
        except FileNotFoundError:
            raise UsageError(f"{out_dir}: not a sweep folder (no {REQUEST_FILE}); give the "
                             f"--out-dir of an earlier nncli sweep") from None
        except OSError as e:
            raise UsageError(f"{path}: cannot read ({e.strerror})") from None
        except ValueError as e:   # not JSON, not UTF-8, or nested too deep
            raise UsageError(f"{path}: damaged sweep request ({e})") from None
        problem = _request_problem(doc) or check_options(doc["options"])
        if problem:
            raise UsageError(f"{path}: damaged sweep request: {problem}")
        return cls(**{**doc, "out_dir": str(Path(out_dir).resolve())})


def _request_problem(doc) -> str | None:
    """What is wrong with a stored request's keys and their types, or None."""
    if not isinstance(doc, dict):
        return f"not a JSON object, found {shown(doc)}"
    hints = typing.get_type_hints(Request)
    for f in fields(Request):
        if f.name not in doc and f.default is MISSING:
            return f"'{f.name}' is missing"
    for key, value in doc.items():
        if key not in hints:
            return f"unknown key '{key}'"
        if not _fits(value, hints[key]):
            return f"'{key}' must be {_words(hints[key])}, found {shown(value)}"
    return None


def _fits(value, hint) -> bool:
    """Whether a JSON value fits a field's declared type (str, int, dict, or X | None)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in typing.get_args(hint))
    kind = typing.get_origin(hint) or hint
    if kind is bool:
        return isinstance(value, bool)
    if kind in (int, float):   # JSON has one kind of number: 10 is a float too
        numbers = (int,) if kind is int else (int, float)
        return isinstance(value, numbers) and not isinstance(value, bool)
    return isinstance(value, kind)


def _words(hint) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_words(arg) for arg in typing.get_args(hint))
    kind = typing.get_origin(hint) or hint
    return {str: "text", int: "a whole number", float: "a number", bool: "true or false",
            dict: "an object", type(None): "null"}.get(kind, kind.__name__)


@dataclass
class Report:
    """What a sweep came to (see results.summary for its --json form)."""

    rows: list[TrialRow]
    metric: str
    mode: str
    best_model: str | None
    out_dir: str
    interrupted: bool
    signal: int = 0
    folds: int = 0

    def as_dict(self) -> dict:
        return summary(self.rows, self.metric, self.mode, self.best_model, self.out_dir,
                       self.interrupted, self.folds)


def run_sweep(request: Request, space: Space,
              on_event: Callable[[TrialRow], None] | None = None,
              say: Callable[[str], None] = lambda message: None,
              restore: bool = False, display: ContextManager | None = None) -> Report:
    """Run the sweep ``request`` asks for (``space``: its trials' options, parsed), or with
    ``restore`` continue the one in ``request.out_dir``. ``display`` (the live table) is
    entered once Ray's output goes to the sweep's ``ray.log`` instead of stdout and stderr."""
    from nncli.files import check_writable
    from nncli.sweep.redirect import output_into
    from nncli.train import load_inputs, validate, warm_up

    if request.max_failures < 0 or request.threads_per_trial < 1 or request.grace_epochs < 1:
        raise UsageError("--max-failures must be 0 or more, --threads-per-trial and "
                         "--grace-epochs at least 1")
    if not 0 <= request.checkpoint_seconds < float("inf"):
        raise UsageError(f"--checkpoint-seconds must be 0 or more, received "
                         f"{request.checkpoint_seconds}")
    if request.scheduler not in ("fifo", "asha"):
        raise UsageError(f"unknown --scheduler '{request.scheduler}'; expected fifo or asha")
    if request.pack < 0:
        raise UsageError(f"--pack must be 0 or more, received {request.pack}")
    if request.pack > 1 and not _packable(request, space):
        raise UsageError(f"--pack {request.pack} packs the trainings of a grid: give no "
                         f"log:/uniform: ranges, --folds or --scheduler asha with it")
    fixed = space.fixed
    configs = [(corner, _built(corner)) for corner in space.corners()]
    first = configs[0][1]
    if request.folds:
        inputs, folds = _fold_inputs(request, [c for _, c in configs], fixed, say)
    else:
        if request.group is not None or not request.stratify:
            raise UsageError("--group and --no-stratify say how --folds K deals the rows; "
                             "give --folds")
        inputs = load_inputs(first, request.data, fixed.get("validation_data"),
                             fixed.get("target"), fixed.get("init_from"))
        folds = None
    mode = "min"
    for corner, config in configs:
        try:
            if folds is not None:   # a fold's run, and the chosen one's on all rows (-o)
                validate(config, folds[0].data, folds[0].val)
                validate(config, inputs.data)
            else:
                validate(config, inputs.data, inputs.val)
            if config.epochs < 1:
                raise UsageError("--epochs must be at least 1 in a sweep")
            mode = metric_mode(request.metric, folds is not None or inputs.val is not None
                               or config.validation_split > 0)
        except NncliError as e:
            raise type(e)(f"{_describe(corner, space)}: {e}") from None
    epochs = max(c.epochs for _, c in configs)
    if request.scheduler == "asha" and request.grace_epochs > epochs:
        raise UsageError(f"--grace-epochs {request.grace_epochs} exceeds the most --epochs, "
                         f"{epochs}: ASHA could stop no trial")
    check_writable(request.output, "the best model")
    out_dir = Path(request.out_dir)
    _check_out_dir(out_dir, restore)
    import_ray()
    if request.address is not None:
        # Ray reads these when it is imported and when it connects (the user's win)
        for key, value in JOIN_TIMEOUTS.items():
            os.environ.setdefault(key, value)
        from nncli.sweep import tuning

        tuning.check_reachable(request.address)   # nobody there: no folder left behind
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {"folds": folds} if folds is not None else {"data": inputs.data, "val": inputs.val}
    args = {**data, "fixed": fixed, "init_from": inputs.init_from}
    with output_into(out_dir / RAY_LOG), RayStart(request.address) as starting:
        # Compile (or load) every trial's kernels here while Ray starts, once, before the
        # trials load them from the cache.
        validation = (folds is not None or inputs.val is not None
                      or first.validation_split > 0)
        for _, config in configs:
            warm_up(config, inputs.data.X.shape[1], validation)
        tuning = starting.ready()
        if request.packs is None and _packable(request, space):
            slots = tuning.cpu_slots(request.threads_per_trial)
            rows = len(inputs.data.X)
            request.packs = plan_packs([estimated_seconds(c, rows, inputs.data.X.shape[1])
                                        for _, c in configs], slots, request.pack)
        packs = None
        if request.packs is not None and len(request.packs) < len(configs):
            varying = [{k: corner[k] for k in space.varying} for corner, _ in configs]
            packs = [[varying[i] for i in pack] for pack in request.packs]
        plan = tuning.Plan(space, request.metric, mode, epochs, out_dir, request.scheduler,
                           request.grace_epochs, request.max_failures,
                           request.threads_per_trial, first.seed, request.address,
                           request.storage, request.checkpoint_seconds, request.folds, packs)
        with display or nullcontext(), _terminate_as_interrupt() as stopped:
            # the request once Ray answers: a cluster that did not leaves no sweep to --resume
            request.save()
            outcome = tuning.run(plan, args, on_event, restore)
    refit = None
    if folds is not None and not outcome.interrupted:
        refit = lambda config: _trained_on_all_rows({**fixed, **config}, inputs)  # noqa: E731
    return _finish(request, space, outcome, mode, stopped.signum, refit)


def _packable(request: Request, space: Space) -> bool:
    """Whether the sweep's configurations may share trials (nncli.sweep.packing): a grid (no
    sampled ranges), one split, the FIFO scheduler, and --pack not 1."""
    return (request.pack != 1 and not space.ranges and not request.folds
            and request.scheduler == "fifo")


def _fold_inputs(request: Request, configs: list, fixed: dict,
                 say: Callable[[str], None]) -> tuple[Any, list]:
    """A cross-validated sweep's data: the file read once and its rows dealt into
    ``request.folds`` folds by ``nncli cv``'s code (``crossval.plan_folds``, seeded by the
    first configuration's --seed), then the whole table's inputs (for the chosen
    configuration's run on all rows) and each fold's: its training rows, with its held-out
    rows as validation data."""
    import numpy as np

    from nncli.crossval import plan_folds
    from nncli.train import load_inputs

    if fixed.get("validation_data") is not None or any(c.validation_split for c in configs):
        raise UsageError(f"--folds {request.folds} validates each fold's training on its own "
                         f"held-out rows; give no --validation-split or --validation-data")
    targets, init_from = fixed.get("target"), fixed.get("init_from")
    plan = plan_folds(configs[0], request.data, request.folds, targets, request.stratify,
                      request.group)
    for message in plan.messages:
        say(message)
    if request.group is not None:   # the trials' and the chosen one's options say so too
        fixed["ignore"] = list(plan.config.ignore)
    everything = plan.table.subset(np.ones(plan.table.n_rows, dtype=bool))
    inputs = load_inputs(plan.config, everything, None, targets, init_from)
    folds = [load_inputs(plan.config, plan.training_rows(i), plan.held_out_rows(i), targets)
             for i in range(plan.k)]
    return inputs, folds


def _trained_on_all_rows(options: dict, inputs):
    """The model ``nncli train`` trains with ``options`` on ``inputs`` (all the rows the
    folds were dealt from, read as that command reads them, --group's column left out as
    --ignore would), on every core."""
    from nncli.train import run, set_threads

    set_threads(None)
    return run(_built(options), inputs).model


def _finish(request: Request, space: Space, outcome, mode: str, signum: int,
            refit: Callable[[dict], Any] | None = None) -> Report:
    """Trial models into the sweep's folder (a cross-validated trial's folds into a folder of
    its own, named as ``nncli cv -o DIR`` names them), the leaderboard, the best model: the
    best trial's, or with ``refit`` (a cross-validated sweep) the best configuration trained
    on all rows."""
    from nncli.modelfile import read_model_file, save_model

    out_dir = Path(request.out_dir)
    (out_dir / "trials").mkdir(exist_ok=True)
    by_id = {row.trial_id: row for row in outcome.rows}
    for trial_id, checkpoint in outcome.model_files():
        row = by_id.get(trial_id)
        if request.folds:
            (out_dir / "trials" / trial_id).mkdir(exist_ok=True)
            path = out_dir / "trials" / trial_id / checkpoint.name
        else:
            path = out_dir / "trials" / f"{trial_id}.safetensors"
        if row is not None and row.status == FINISHED:
            shutil.copyfile(checkpoint, path)     # the finished model, as its trial saved it
        else:                                     # its weights, without the training state
            save_model(read_model_file(checkpoint).model, path)
        if row is not None:
            row.model = str(path.parent if request.folds else path)
    rows = leaderboard(outcome.rows, request.metric, mode)
    write_leaderboard(out_dir / "leaderboard.csv", rows, space.varying)
    best_model = None
    best = rows[0] if rows and rows[0].value(request.metric) is not None else None
    # a cross-validated sweep's -o is trained afresh (not after an interruption)
    chosen = refit is not None if request.folds else best is not None and best.model is not None
    if best is not None and chosen:
        model = refit(best.config) if refit is not None else read_model_file(best.model).model
        model.info["sweep"] = {
            "metric": request.metric, "mode": mode, "trial": best.trial_id,
            "config": best.config, "out_dir": str(out_dir),
            "leaderboard": [{"trial": r.trial_id, "config": r.config, "status": r.status,
                             "epochs": r.epochs, request.metric: r.value(request.metric)}
                            for r in rows[:LEADERBOARD_IN_MODEL]]}
        save_model(model, request.output)
        best_model = request.output
    return Report(rows, request.metric, mode, best_model, str(out_dir), outcome.interrupted,
                  signum, request.folds)


def _built(options: dict):
    """The TrainConfig of one combination, its contradictions named with it."""
    from nncli.train import TrainConfig

    try:
        return TrainConfig.from_options(**options)
    except NncliError as e:
        raise type(e)(f"{_describe(options, None)}: {e}") from None


def _describe(options: dict, space: Space | None) -> str:
    names = space.varying if space is not None else list(options)
    shown = " ".join(f"--{n.replace('_', '-')} {options[n]}" for n in names if n in options)
    return f"trial with {shown}" if shown else "the sweep"


def _check_out_dir(out_dir: Path, restore: bool) -> None:
    if restore:
        return
    if (out_dir / REQUEST_FILE).exists():
        raise UsageError(f"{out_dir} holds an earlier sweep; continue it with --resume "
                         f"{out_dir}, or choose another --out-dir")


class _Stop:
    signum = 0   # SIGTERM when that is what stopped the sweep


class _terminate_as_interrupt:
    """SIGTERM is handled like Ctrl-C: Ray Tune (which catches SIGINT itself while it runs)
    stops the trials and saves its state for --resume."""

    def __enter__(self) -> _Stop:
        self.stop = _Stop()

        def terminate(signum, frame):
            self.stop.signum = signum
            os.kill(os.getpid(), signal.SIGINT)

        self.before = signal.signal(signal.SIGTERM, terminate)
        return self.stop

    def __exit__(self, *exc) -> bool:
        signal.signal(signal.SIGTERM, self.before)
        return False
