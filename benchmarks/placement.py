"""Where the host put our threads: the round trip between two threads of the Numba pool.

On a VM the host places the vCPUs, and on the 2-vCPU AMD EPYC VM of README's Performance section
the placement changes over minutes: a C ping-pong between two pinned threads took ~100-110 ns a
round trip while the vCPUs shared a last-level cache and ~360-430 ns while they did not, and
MNIST-1D training at batch 32 on two threads ran at 300-320k samples/s in the first case and at
165-175k in the second. So the benchmarks read the round trip beside every two-thread figure.
This probe's figures split the same two ways but sit below the C ping-pong's, more so in the
near placement: its spin loop also counts its spins, and the C ping-pong given that loop reads
as low.

`cross_core_round_trip_ns` bounces one int64 flag, alone on its cache line, between the two
iterations of a `prange(2)` loop: iteration 0 stores 1 and waits for 0, iteration 1 waits for 1
and stores 0 (atomic release stores and acquire loads, written as LLVM IR in two intrinsics,
since Numba has no atomics). The threads are those of this process's Numba pool, unpinned: the
ones a training run of nncli uses, wherever the OS puts them. In a process that trains with
another library (PyTorch has its own pool) the reading is only the VM's state at that moment.

Each side's waits are bounded (`MAX_SPINS` spins in all): a schedule that runs both iterations
on one thread gives up and reads None instead of hanging, and so does a run whose two threads
cannot run at once (another process holds one of the CPUs: each round trip would wait for a
time slice). It measures; it asserts nothing. Only NumPy and Numba are imported.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numba
import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

LINE_BYTES = 64             # a cache line on x86-64 and most ARM cores
MAX_SPINS = 10**9           # all the waits of one side of a run together: 0.26 s of spinning
                            # on the AMD EPYC VM, where 100000 round trips take 5-45 ms
CHECK_EVERY = 1024          # spins between looks at the spin count and the other side's abort


def _pointer(context, builder, signature, args):
    """Pointer to element args[1] of the array args[0]."""
    ary = context.make_array(signature.args[0])(context, builder, args[0])
    return builder.gep(ary.data, [args[1]])


def _int64_array(array) -> bool:
    return isinstance(array, types.Array) and array.dtype == types.int64


@intrinsic
def _load_acquire(typingctx, array, index):
    """array[index] by an atomic load with acquire ordering (an int64 array)."""
    if not _int64_array(array):
        return None

    def codegen(context, builder, signature, args):
        return builder.load_atomic(_pointer(context, builder, signature, args), "acquire", 8)

    return types.int64(array, types.intp), codegen


@intrinsic
def _store_release(typingctx, array, index, value):
    """array[index] = value by an atomic store with release ordering (an int64 array)."""
    if not _int64_array(array):
        return None

    def codegen(context, builder, signature, args):
        builder.store_atomic(args[2], _pointer(context, builder, signature, args), "release", 8)
        return context.get_dummy_value()

    return types.void(array, types.intp, types.int64), codegen


@njit
def _wait_for(flags, flag, abort, value, spins, max_spins):
    """Spin until flags[flag] == value; the spin count so far, or -1 once it passes max_spins
    or the other side has given up (flags[abort] != 0)."""
    while _load_acquire(flags, flag) != value:
        spins += 1
        if spins % CHECK_EVERY == 0:
            if spins > max_spins or _load_acquire(flags, abort) != 0:
                return -1
    return spins


@njit
def _side(flags, flag, abort, rounds, max_spins, ping):
    """One side of the exchange; the round trips it completed."""
    spins = 0
    for r in range(rounds):
        if ping:
            _store_release(flags, flag, 1)
        spins = _wait_for(flags, flag, abort, 0 if ping else 1, spins, max_spins)
        if spins < 0:
            _store_release(flags, abort, 1)     # so the other side stops waiting too
            return r
        if not ping:
            _store_release(flags, flag, 0)
    return rounds


@njit(parallel=True, cache=True)
def _ping_pong(flags, flag, abort, rounds, max_spins):
    """The round trips both sides completed (fewer than ``rounds``: one gave up)."""
    done = np.zeros(2, np.int64)
    for side in prange(2):
        done[side] = _side(flags, flag, abort, rounds, max_spins, side == 0)
    return done.min()


def _flags() -> tuple[np.ndarray, int, int]:
    """Zeroed int64 words and the indices of the flag and of the abort word: each at the start
    of its own cache line, with untouched lines between and around them."""
    words = LINE_BYTES // 8
    flags = np.zeros(8 * words, np.int64)
    first = (-flags.ctypes.data % LINE_BYTES) // 8      # the first word on a line boundary
    return flags, first + words, first + 4 * words


def _once(rounds: int, max_spins: int = MAX_SPINS) -> float | None:
    """Seconds of ``rounds`` round trips timed around one parallel call (its launch included),
    or None when a side gave up."""
    flags, flag, abort = _flags()
    start = time.perf_counter()
    done = _ping_pong(flags, flag, abort, rounds, max_spins)
    seconds = time.perf_counter() - start
    return seconds if done == rounds else None


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:      # macOS, Windows
        return os.cpu_count() or 1


def cross_core_round_trip_ns(rounds: int = 100000, repeats: int = 3,
                             max_spins: int = MAX_SPINS) -> float | None:
    """Nanoseconds a cache line takes from one thread of this process's Numba pool to another
    and back: the best of ``repeats`` runs of ``rounds`` round trips, each timed from Python
    around the parallel call (at 100000 round trips of >= 100 ns the launch, a few microseconds,
    is well under 1%). None with fewer than two Numba threads or two CPUs to run them on (two
    threads on one CPU would take a time slice a round trip), or when a side gave up."""
    if numba.get_num_threads() < 2 or _cpus() < 2:
        return None
    if _once(100, max_spins) is None:       # compiles (or loads the cache) and wakes the pool
        return None
    best = None
    for _ in range(repeats):
        seconds = _once(rounds, max_spins)
        if seconds is None:
            return None
        best = seconds if best is None else min(best, seconds)
    return best / rounds * 1e9


def bracketed(threads: int, train: Callable):
    """(train(), [round trip ns right before, right after]) for a run on ``threads`` >= 2
    threads; (train(), None) on one thread, where no placement matters."""
    if threads < 2:
        return train(), None
    before = cross_core_round_trip_ns()
    result = train()
    return result, [before, cross_core_round_trip_ns()]


def column(readings: dict[str, list]) -> str:
    """The tables' "cross-core ns" cell: ``readings`` maps a peer to its runs' cross_core_ns
    (each [before, after] or None); gives "nncli 104/110, torch 380/371" ("?" for a reading that
    gave up, a run's pairs separated by spaces), or "-" when no run has one."""
    parts = []
    for peer, runs in readings.items():
        pairs = [("/".join("?" if v is None else f"{v:.0f}" for v in r)) for r in runs if r]
        if pairs:
            parts.append(f"{peer} {' '.join(pairs)}")
    return ", ".join(parts) or "-"
