"""K-fold cross-validation: ``cross_validate(data, k, options)``, what ``nncli cv`` runs.

The data file is read once and its rows dealt into K folds (``nncli.folds``); each fold's model
is trained through ``train.run`` on a table of the other folds' rows, read by the same code as
``nncli train`` reads a file of those rows, so it is that command's model bit for bit (its
columns, categories, fill values and standardisation learnt from those rows alone), then judged
on its held-out rows by ``evaluate`` as ``nncli eval`` judges a file of them. One module per
step, each importing only those above it:

    plan      Folds, plan_folds: the file read once, the rows dealt into folds
    running   run_folds, FoldResult, FoldSink, CvFolder: each fold trained and evaluated
    summary   mean_and_std, pooled_confusion, document: what the folds add up to

``replan`` deals a kept cross-validation's folds again from its cv.json (``nncli plot DIR``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

from nncli.crossval.plan import Folds, plan_folds
from nncli.crossval.running import (SUMMARY_FILE, CvFolder, FoldResult, FoldSink, fold_file,
                                    held_out_data, run_folds)
from nncli.crossval.summary import document, mean_and_std, pooled_confusion
from nncli.errors import UsageError
from nncli.files import write_atomically
from nncli.options import BY_NAME, OPTIONS, TrainConfig


def refuse_unfit_options(values: dict[str, Any]) -> None:
    """A UsageError for the first train option a fold cannot take (the table's ``cv``), given
    a value other than its default."""
    for option in OPTIONS:
        if option.cv and values.get(option.name, option.default) != option.default:
            raise UsageError(f"nncli cv takes no {option.flag}: {option.cv}")


def cross_validate(data: str, k: int, options: dict[str, Any], stratify: bool = True,
                   group: str | None = None, out_dir: str | Path | None = None, stdin=None,
                   say: Callable[[str], None] | None = None,
                   display: Callable[[int], object] | None = None,
                   done: Callable[[FoldResult], None] | None = None) -> dict:
    """Cross-validate the training ``options`` (``nncli train``'s, by name, as its command
    receives them; unknown ones take their defaults) on ``data`` over ``k`` folds, and return
    the document ``--json`` prints (see ``summary.document``). ``out_dir`` keeps each fold's
    model and the document as cv.json; ``say`` hears the notes about the data, ``display(i)``
    gives a sink for fold ``i``'s run and ``done`` hears of each finished fold."""
    refuse_unfit_options(options)
    config = TrainConfig.from_options(**options)
    targets = options.get("target") or None
    folder = CvFolder(Path(out_dir)) if out_dir is not None else None
    if folder is not None:
        folder.check()
    folds = plan_folds(config, data, k, targets, stratify, group, stdin)
    for message in folds.messages:
        if say is not None:
            say(message)
    results = run_folds(folds, targets, options.get("validation_data"),
                        options.get("init_from"), folder, display, done)
    doc = document(results, _recorded(folds, data, options, out_dir))
    if folder is not None:
        write_atomically(folder.path / SUMMARY_FILE,
                         lambda f: f.write(json.dumps(doc, indent=2) + "\n"), text=True)
    return doc


def replan(options: dict[str, Any], data: str | None = None, source: str = SUMMARY_FILE
           ) -> Folds:
    """The folds of a cross-validation dealt again from its document's ``options`` (what
    ``_recorded`` writes): the same rows in the same folds, from the data file recorded or
    ``data`` (that file moved). ``source`` names the document in messages."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    try:
        config = TrainConfig(**{k: v for k, v in options.items() if k in names})
        k = int(options["folds"])
    except (TypeError, KeyError, ValueError) as e:
        raise UsageError(f"{source}: damaged options ({e})") from None
    data = data or options.get("data")
    if data in (None, "-"):
        raise UsageError(f"{source}: the cross-validation read its data from standard input; "
                         f"give that file with --data FILE")
    if not Path(data).exists():
        raise UsageError(f"{source}: its data file '{data}' is not found (moved, or named "
                         f"from another folder); give it with --data FILE")
    return plan_folds(config, data, k, options.get("target"), bool(options.get("stratified")),
                      options.get("group"))


def _recorded(folds: Folds, data: str, options: dict[str, Any],
              out_dir: str | Path | None) -> dict:
    """``options`` of the document: the folds' TrainConfig, then the cross-validation's own
    and the run's files and threads."""
    run = {name: options.get(name, BY_NAME[name].default)
           for name in ("target", "validation_data", "init_from", "threads")}
    run = {name: str(v) if isinstance(v, Path) else v for name, v in run.items()}
    return {**folds.config.as_dict(), "data": data, "folds": folds.k,
            "stratified": folds.stratified, "group": folds.group,
            "output": None if out_dir is None else str(out_dir), **run}


__all__ = ["cross_validate", "refuse_unfit_options", "replan", "Folds", "plan_folds",
           "held_out_data", "run_folds",
           "FoldResult", "FoldSink", "CvFolder", "SUMMARY_FILE", "fold_file", "document",
           "mean_and_std", "pooled_confusion"]
