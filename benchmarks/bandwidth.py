"""Memory copy bandwidth, the second roof of bench.py's roofline (with traffic.py's bytes).

A float32 array well beyond the last-level cache is copied into another, best of several
copies; the figure is bytes read + written per second. One thread copies with NumPy; more split
the array into one contiguous part per thread in a Numba prange loop. It measures; it asserts
nothing.
"""

from __future__ import annotations

import time
from pathlib import Path

import numba
import numpy as np

MIN_ARRAY_BYTES = 256 * 2**20   # each of the two arrays, whatever the cache reports


# dst = src, in `parts` contiguous chunks, one per thread:
# chunk q is [q n / parts, (q + 1) n / parts)
@numba.njit(parallel=True, nogil=True)
def _copy_parts(dst, src, parts):
    n = src.shape[0]
    for q in numba.prange(parts):
        s, e = q * n // parts, (q + 1) * n // parts
        dst[s:e] = src[s:e]


def last_level_cache_bytes() -> int:
    """The largest cache of CPU 0 as Linux reports it (sysfs); 32 MiB where it cannot tell."""
    sizes = []
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (index / "size").read_text().strip()
        except OSError:
            continue
        unit = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        sizes.append(int(text.rstrip("KMG")) * unit)
    return max(sizes, default=32 * 2**20)


def copy_bandwidth(threads: int | None = None, array_bytes: int | None = None,
                   repeats: int = 10) -> dict:
    """GB/s of a copy (bytes read + written) at ``threads`` (Numba's current count when None),
    best of ``repeats``, of an array of ``array_bytes`` (8x the last-level cache, at least
    MIN_ARRAY_BYTES, when None). Returns {"gbs", "array_bytes", "threads", "method"}."""
    threads = threads or numba.get_num_threads()
    array_bytes = array_bytes or max(8 * last_level_cache_bytes(), MIN_ARRAY_BYTES)
    src = np.ones(array_bytes // 4, np.float32)
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
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        copy()
        best = min(best, time.perf_counter() - start)
    return {"gbs": 2 * src.nbytes / best / 1e9, "array_bytes": int(src.nbytes),
            "threads": threads, "method": method}
