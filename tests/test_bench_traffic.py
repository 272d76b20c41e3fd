"""benchmarks/traffic.py's byte count and bound, and bench.py's roofline columns.

Nothing here times anything: bench.py's summary and table are fed a fabricated results dict.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCHMARKS) not in sys.path:     # the benchmarks import each other as scripts do
    sys.path.insert(0, str(BENCHMARKS))

import bench  # noqa: E402
import traffic  # noqa: E402

TINY = [3, 2, 1]      # W1 3x2, b1 2, W2 2x1, b2 1: 11 parameters


def tiny_hand_count(optimizer_floats: int) -> int:
    """Floats one step of TINY moves at batch 4, counted parameter by parameter and sample by
    sample. forward read + dW write: 2 each; W2 also read for the hidden layer's gradient: 1."""
    first_weights = 6 * (2 + optimizer_floats)
    biases = 3 * (2 + optimizer_floats)
    later_weights = 2 * (3 + optimizer_floats)
    per_sample = 3 + 2 * 2 + 2 * 2 + 2 * 1 + 2 * 1   # x read; A1, dZ1, Z2, dZ2 written + read
    return first_weights + biases + later_weights + 4 * per_sample


@pytest.mark.parametrize("optimizer, floats, total", [("adam", 7, 161), ("sgd", 3, 117)])
def test_step_bytes_matches_a_hand_count(optimizer, floats, total):
    assert tiny_hand_count(floats) == total
    assert traffic.step_bytes(TINY, 4, optimizer) == 4 * total
    assert traffic.step_bytes(TINY, 4, optimizer, itemsize=8) == 8 * total


def test_step_bytes_per_parameter_is_at_most_ten_for_adam_and_six_for_sgd():
    sizes, P = [784, 512, 512, 10], traffic.parameter_count([784, 512, 512, 10])
    for optimizer, most in (("adam", 10), ("sgd", 6)):
        per_parameter = traffic.step_bytes(sizes, 0, optimizer) / 4 / P
        assert most - 1 < per_parameter < most


def test_step_bytes_rejects_an_unknown_optimizer():
    with pytest.raises(ValueError, match="expected one of adam, sgd"):
        traffic.step_bytes(TINY, 4, "rmsprop")


def test_the_bound_is_bandwidth_times_batch_over_step_bytes():
    assert traffic.traffic_bound(1.0, TINY, 4) == pytest.approx(1e9 * 4 / 644)
    assert traffic.traffic_bound(2.0, TINY, 4, "sgd") == pytest.approx(2e9 * 4 / 468)
    assert traffic.step_seconds(1.0, TINY, 4) == pytest.approx(644 / 1e9)
    # larger batches share the parameters' traffic among more samples
    assert traffic.traffic_bound(1.0, TINY, 64) > traffic.traffic_bound(1.0, TINY, 4)


def fabricated_results() -> dict:
    """Two cells of network C at one and two threads: at one thread a slow peak and a fast
    memory (compute binds), at two a fast peak and a slow memory (traffic binds)."""
    def cell(threads):
        return {"net": "C", "arch": bench.ARCH["C"], "batch": 32, "threads": threads,
                "nncli": {"train": [9.0, 0.5, 0.5, 0.5], "predict": 0.1, "loss": 0.5},
                "torch": {"train": [9.0, 2.0, 2.0, 2.0], "predict": 0.2, "loss": 0.5}}

    copy = {"array_bytes": 2**28, "method": "numpy copyto"}
    return {"machine": "a test CPU", "rows": 1000, "cells": [cell(1), cell(2)],
            "peak": {"1": {"2048^3": 10.0}, "2": {"2048^3": 1000.0}},
            "bandwidth": {"1": {**copy, "gbs": 200.0, "threads": 1},
                          "2": {**copy, "gbs": 20.0, "threads": 2}},
            "bandwidth_gbs": {"1": 200.0, "2": 20.0}}


def test_summary_takes_the_smaller_roof_and_names_it():
    results = fabricated_results()
    bench.summarise(results)
    one, two = results["cells"]
    sizes = [784, 512, 512, 10]
    for c, gflops, gbs, binds in ((one, 10.0, 200.0, "compute"), (two, 1000.0, 20.0, "traffic")):
        compute = gflops * 1e9 / bench.flops_per_sample("C")
        memory = gbs * 1e9 * 32 / traffic.step_bytes(sizes, 32, "adam")
        assert c["limit_samples_per_s"] == pytest.approx(compute)
        assert c["traffic_bound"] == pytest.approx(memory)
        assert c["bound_by"] == binds
        assert c["fraction_of_limit"] == pytest.approx(1000 / 0.5 / min(compute, memory))


def test_render_shows_the_roofline_columns():
    results = fabricated_results()
    bench.summarise(results)
    table = bench.render(results)
    lines = table.splitlines()
    head = columns(next(line for line in lines if line.startswith("| net/batch")))
    assert head[-4:] == ["compute limit (2048^3 peak)", "traffic bound", "of limit", "bound by"]
    rows = [columns(line) for line in lines if line.startswith(f"| {bench.ARCH['C']} / 32")]
    assert len(rows) == 2
    for cols, c in zip(rows, results["cells"]):
        assert len(cols) == len(head)
        assert cols[-4:] == [f"{c['limit_samples_per_s'] / 1000:,.0f}k",
                             f"{c['traffic_bound'] / 1000:,.0f}k",
                             f"{100 * c['fraction_of_limit']:.0f}%", c["bound_by"]]
    assert "1 thread(s) 200.0 GB/s (numpy copyto, 256 MiB array" in table
    assert "2 thread(s) 20.0 GB/s" in table


def test_render_without_a_bandwidth_leaves_the_traffic_column_empty():
    results = fabricated_results()
    del results["bandwidth"], results["bandwidth_gbs"]
    bench.summarise(results)
    assert all(c["bound_by"] == "compute" for c in results["cells"])
    row = columns(next(line for line in bench.render(results).splitlines()
                       if line.startswith(f"| {bench.ARCH['C']}")))
    fraction = results["cells"][0]["fraction_of_limit"]
    assert row[-3:] == ["-", f"{100 * fraction:.0f}%", "compute"]
    assert "bandwidth: not measured" in bench.render(results)


def columns(line: str) -> list[str]:
    """The cells of one Markdown table row."""
    return [s.strip() for s in line.strip().strip("|").split("|")]
