"""A packed trial (see nncli.sweep.packing): a pack of the sweep's configurations trained one
after the other in one Ray Tune trial, each exactly as ``nncli train`` trains it.

The trial reports to Tune once per configuration, when it finishes (its tiny epochs would cost
more reported than trained), with every finished configuration's metrics under ``PACK_KEY``;
the driver turns them into a leaderboard row each (``member_id``). A checkpoint holds the
finished configurations' models and ``MEMBERS_FILE`` (what they reached, JSON); it is written
when ``Cadence`` says so and at the end, so a pack whose worker died goes on with the
configurations it had not checkpointed.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from ray import tune

from nncli.sweep.tuning.trials import FINISHED_KEY, Cadence, start_worker

# The key of a packed trial's config: which pack it trains (the packs are the trainable's).
PACK = "pack"
# The key of a packed trial's reports: each finished configuration's metrics.
PACK_KEY = "nncli_pack"
MEMBERS_FILE = "pack.json"


def member_file(j: int) -> str:
    """The model file of a pack's ``j``-th configuration in its checkpoint."""
    return f"member-{j}.safetensors"


def member_id(trial_id: str, j: int) -> str:
    """The leaderboard's name for a pack's ``j``-th configuration."""
    return f"{trial_id}-{j}"


def member_of(trial_id: str, file_name: str) -> str | None:
    """The member id a checkpoint's file belongs to, or None for a file of no member."""
    stem = file_name.removesuffix(".safetensors")
    if not stem.startswith("member-") or not stem[len("member-"):].isdigit():
        return None
    return member_id(trial_id, int(stem[len("member-"):]))


def pack_trial(config: dict, *, packs: list, data, val, fixed: dict, threads: int,
               metric: str, mode: str, init_from=None, checkpoint_seconds: float = 0.0) -> None:
    """Train pack ``config[PACK]`` of ``packs`` (each a list of option dicts, added to
    ``fixed``) on the driver's data; ``metric`` and ``mode`` make the trial's own result (its
    best configuration's value), which Tune asks of every trial."""
    node = start_worker(threads)
    from nncli.modelfile import save_model
    from nncli.train import Inputs, TrainConfig, run

    members = packs[config[PACK]]
    reached, files = _resumed()
    cadence = Cadence(checkpoint_seconds)
    for j, options in enumerate(members):
        if str(j) in reached:
            continue
        start = time.monotonic()
        result = run(TrainConfig.from_options(**{**fixed, **options}),
                     Inputs(data, val, init_from, None))
        reached[str(j)] = {**result.kept, "seconds": time.monotonic() - start,
                           "node": node, "pid": os.getpid()}
        with tempfile.TemporaryDirectory() as folder:
            save_model(result.model, Path(folder) / member_file(j))
            files[member_file(j)] = (Path(folder) / member_file(j)).read_bytes()
        done = len(reached) == len(members)
        report = {**_best(reached, metric, mode), "node": node, FINISHED_KEY: done,
                  PACK_KEY: reached}
        if done or cadence.due(-1):
            _checkpoint(report, reached, files)
            cadence.restart()
        else:
            tune.report(report)


def _best(reached: dict, metric: str, mode: str) -> dict:
    """The trial's own result: ``metric`` of its best finished configuration, and its epoch."""
    values = [m for m in reached.values() if m.get(metric) is not None]
    if not values:
        return {}
    best = (min if mode == "min" else max)(values, key=lambda m: m[metric])
    return {metric: best[metric], "epoch": best.get("epoch", 0)}


def _resumed() -> tuple[dict, dict]:
    """What the checkpoint Tune restarts this pack from holds: each finished configuration's
    metrics (by its index, as text: JSON's keys) and the model files' bytes (by name)."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return {}, {}
    with checkpoint.as_directory() as folder:
        reached = json.loads((Path(folder) / MEMBERS_FILE).read_text(encoding="utf-8"))
        files = {p.name: p.read_bytes() for p in Path(folder).glob("*.safetensors")}
    return reached, files


def _checkpoint(report: dict, reached: dict, files: dict) -> None:
    with tempfile.TemporaryDirectory() as folder:
        for name, content in files.items():
            (Path(folder) / name).write_bytes(content)
        (Path(folder) / MEMBERS_FILE).write_text(json.dumps(reached), encoding="utf-8")
        tune.report(report, checkpoint=tune.Checkpoint.from_directory(folder))
