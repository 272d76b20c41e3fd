"""benchmarks/traffic.py's byte counts and bound, bandwidth.py's choice of a copy bandwidth for
a working set, and bench.py's roofline columns.

Nothing here times anything: bench.py's summary and table are fed a fabricated results dict,
bandwidth.py's cache reader a fabricated sysfs folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCHMARKS) not in sys.path:     # the benchmarks import each other as scripts do
    sys.path.insert(0, str(BENCHMARKS))

import bandwidth  # noqa: E402
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


def test_a_wide_kernel_steps_in_its_tiles_and_moves_two_floats_a_weight_less():
    """[3, 16, 1]: W1 3x16 is wide enough (16 float32 outputs) for the fused step: forward read
    and Adam's W, m, v read and written, 7 a weight; b1 and b2 9 each; W2 16x1 is narrow,
    a later layer's 10 a weight; per sample x read, A1, dZ1 (16) and Z2, dZ2 (1) written + read."""
    sizes = [3, 16, 1]
    hand = 48 * 7 + 17 * 9 + 16 * 10 + 4 * (3 + 4 * 16 + 4 * 1)
    assert traffic.fused_weights(sizes) == 48
    assert traffic.step_bytes(sizes, 4) == 4 * hand
    # float64 fuses from 8 outputs, so the same layer is fused; 15 float32 outputs are not
    assert traffic.step_bytes(sizes, 4, itemsize=8) == 8 * hand
    assert traffic.fused_weights([3, 15, 1]) == 0
    assert traffic.working_set_bytes(sizes, 0) == 4 * (4 * traffic.parameter_count(sizes) - 48)


def test_step_bytes_per_parameter_of_network_c_with_its_two_fused_kernels():
    """C = 784-512-512-10: both 512-wide kernels fused (Adam 7 and 8 floats a weight, SGD 3
    and 4), the last layer's 10 outputs not (Adam 10, SGD 6), biases 9 and 5."""
    sizes, P = [784, 512, 512, 10], traffic.parameter_count([784, 512, 512, 10])
    for optimizer, least, most in (("adam", 7, 8), ("sgd", 3, 4)):
        per_parameter = traffic.step_bytes(sizes, 0, optimizer) / 4 / P
        assert least < per_parameter < most


def test_step_bytes_rejects_an_unknown_optimizer():
    with pytest.raises(ValueError, match="expected one of adam, sgd"):
        traffic.step_bytes(TINY, 4, "rmsprop")


def test_the_bound_is_bandwidth_times_batch_over_step_bytes():
    assert traffic.traffic_bound(1.0, TINY, 4) == pytest.approx(1e9 * 4 / 644)
    assert traffic.traffic_bound(2.0, TINY, 4, "sgd") == pytest.approx(2e9 * 4 / 468)
    assert traffic.step_seconds(1.0, TINY, 4) == pytest.approx(644 / 1e9)
    # larger batches share the parameters' traffic among more samples
    assert traffic.traffic_bound(1.0, TINY, 64) > traffic.traffic_bound(1.0, TINY, 4)


def test_working_set_counts_parameters_gradients_moments_and_a_batch():
    # TINY: 11 parameters; a row of 3 inputs, outputs and gradients of 2 + 1 units
    assert traffic.working_set_bytes(TINY, 4, "adam") == 4 * (4 * 11 + 4 * (3 + 2 * 3))
    assert traffic.working_set_bytes(TINY, 4, "sgd") == 4 * (2 * 11 + 4 * (3 + 2 * 3))
    # network C's state alone is 8.1 MB (its two 512-wide kernels keep no whole gradient),
    # the figure the cache choice turns on
    sizes = bench.layer_sizes("C")
    c = traffic.working_set_bytes(sizes, 0)
    assert c == 16 * traffic.parameter_count(sizes) - 4 * (784 * 512 + 512 * 512)
    assert 8.0e6 < c < 8.1e6
    with pytest.raises(ValueError, match="expected one of adam, sgd"):
        traffic.working_set_bytes(TINY, 4, "rmsprop")


def ladder(memory_gbs: float, cache_gbs: tuple[float, float, float]) -> dict:
    """A bandwidth ladder as bandwidth.bandwidth_ladder returns it, for a 32 MiB cache."""
    labels = ("1 MiB", "8 MiB", "16 MiB")
    sizes = [{"label": lab, "footprint_bytes": int(lab.split()[0]) * 2**20, "gbs": g}
             for lab, g in zip(labels, cache_gbs)]
    sizes.append({"label": "memory", "footprint_bytes": 2**29, "gbs": memory_gbs})
    return {"llc_bytes": 32 * 2**20, "threads": 1, "method": "numpy copyto", "sizes": sizes}


@pytest.mark.parametrize("working_set, label", [
    (1, "1 MiB"), (2**20, "1 MiB"), (2**20 + 1, "8 MiB"), (16 * 2**20, "16 MiB"),
    (16 * 2**20 + 1, "memory"), (2**40, "memory")])
def test_choose_takes_the_smallest_footprint_that_holds_the_working_set(working_set, label):
    assert bandwidth.choose(ladder(20.0, (90.0, 70.0, 60.0)), working_set)["label"] == label


def test_choose_takes_a_larger_footprint_that_measured_faster():
    # a 1 MiB copy can measure slower than an 8 MiB one (the call's overhead); the data fits in
    # both, so the roof takes the faster, never main memory's
    noisy = ladder(20.0, (90.0, 95.0, 80.0))
    assert bandwidth.choose(noisy, 2**19)["label"] == "8 MiB"
    assert bandwidth.choose(noisy, 9 * 2**20)["label"] == "16 MiB"


def test_choose_without_a_known_cache_takes_main_memory():
    only = {"sizes": [{"label": "memory", "footprint_bytes": 2**29, "gbs": 25.0}]}
    assert bandwidth.choose(only, 1)["gbs"] == 25.0


@pytest.mark.parametrize("llc, expected", [
    (32 * 2**20, [("1 MiB", 2**20), ("8 MiB", 8 * 2**20), ("16 MiB", 16 * 2**20),
                  ("memory", 2 * 256 * 2**20)]),
    (128 * 2**20, [("1 MiB", 2**20), ("8 MiB", 8 * 2**20), ("64 MiB", 64 * 2**20),
                   ("memory", 2 * 8 * 128 * 2**20)]),
    (4 * 2**20, [("1 MiB", 2**20), ("2 MiB", 2 * 2**20), ("memory", 2 * 256 * 2**20)]),
    (None, [("memory", 2 * 256 * 2**20)])])
def test_footprints_stop_at_half_the_cache_then_main_memory(llc, expected):
    assert bandwidth.footprints(llc) == expected


def test_last_level_cache_is_the_highest_data_or_unified_level(tmp_path):
    for i, (level, kind, size) in enumerate([(1, "Data", "32K"), (1, "Instruction", "64K"),
                                             (2, "Unified", "1024K"), (3, "Unified", "32768K")]):
        (tmp_path / f"index{i}").mkdir()
        for name, text in (("level", f"{level}\n"), ("type", f"{kind}\n"), ("size", size)):
            (tmp_path / f"index{i}" / name).write_text(text)
    assert bandwidth.last_level_cache_bytes(tmp_path) == 32 * 2**20
    assert bandwidth.parse_size("1M\n") == 2**20


def fabricated_results() -> dict:
    """Cells of network A at batch 32 and C at batch 32 at one and two threads. At one thread a
    slow peak and a fast memory (compute binds), at two a fast peak and a slow memory (traffic
    binds). A's working set fits in 1 MiB, C's only in 16 MiB."""
    def cell(net, threads):
        return {"net": net, "arch": bench.ARCH[net], "batch": 32, "threads": threads,
                "nncli": {"train": [9.0, 0.5, 0.5, 0.5], "predict": 0.1, "loss": 0.5},
                "torch": {"train": [9.0, 2.0, 2.0, 2.0], "predict": 0.2, "loss": 0.5}}

    return {"machine": "a test CPU", "rows": 1000,
            "cells": [cell("C", 1), cell("C", 2), cell("A", 1)],
            "peak": {"1": {"2048^3": 10.0}, "2": {"2048^3": 1000.0}},
            "bandwidth": {"1": ladder(200.0, (900.0, 700.0, 600.0)),
                          "2": {**ladder(2.0, (40.0, 30.0, 20.0)), "threads": 2}}}


def test_summary_takes_the_smaller_roof_and_names_it():
    results = fabricated_results()
    bench.summarise(results)
    one, two, _ = results["cells"]
    sizes = [784, 512, 512, 10]
    for c, gflops, gbs, binds in ((one, 10.0, 600.0, "compute"), (two, 1000.0, 20.0, "traffic")):
        compute = gflops * 1e9 / bench.flops_per_sample("C")
        memory = gbs * 1e9 * 32 / traffic.step_bytes(sizes, 32, "adam")
        assert c["limit_samples_per_s"] == pytest.approx(compute)
        assert c["traffic_bound"] == pytest.approx(memory)
        assert c["bound_by"] == binds
        assert c["fraction_of_limit"] == pytest.approx(1000 / 0.5 / min(compute, memory))


def test_each_cell_takes_the_bandwidth_of_its_own_working_set():
    results = fabricated_results()
    bench.summarise(results)
    c1, c2, a1 = results["cells"]
    assert (c1["bandwidth_level"], c1["bandwidth_gbs"]) == ("16 MiB", 600.0)
    assert (c2["bandwidth_level"], c2["bandwidth_gbs"]) == ("16 MiB", 20.0)
    assert (a1["bandwidth_level"], a1["bandwidth_gbs"]) == ("1 MiB", 900.0)
    assert a1["working_set_bytes"] == traffic.working_set_bytes(bench.layer_sizes("A"), 32)
    assert a1["traffic_bound"] == pytest.approx(
        traffic.traffic_bound(900.0, bench.layer_sizes("A"), 32))


def test_render_shows_the_roofline_columns():
    results = fabricated_results()
    bench.summarise(results)
    table = bench.render(results)
    lines = table.splitlines()
    head = columns(next(line for line in lines if line.startswith("| net/batch")))
    assert head[-6:-1] == ["compute limit (2048^3 peak)", "copy GB/s (footprint)", "traffic bound",
                           "of limit", "bound by"]
    rows = [columns(line) for line in lines if line.startswith("| ") and "/ 32 |" in line]
    assert len(rows) == 3
    for cols, c in zip(rows, results["cells"]):
        assert len(cols) == len(head)
        assert cols[-6:-1] == [f"{c['limit_samples_per_s'] / 1000:,.0f}k",
                               f"{c['bandwidth_gbs']:.0f} ({c['bandwidth_level']})",
                               f"{c['traffic_bound'] / 1000:,.0f}k",
                               f"{100 * c['fraction_of_limit']:.0f}%", c["bound_by"]]
    assert rows[2][-5] == "900 (1 MiB)"
    assert ("1 thread(s) 1 MiB 900.0, 8 MiB 700.0, 16 MiB 600.0, memory 200.0 GB/s (numpy "
            "copyto, source + destination footprints, memory 512 MiB; last-level cache 32 MiB)"
            in table)
    assert "2 thread(s) 1 MiB 40.0, 8 MiB 30.0, 16 MiB 20.0, memory 2.0 GB/s" in table


def test_render_without_a_bandwidth_leaves_the_traffic_column_empty():
    results = fabricated_results()
    results["bandwidth"]["2"] = {"error": "numba is broken"}
    del results["bandwidth"]["1"]
    bench.summarise(results)
    assert all(c["bound_by"] == "compute" for c in results["cells"])
    assert not any("bandwidth_gbs" in c for c in results["cells"])
    row = columns(next(line for line in bench.render(results).splitlines()
                       if line.startswith(f"| {bench.ARCH['C']}")))
    fraction = results["cells"][0]["fraction_of_limit"]
    assert row[-5:-1] == ["-", "-", f"{100 * fraction:.0f}%", "compute"]
    assert "2 thread(s) numba is broken" in bench.render(results)
    del results["bandwidth"]
    assert "bandwidth: not measured" in bench.render(results)


def columns(line: str) -> list[str]:
    """The cells of one Markdown table row."""
    return [s.strip() for s in line.strip().strip("|").split("|")]


def test_copy_bandwidth_reports_the_footprint_it_copied():
    copy = bandwidth.copy_bandwidth(1, 2**20, repeats=1)
    assert copy["footprint_bytes"] == 2**20
    assert copy["threads"] == 1 and copy["method"] == "numpy copyto"
    assert copy["gbs"] > 0
