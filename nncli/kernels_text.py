"""Numbers as CSV text, compiled: the rows ``nncli predict`` writes, byte for byte what Python's
``'%.9g' % float(v)`` gives (and so what np.savetxt(fmt='%.9g') wrote), a block of rows at a
time into a preallocated byte buffer.

'%.9g' rounds |v| to 9 significant digits, D x 10^(X - 8) with D in [10^8, 10^9), correctly
(ties to even), strips trailing zeros, and writes ``ddd.ddd`` when -4 <= X < 9, else
``d.dddde+XX`` (at least two exponent digits); 0 and -0 as ``0`` and ``-0``, NaN as ``nan``
(whatever its sign), infinities as ``inf`` and ``-inf``.

Here x = |v| / 10^(X - 8) is computed in float64 with at most three roundings (relative error
below 2^-51, so below 5e-7 in x < 10^9) and D = floor(x + 1/2). That is the correct rounding
unless x lies within ``TIE_MARGIN`` of a half (exact ties are common in float32: 1000000.125,
0.9990234375, whose decimal expansions end in 5 at the tenth digit). Then the rounding is decided
exactly in 64-bit integers, and where those would not hold the bits (x near a half for a value
below about 1e-8 or above 1e19 with many significant bits: about one value in a million), the
kernel stops at that value and returns its index, and the caller formats it with Python's
exact conversion and resumes after it.

This module imports only numpy, numba and the compile flags (nncli.kernel_flags), and reads no
module globals but those flags and the constants below.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from nncli.kernel_flags import PARALLEL, SERIAL

# Bytes a cell can take, with its separator: "-1.23456789e-308" and "," (16 + 1).
MAX_CELL = 17
# Cells from which format_parts shares the rows between threads (a cell takes about 50 ns)
PARALLEL_CELLS = 4096
# How far from a half x must be for float64's estimate to decide the rounding (see above).
TIE_MARGIN = 4e-6
LOG10_2 = 0.30102999566398120
COMMA, NEWLINE, MINUS, DOT, ZERO = 44, 10, 45, 46, 48


def powers_of_ten() -> np.ndarray:
    """10^0 .. 10^308 as float64, each correctly rounded: the kernels' ``pow10`` argument."""
    return np.array([float(10 ** n) for n in range(309)], dtype=np.float64)


# x = |v| / 10^k, 10^k from the correctly rounded table pow10 (10^0 .. 10^308): one rounding
# for the division or product, one for 10^|k| and one more when |k| > 308 (float64 subnormals)
@njit(**SERIAL)
def _scaled(a, k, pow10):
    if k >= 0:
        return a / pow10[k]
    if k >= -308:
        return a * pow10[-k]
    return a * pow10[300] * pow10[-k - 300]


# Whether x = a / 10^k rounds up from its integer part whole (ties to even), decided exactly in
# 64-bit integers on a = m 2^e, m odd: frac(x) = (m 5^t mod 2^j) / 2^j for k = -t <= 0, j = -(t + e)
# (a product that wraps mod 2^64 keeps those bits), = (a mod 10^k) / 10^k for an integer a < 2^64.
# Returns 1 (up), 0 (down), or -1 where the integers would need more than 64 bits
@njit(**SERIAL)
def _rounds_up(a, k, whole):
    f, E = math.frexp(a)
    m = np.uint64(f * 9007199254740992.0)    # f * 2^53: the 53 bits of a, exactly
    e = E - 53
    one = np.uint64(1)
    while m & one == 0:
        m >>= one
        e += 1
    odd = np.int64(whole) % 2 == 1
    if k <= 0:
        j = k - e
        if j <= 0 or j > 64:
            return -1
        N = m
        for _ in range(-k):
            N *= np.uint64(5)
        r = N if j == 64 else N & ((one << np.uint64(j)) - one)
        half = one << np.uint64(j - 1)
        if r == half:
            return 1 if odd else 0
        return 1 if r > half else 0
    if e < 0 or E > 64 or k > 19:
        return -1
    p = np.uint64(1)
    for _ in range(k):
        p *= np.uint64(10)
    r = (m << np.uint64(e)) % p
    if r == p - r:
        return 1 if odd else 0
    return 1 if r > p - r else 0


# Writes text (a uint8 array) at buf[pos:]; returns the next position
@njit(**SERIAL)
def _put(buf, pos, text):
    for i in range(text.shape[0]):
        buf[pos + i] = text[i]
    return pos + text.shape[0]


# One finite, non-zero |v| = a as '%.9g' writes it (no sign) at buf[pos:]: D = round(x), its
# digits, trailing zeros dropped, fixed or scientific; digits (9,) scratch. Returns the next
# position, or -1 when x is too near a half for float64 to decide (nothing written then)
@njit(**SERIAL)
def _put_number(buf, pos, a, pow10, digits):
    # floor(log10 a) or one less, from a's binary exponent (a in [2^(e-1), 2^e))
    k = int(np.floor((math.frexp(a)[1] - 1) * LOG10_2)) - 8
    x = _scaled(a, k, pow10)
    if x >= 1e9:             # the estimate was one short
        k += 1
        x = _scaled(a, k, pow10)
    if x < 1e8:              # a hair under 10^(k + 8) after that step: back (D rounds to 10^9)
        k -= 1
        x = _scaled(a, k, pow10)
    whole = np.floor(x)
    frac = x - whole
    up = frac > 0.5
    if abs(frac - 0.5) < TIE_MARGIN:
        exact = _rounds_up(a, k, whole)
        if exact < 0:
            return -1
        up = exact == 1
    D = np.uint32(whole) + np.uint32(1 if up else 0)
    if D >= np.uint32(1000000000):      # 999999999.5 and up: one digit more, 10^(k+9)
        D = np.uint32(100000000)
        k += 1
    exp10 = k + 8
    for i in range(8, -1, -1):
        q = D // np.uint32(10)
        digits[i] = ZERO + (D - q * np.uint32(10))
        D = q
    n = 9
    while n > 1 and digits[n - 1] == ZERO:
        n -= 1
    if -4 <= exp10 < 9:
        if exp10 >= 0:
            for i in range(exp10 + 1):          # the integer part: every digit up to the point
                buf[pos] = digits[i]
                pos += 1
            if n > exp10 + 1:
                buf[pos] = DOT
                pos = _put(buf, pos + 1, digits[exp10 + 1:n])
        else:
            buf[pos] = ZERO
            buf[pos + 1] = DOT
            pos += 2
            for _ in range(-exp10 - 1):
                buf[pos] = ZERO
                pos += 1
            pos = _put(buf, pos, digits[:n])
        return pos
    buf[pos] = digits[0]
    pos += 1
    if n > 1:
        buf[pos] = DOT
        pos = _put(buf, pos + 1, digits[1:n])
    buf[pos] = 101           # 'e'
    buf[pos + 1] = MINUS if exp10 < 0 else 43   # '+'
    pos += 2
    e = abs(exp10)
    if e >= 100:
        buf[pos] = ZERO + e // 100
        pos += 1
    buf[pos] = ZERO + (e // 10) % 10
    buf[pos + 1] = ZERO + e % 10
    return pos + 2


# Cells start .. of the rows of values (n, k) (flat index r * k + c) as CSV text at buf[pos:]:
# '%.9g' of each, "," between the cells of a row and "\n" after its last.
# buf (uint8, MAX_CELL bytes a cell) -> returns (index, position): index = n * k when every cell
# is written, else the index of a cell too near a tie (see the module docstring), not written
@njit(**SERIAL)
def format_rows(buf, values, pow10, start, pos):
    n, k = values.shape
    digits = np.empty(9, np.uint8)
    for idx in range(start, n * k):
        r = idx // k
        c = idx - r * k
        v = np.float64(values[r, c])
        at = pos
        if v != v:
            buf[at] = 110    # "nan"
            buf[at + 1] = 97
            buf[at + 2] = 110
            at += 3
        else:
            if v < 0.0 or (v == 0.0 and np.signbit(v)):
                buf[at] = MINUS
                at += 1
            a = abs(v)
            if a == 0.0:
                buf[at] = ZERO
                at += 1
            elif a == np.inf:
                buf[at] = 105    # "inf"
                buf[at + 1] = 110
                buf[at + 2] = 102
                at += 3
            else:
                at = _put_number(buf, at, a, pow10, digits)
                if at < 0:
                    return idx, pos
        buf[at] = COMMA if c < k - 1 else NEWLINE
        pos = at + 1
    return n * k, pos


# The rows of values as format_rows writes them, in runs of rows formatted on threads, each into
# its own region of buf (rows r0.. at byte r0 k MAX_CELL), then moved together: the same bytes.
# Where a run meets a cell too near a tie, returns -1 and the caller formats the rows serially.
# buf (uint8, MAX_CELL bytes a cell) -> returns the bytes written at buf[0:]
@njit(**PARALLEL)
def format_parts(buf, values, pow10):
    n, k = values.shape
    if n * k < PARALLEL_CELLS:
        idx, pos = format_rows(buf, values, pow10, 0, 0)
        return pos if idx == n * k else -1
    parts = 8
    rows = (n + parts - 1) // parts
    ends = np.zeros(parts, np.int64)
    for p in prange(parts):
        r0 = min(p * rows, n)
        r1 = min(r0 + rows, n)
        idx, pos = format_rows(buf[r0 * k * MAX_CELL:], values[r0:r1], pow10, 0, 0)
        ends[p] = pos if idx == (r1 - r0) * k else -1
    pos = 0
    for p in range(parts):
        if ends[p] < 0:
            return -1
        start = min(p * rows, n) * k * MAX_CELL
        for b in range(ends[p]):
            buf[pos + b] = buf[start + b]
        pos += ends[p]
    return pos
