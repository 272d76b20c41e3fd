"""Memory copy bandwidth at a few working-set sizes, the second roof of bench.py's roofline.

A step of a small network works on data that can fit in the last-level cache (its weights,
gradients, Adam's moments and a batch's activations), where a copy runs several times faster
than from main memory. So the copy is measured on a ladder of footprints (source + destination):
1 MiB, 8 MiB and half the last-level cache, and one well beyond it (8x the cache, at least
2 x MIN_ARRAY_BYTES) for main memory. A cell then takes the bandwidth of the smallest footprint
that holds its working set, or a larger one in the cache if that measured faster (`choose`: a
roof errs high); a working set beyond half the cache, or any where the cache's size is unknown,
gets the main-memory figure.

Each figure is bytes read + written per second, the best of several batches of copies, each
batch long enough (~10 ms) that the clock's resolution does not matter. One thread copies with
NumPy; more split the arrays into one contiguous part per thread in a Numba prange loop. It
measures; it asserts nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numba
import numpy as np

MIN_ARRAY_BYTES = 256 * 2**20   # each of the two arrays of the main-memory copy, at least
CACHE_FOOTPRINTS = (2**20, 8 * 2**20)    # besides half the last-level cache
BATCH_SECONDS = 0.01            # each timed batch of copies; best of `repeats` batches


# dst = src, in `parts` contiguous chunks, one per thread:
# chunk q is [q n / parts, (q + 1) n / parts)
@numba.njit(parallel=True, nogil=True)
def _copy_parts(dst, src, parts):
    n = src.shape[0]
    for q in numba.prange(parts):
        s, e = q * n // parts, (q + 1) * n // parts
        dst[s:e] = src[s:e]


def last_level_cache_bytes(cache_dir: Path = Path("/sys/devices/system/cpu/cpu0/cache")
                           ) -> int | None:
    """The size of CPU 0's highest-level data or unified cache as Linux reports it (sysfs), else
    glibc's level-3 figure; None when neither tells."""
    best: tuple[int, int] | None = None
    for index in cache_dir.glob("index*"):
        try:
            if (index / "type").read_text().strip() == "Instruction":
                continue
            level = int((index / "level").read_text())
            size = parse_size((index / "size").read_text())
        except (OSError, ValueError):
            continue
        if best is None or level > best[0]:
            best = (level, size)
    if best:
        return best[1]
    try:
        return os.sysconf("SC_LEVEL3_CACHE_SIZE") or None
    except (ValueError, OSError):
        return None


def parse_size(text: str) -> int:
    """Bytes of a sysfs cache size such as '32768K' or '1M'."""
    text = text.strip()
    unit = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:].upper(), 1)
    return int(text.rstrip("KMGkmg")) * unit


def footprints(llc_bytes: int | None) -> list[tuple[str, int]]:
    """(label, source + destination bytes) to measure, smallest first: the in-cache sizes that
    fit in half of ``llc_bytes``, then main memory."""
    memory = 2 * max(8 * (llc_bytes or 0), MIN_ARRAY_BYTES)
    if not llc_bytes:
        return [("memory", memory)]
    half = llc_bytes // 2
    sizes = sorted({f for f in CACHE_FOOTPRINTS if f < half} | {half})
    return [*((f"{_mib(f)} MiB", f) for f in sizes), ("memory", memory)]


def copy_bandwidth(threads: int | None = None, footprint_bytes: int | None = None,
                   repeats: int = 10) -> dict:
    """GB/s of a copy (bytes read + written) at ``threads`` (Numba's current count when None)
    between two float32 arrays of ``footprint_bytes`` together (main memory's size when None),
    best of ``repeats`` batches of about BATCH_SECONDS.
    Returns {"gbs", "footprint_bytes", "threads", "method"}."""
    threads = threads or numba.get_num_threads()
    footprint_bytes = footprint_bytes or footprints(last_level_cache_bytes())[-1][1]
    src = np.ones(max(footprint_bytes // 8, threads), np.float32)
    dst = np.zeros_like(src)                      # touched, so no page fault is timed
    if threads == 1:
        method = "numpy copyto"

        def copy():
            np.copyto(dst, src)
    else:
        method = f"numba prange copy, {threads} parts"
        numba.set_num_threads(threads)

        def copy():
            _copy_parts(dst, src, threads)
    copy()
    start = time.perf_counter()
    copy()
    calls = max(1, int(BATCH_SECONDS / max(time.perf_counter() - start, 1e-9)))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            copy()
        best = min(best, (time.perf_counter() - start) / calls)
    return {"gbs": 2 * src.nbytes / best / 1e9, "footprint_bytes": 2 * int(src.nbytes),
            "threads": threads, "method": method}


def bandwidth_ladder(threads: int | None = None) -> dict:
    """Copy bandwidth at each of `footprints` for this CPU at ``threads``:
    {"llc_bytes", "threads", "method", "sizes": [{"label", "footprint_bytes", "gbs"}, ...]},
    sizes smallest first, main memory last."""
    llc = last_level_cache_bytes()
    sizes = []
    for label, size in footprints(llc):
        copy = copy_bandwidth(threads, size)
        sizes.append({"label": label, "footprint_bytes": copy["footprint_bytes"],
                      "gbs": copy["gbs"]})
    return {"llc_bytes": llc, "threads": copy["threads"], "method": copy["method"],
            "sizes": sizes}


def choose(ladder: dict, working_set_bytes: int) -> dict:
    """The ladder's size whose bandwidth a step of ``working_set_bytes`` can run at, at most: the
    fastest of the in-cache footprints that hold it (the smallest, unless a larger one measured
    faster: the data fits there too), else main memory (the last)."""
    holding = [s for s in ladder["sizes"][:-1] if working_set_bytes <= s["footprint_bytes"]]
    return max(holding, key=lambda s: s["gbs"], default=ladder["sizes"][-1])


def describe(ladder: dict) -> str:
    """One line: the GB/s at each footprint, how it was copied and the cache size it used."""
    if "sizes" not in ladder:
        return str(ladder.get("error") or ladder.get("skipped") or "not measured")
    sizes = ", ".join(f"{s['label']} {s['gbs']:.1f}" for s in ladder["sizes"])
    llc = ladder.get("llc_bytes")
    cache = f"last-level cache {_mib(llc)} MiB" if llc else "last-level cache unknown"
    return (f"{sizes} GB/s ({ladder['method']}, source + destination footprints, memory "
            f"{_mib(ladder['sizes'][-1]['footprint_bytes'])} MiB; {cache})")


def _mib(n: int) -> str:
    return f"{n / 2**20:g}"
