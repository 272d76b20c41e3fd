"""One run: ``run(config, inputs, sink) -> Result``, what ``nncli train`` and every trial of a
sweep call. The order of a run's steps is written here only: prepare (checks, split, scaling,
the model), then ``fit`` epoch by epoch, then the finished model; what differs between callers
is the ``Sink`` that hears of each step (the command line's writes files and shows progress,
a sweep's trial reports to Ray Tune)."""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from nncli.errors import DivergedError, Interrupted
from nncli.train.inputs import Inputs
from nncli.train.loop import fit
from nncli.options import TrainConfig
from nncli.train.preparing import prepare
from nncli.train.state import EpochReport, StopFn, Training


class Sink:
    """What a run tells the world, step by step; this one tells nobody.

    ``prepared`` hears of the prepared run first; ``session`` wraps its epochs and yields what
    ``fit`` asks whether to stop (None: never); ``progress`` hears of each
    chunk of mini-batches, ``epoch`` of each epoch's report, ``finished`` of the result, and
    ``stopped`` of an interruption or divergence (the error goes on after it).
    """

    @contextmanager
    def session(self, run: Training) -> Iterator[StopFn | None]:
        yield None

    def prepared(self, run: Training) -> None:
        pass

    def progress(self, epoch: int, done: int, total: int, loss: float) -> None:
        pass

    def epoch(self, run: Training, report: EpochReport) -> None:
        pass

    def stopped(self, run: Training, error: Interrupted | DivergedError) -> None:
        pass

    def finished(self, result: "Result") -> None:
        pass


class Sinks(Sink):
    """Several sinks as one: each step goes to each, in order; their sessions nest, the first
    outermost, and ``fit`` asks the first stop function any of them yields. A sink need not
    derive from Sink (the command line's display does not, so that it loads no kernels), only
    have its methods."""

    def __init__(self, *sinks) -> None:
        self.sinks = sinks

    @contextmanager
    def session(self, run: Training) -> Iterator[StopFn | None]:
        with ExitStack() as stack:
            stops = [stack.enter_context(s.session(run)) for s in self.sinks]
            yield next((stop for stop in stops if stop is not None), None)

    def prepared(self, run: Training) -> None:
        for s in self.sinks:
            s.prepared(run)

    def progress(self, epoch: int, done: int, total: int, loss: float) -> None:
        for s in self.sinks:
            s.progress(epoch, done, total, loss)

    def epoch(self, run: Training, report: EpochReport) -> None:
        for s in self.sinks:
            s.epoch(run, report)

    def stopped(self, run: Training, error: Interrupted | DivergedError) -> None:
        for s in self.sinks:
            s.stopped(run, error)

    def finished(self, result: "Result") -> None:
        for s in self.sinks:
            s.finished(result)


@dataclass
class Result:
    """A finished run: the model with the weights it ends with (the best epoch's when early
    stopping put them back), its history, and what it was trained on."""

    run: Training
    inputs: Inputs | None = None

    @property
    def model(self):
        return self.run.model

    @property
    def last(self) -> dict:
        """The last epoch's metrics (empty when no epoch ran)."""
        return self.run.history[-1].as_dict() if self.run.history else {}

    @property
    def kept(self) -> dict:
        """The metrics of the weights the model ends with: the best epoch's when early stopping
        put them back, else the last epoch's; ``epoch`` is the last epoch either way."""
        es, last = self.run.early, self.last
        if es is not None and es.best_epoch and last and es.best_epoch != last["epoch"]:
            return {**self.run.history[es.best_epoch - 1].as_dict(), "epoch": last["epoch"]}
        return last

    def document(self, model: str, run_options: dict[str, Any]) -> dict:
        """The ``--json`` document of a run that wrote ``model``: every option (the
        TrainConfig's, then ``run_options``: the data, files and threads), rows, columns,
        scaling, early stopping, the last epoch's metrics and the history."""
        run, m = self.run, self.run.model
        data = self.inputs.data if self.inputs is not None else None
        return {"model": model, "options": {**run.config.as_dict(), **run_options},
                "optimizer": m.info["optimizer"],
                "rows": {"train": len(run.X),
                         "validation": 0 if run.X_val is None else len(run.X_val),
                         "dropped": len(data.dropped) if data is not None else 0},
                "columns": [c.as_dict() for c in m.input_schema().columns],
                "missing": data.encoded.as_dict() if data is not None else {},
                "loss_units": loss_units(m) or "targets",
                "target_normalization": None if m.target_mean is None else {
                    "mean": m.target_mean.tolist(), "std": m.target_std.tolist()},
                "early_stopping": m.info.get("early_stopping"),
                "final": self.last, "history": [r.as_dict() for r in run.history]}


def loss_units(model) -> str:
    """'standardized targets' when the losses are not in the targets' own units, else ''."""
    return "standardized targets" if model.target_mean is not None else ""


def run(config: TrainConfig, inputs: Inputs, sink: Sink | None = None,
        own_data: bool = False) -> Result:
    """Train ``config`` on ``inputs`` (see ``load_inputs``; ``own_data``: the arrays may be
    scaled in place, see ``prepare``), telling ``sink`` of every step, and return the result.
    Raises ``Interrupted`` or ``DivergedError`` after telling the sink."""
    training = prepare(config, inputs.data, inputs.val, inputs.init_from, inputs.resume,
                       own_data=own_data)
    return run_prepared(training, sink, inputs)


def run_prepared(training: Training, sink: Sink | None = None,
                 inputs: Inputs | None = None) -> Result:
    """The epochs of a prepared run to the end (see ``run``)."""
    sink = sink if sink is not None else Sink()
    sink.prepared(training)
    with sink.session(training) as stop:
        try:
            for report in fit(training, sink.progress, stop):
                sink.epoch(training, report)
        except (Interrupted, DivergedError) as e:
            sink.stopped(training, e)
            raise
        result = Result(training, inputs)
        sink.finished(result)
    return result


def run_in_step(trainings: list[Training], sinks: list[Sink],
                each_round: Callable[[], None] | None = None) -> list[Result]:
    """Prepared runs trained side by side, epoch by epoch in turn: each run's first epoch, then
    each one's second, and so on (the folds of a cross-validated sweep's trial, whose metrics
    are averaged after every epoch). ``sinks[i]`` hears of run ``i``'s steps as from
    ``run_prepared``; ``each_round`` is called once every run still going has reported its next
    epoch. A run keeps its own state and random generator, so each one's weights are those of
    ``run_prepared`` alone, bit for bit; a run that ends early (early stopping) sits out the
    rounds after its last epoch."""
    for training, sink in zip(trainings, sinks):
        sink.prepared(training)
    with ExitStack() as stack:
        stops = [stack.enter_context(s.session(t)) for t, s in zip(trainings, sinks)]
        epochs = [fit(t, s.progress, stop) for t, s, stop in zip(trainings, sinks, stops)]
        going = list(range(len(trainings)))
        while going:
            for i in list(going):
                try:
                    report = next(epochs[i])
                except StopIteration:
                    going.remove(i)
                    continue
                except (Interrupted, DivergedError) as e:
                    sinks[i].stopped(trainings[i], e)
                    raise
                sinks[i].epoch(trainings[i], report)
            if going and each_round is not None:
                each_round()
        results = [Result(t) for t in trainings]
        for sink, result in zip(sinks, results):
            sink.finished(result)
    return results
