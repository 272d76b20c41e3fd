"""benchmarks/placement.py: the cross-core round trip between two threads of Numba's pool, and
the "cross-core ns" column of bench.py's and bench_conv.py's tables.

No latency is assumed: the probe reads whatever the host's placement gives (on a VM it changes
over minutes), so only its kind of answer is checked.
"""

from __future__ import annotations

import math
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numba
import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCHMARKS) not in sys.path:     # the benchmarks import each other as scripts do
    sys.path.insert(0, str(BENCHMARKS))

import bench  # noqa: E402
import bench_conv  # noqa: E402
import placement  # noqa: E402

two_cpus = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2 or placement._cpus() < 2,
                              reason="needs two Numba threads on two CPUs")


@contextmanager
def numba_threads(n: int):
    before = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(before)


@two_cpus
def test_two_threads_read_a_finite_positive_round_trip_under_a_millisecond():
    # None is the right answer while another process holds a CPU (each round trip would wait
    # for a time slice), so a busy machine gets a few tries; a small spin bound keeps each short
    with numba_threads(2):
        readings = [placement.cross_core_round_trip_ns(rounds=2000, repeats=2, max_spins=10**8)
                    for _ in range(5)]
    found = [r for r in readings if r is not None]
    assert found, readings
    assert all(isinstance(r, float) and math.isfinite(r) and 0 < r < 1e6 for r in found)


def test_one_thread_reads_none():
    with numba_threads(1):
        assert placement.cross_core_round_trip_ns() is None


def test_both_sides_on_one_thread_give_up_rather_than_hang():
    # one thread runs iteration 0 (ping) to its spin bound, then iteration 1, which sees the
    # abort; without the bound this would never return
    with numba_threads(1):
        start = time.perf_counter()
        assert placement._once(1000, max_spins=10**6) is None
        assert time.perf_counter() - start < 5


@two_cpus
def test_the_bound_ends_a_run_either_way():
    # two threads and a bound too small for the whole run: a number or None, never a hang
    with numba_threads(2):
        start = time.perf_counter()
        seconds = placement._once(10**7, max_spins=10**5)
        assert seconds is None or seconds > 0
        assert time.perf_counter() - start < 5


def test_the_flag_and_the_abort_word_have_cache_lines_to_themselves():
    flags, flag, abort = placement._flags()
    words = placement.LINE_BYTES // 8
    for index in (flag, abort):
        assert (flags.ctypes.data + 8 * index) % placement.LINE_BYTES == 0
        assert words <= index <= len(flags) - 2 * words     # untouched lines before and after
    assert abs(abort - flag) >= 2 * words


def test_bracketed_reads_before_and_after_on_two_threads_only(monkeypatch):
    calls = []
    readings = iter([104.0, 381.0])
    monkeypatch.setattr(placement, "cross_core_round_trip_ns", lambda: next(readings))
    assert placement.bracketed(2, lambda: calls.append("train") or 7) == (7, [104.0, 381.0])
    assert placement.bracketed(1, lambda: calls.append("train") or 8) == (8, None)
    assert calls == ["train", "train"]


def test_column_gives_each_peer_its_before_and_after():
    assert placement.column({"nncli": [[104.4, 110.0]], "torch": [[380.0, None]]}) == \
        "nncli 104/110, torch 380/?"
    assert placement.column({"nncli": [[104.0, 110.0], [390.0, 371.0]], "torch": []}) == \
        "nncli 104/110 390/371"
    assert placement.column({"nncli": [None], "torch": [None]}) == "-"


def cells(results: dict, start: str) -> list[list[str]]:
    return [[s.strip() for s in line.strip().strip("|").split("|")]
            for line in results.splitlines() if line.startswith(start)]


def test_bench_table_shows_the_round_trips_of_two_thread_cells():
    def cell(threads, cross):
        return {"net": "A", "arch": bench.ARCH["A"], "batch": 32, "threads": threads,
                "nncli": {"train": [1.0, 0.5, 0.5], "predict": 0.1, "loss": 0.5,
                          "cross_core_ns": cross},
                "torch": {"train": [1.0, 2.0, 2.0], "predict": 0.2, "loss": 0.5,
                          "cross_core_ns": cross and [c + 1 for c in cross]}}

    results = {"machine": "a test CPU", "rows": 1000, "peak": {},
               "cells": [cell(1, None), cell(2, [104.0, 381.0])]}
    bench.summarise(results)
    table = bench.render(results)
    head, = cells(table, "| net/batch")
    one, two = cells(table, f"| {bench.ARCH['A']}")
    assert head[-1] == "cross-core ns" and len(one) == len(two) == len(head)
    assert (one[-1], two[-1]) == ("-", "nncli 104/381, torch 105/382")


def test_bench_conv_table_shows_the_round_trips_of_each_run():
    def run(cross):
        return {"train": [1.0, 0.5, 0.5], "loss": 0.5, "cross_core_ns": cross}

    results = {"machine": "a test CPU", "epochs": 2, "runs": 2, "peak": {},
               "nets": {"ekg": {"arch": "1local20s10relu-1sigmoid", "rows": 100,
                                "flops_per_sample": 10}},
               "cells": [{"net": "ekg", "batch": 32, "threads": 1,
                          "nncli": [run(None), run(None)], "torch": [run(None), run(None)]},
                         {"net": "ekg", "batch": 32, "threads": 2,
                          "nncli": [run([104.0, 110.0]), run([390.0, None])],
                          "torch": [run([370.0, 371.0]), run([102.0, 103.0])]}]}
    bench_conv.summarise(results)
    table = bench_conv.render(results)
    head, = cells(table, "| network")
    one, two = cells(table, "| 1local20s10relu-1sigmoid")
    assert head[-1] == "cross-core ns" and len(one) == len(two) == len(head)
    assert (one[-1], two[-1]) == ("-", "nncli 104/110 390/?, torch 370/371 102/103")
