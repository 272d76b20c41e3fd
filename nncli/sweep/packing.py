"""Packing tiny trainings: several configurations of a sweep trained one after the other in one
Ray Tune trial, where a trial of its own would cost more than the training.

A Ray Tune trial costs about half a second beyond its training (measured on 2 cores: starting
it, its reports and checkpoints going through Tune's controller, its end), while a small network
trains for 5 epochs on a few thousand rows in a tenth of that. So when the grid's trainings are
that small, the sweep deals its configurations into packs, at least one per free slot (every
CPU stays busy) and each about ``PACK_SECONDS`` of training (a killed worker costs no more than
that), and a trial trains a pack. Each configuration is still trained exactly as ``nncli
train`` trains it and has its own row, metrics and model in the leaderboard.

Only a plain grid (no ranges) under the FIFO scheduler is packed: ASHA judges trials epoch by
epoch, which a pack does not report, and a sampled range has no values before Tune draws them.
Knows nothing of Ray.
"""

from __future__ import annotations

import math
from typing import Any

from nncli.arch import parse_arch

# The training a pack holds (estimated seconds): long enough to spread a trial's own costs,
# short enough that a pack retried after its worker died loses little.
PACK_SECONDS = 2.0
# Packing pays below this many estimated seconds of training a configuration (a trial's own
# costs are about 0.5 s; above 1 s they are a third or less of it).
TINY_SECONDS = 1.0
# What the estimate takes a core to do: dense products at small batches, per second, and the
# fixed cost of a step (measured on AMD EPYC and Intel Xeon cores: 20-60 GFLOP/s, 10-20 us).
FLOPS_PER_SECOND = 20e9
SECONDS_PER_STEP = 20e-6


def estimated_seconds(config: Any, n_rows: int, n_inputs: int) -> float | None:
    """Seconds one core takes to train ``config`` (a TrainConfig) on ``n_rows`` rows of
    ``n_inputs`` features: 6 floating-point operations per weight and sample (forward, and the
    two products of the backward pass), plus each step's fixed cost. None for networks with
    convolutional or local layers, whose cost this does not model (they are never packed)."""
    layers = parse_arch(config.arch)
    if any(layer.kind not in ("dense", "dropout") for layer in layers):
        return None
    weights, width = 0, n_inputs
    for layer in layers:
        if layer.kind == "dense":
            weights, width = weights + width * layer.units, layer.units
    rows = n_rows * (1.0 - config.validation_split)
    steps = math.ceil(rows / config.batch_size) * config.epochs
    return 6.0 * weights * rows * config.epochs / FLOPS_PER_SECOND + steps * SECONDS_PER_STEP


def plan_packs(seconds: list[float | None], slots: int, per_trial: int = 0) -> list[list[int]]:
    """The configurations (indices into ``seconds``, their estimated training) dealt into packs:
    ``per_trial`` configurations a pack when given (1: every configuration a trial of its own),
    else (0) as many packs as pays (see the module docstring): one per configuration unless
    every configuration is estimated below TINY_SECONDS, else max(slots, total / PACK_SECONDS)
    packs, filled longest first into the least loaded (so packs end together). Deterministic:
    ties go to the lower index."""
    n = len(seconds)
    if per_trial < 0:
        raise ValueError(f"per_trial must be 0 or more, received {per_trial}")
    if per_trial:
        return [list(range(i, min(i + per_trial, n))) for i in range(0, n, per_trial)]
    if n == 0 or any(s is None or s >= TINY_SECONDS for s in seconds):
        return [[i] for i in range(n)]
    known = [float(s) for s in seconds if s is not None]
    count = min(n, max(slots, math.ceil(sum(known) / PACK_SECONDS)))
    if count >= n:
        return [[i] for i in range(n)]
    packs: list[list[int]] = [[] for _ in range(count)]
    loads = [0.0] * count
    for i in sorted(range(n), key=lambda i: (-known[i], i)):
        j = min(range(count), key=lambda j: (loads[j], j))
        packs[j].append(i)
        loads[j] += known[i]
    return [sorted(p) for p in packs]
