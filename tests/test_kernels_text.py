"""The compiled CSV formatter (nncli.kernels_text) against its reference, Python's own
'%.9g' % float(v) (what np.savetxt(fmt='%.9g') writes): random bit patterns of float32 and
float64, the edge cases of the format, and the cells it hands back to Python (ties)."""

from __future__ import annotations

import numpy as np
import pytest

from nncli.model import K

EDGES = [0.0, -0.0, 1e-45, -1e-45, 3.4e38, 3.4028234663852886e38, 1e-5, 1e-4, 9.99999e-5,
         1e16, 1e15, 9.9999999995, 99999999.95, 999999999.5, 999999999.4, 1e9, 1e8, 123456789.0,
         1234567890.0, 0.9990234375, 0.5, 0.1, 1 / 3, -12345.678, 1.0, 2.0, 100.0, 7.0, -3.0,
         float("nan"), float("inf"), float("-inf"), 5e-324, 2.2250738585072014e-308,
         1.7976931348623157e308, 1e-100, 1e100, 1e-10, 123.456, 0.000123456789, 1e22, 1e23]


def reference(values: np.ndarray) -> bytes:
    """CSV text of the rows as Python formats each cell."""
    return "".join(",".join("%.9g" % float(v) for v in row) + "\n" for row in values).encode()


def formatted(values: np.ndarray) -> tuple[bytes, int]:
    """(CSV text of the rows from the kernel, how many cells it handed back), each handed-back
    cell written as a caller does: Python's '%.9g' and its separator."""
    k = values.shape[1]
    buf = np.zeros(values.size * K.MAX_CELL, np.uint8)
    pow10 = K.powers_of_ten()
    idx = pos = handed = 0
    while True:
        idx, pos = K.format_rows(buf, values, pow10, idx, pos)
        if idx == values.size:
            return buf[:pos].tobytes(), handed
        text = ("%.9g" % float(values.flat[idx]) + ("," if idx % k < k - 1 else "\n")).encode()
        buf[pos:pos + len(text)] = np.frombuffer(text, np.uint8)
        pos += len(text)
        idx += 1
        handed += 1


def random_bits(dtype, shape, seed: int) -> np.ndarray:
    """Floats of uniformly random bit patterns: every exponent, subnormals, NaN and infinities."""
    rng = np.random.default_rng(seed)
    if dtype == np.float32:
        return rng.integers(0, 2**32, size=shape, dtype=np.uint64).astype(np.uint32).view(
            np.float32)
    return rng.integers(-2**63, 2**63, size=shape, dtype=np.int64).view(np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_random_bit_patterns_are_formatted_as_python_does(dtype):
    values = random_bits(dtype, (20000, 5), seed=1)
    text, _ = formatted(values)
    assert text == reference(values)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_values_of_every_magnitude_as_model_outputs_have_them(dtype):
    rng = np.random.default_rng(2)
    values = (rng.standard_normal((3000, 7)) * 10.0 ** rng.integers(-12, 12, (3000, 7)))
    values = values.astype(dtype)
    text, handed = formatted(values)
    assert text == reference(values)
    assert handed <= 2   # the compiled path writes nearly every cell


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_edge_cases(dtype):
    with np.errstate(over="ignore"):
        values = np.array(EDGES, dtype=dtype)[:, None]
    text, _ = formatted(values)
    assert text == reference(values)


def test_exact_ties_are_rounded_to_even_in_the_kernel():
    # 10 significant digits ending in 5: float64's estimate cannot tell a tie from its
    # neighbours, 64-bit integers can
    values = np.array([[0.9990234375, 1000000.125, 1.001953125, 1000000.375]], np.float32)
    text, handed = formatted(values)
    assert text == b"0.999023438,1000000.12,1.00195312,1000000.38\n" == reference(values)
    assert handed == 0
    ties = np.array([[123456789.5, 123456788.5, 1234567895.0, 1234567885.0, 0.1234567895,
                      12345678950.0, 2.5, 1e-8 + 5e-17]])
    text, handed = formatted(ties)
    assert text == reference(ties) and handed == 0


def test_near_ties_beyond_64_bits_are_handed_back_to_python():
    # decimal neighbours of a tie that float64 cannot hold exactly, tiny or huge
    values = np.array([[1.234567895e-12, 1.234567885e-12, 1234567895.0000002, 1.234567895e30]])
    text, handed = formatted(values)
    assert text == reference(values)
    assert handed >= 3


def test_integers_round_ups_and_exponents():
    values = np.array([[9.9999999995, 1e16, 1e-5, 123456789.0, 1234567890.0, 1e100, -0.0]])
    text, _ = formatted(values)
    assert text == b"10,1e+16,1e-05,123456789,1.23456789e+09,1e+100,-0\n"


def test_shapes_one_column_one_row_and_no_rows():
    for shape in ((1, 1), (1, 9), (13, 1)):
        values = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
        assert formatted(values)[0] == reference(values)
    assert K.format_rows(np.zeros(0, np.uint8), np.zeros((0, 3), np.float32),
                         K.powers_of_ten(), 0, 0) == (0, 0)


def test_the_longest_cells_fit_the_buffer_bound():
    values = np.array([[-1.23456789e-308, -1.23456789e-100, -1.23456789e+300]])
    text, _ = formatted(values)
    cells = text.rstrip(b"\n").split(b",")
    assert max(len(cell) for cell in cells) + 1 == K.MAX_CELL   # with its separator


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,k", [(2000, 5), (4097, 1), (3, 3), (9, 500)])
def test_rows_formatted_in_parts_on_threads_are_the_same_bytes(dtype, n, k):
    # format_parts: runs of rows into regions of their own, moved together (from 4096 cells);
    # uneven runs (4097 rows of one cell), fewer rows than runs (9 rows), and below the bound
    values = random_bits(dtype, (n, k), seed=n + k)
    buf = np.zeros(values.size * K.MAX_CELL, np.uint8)
    written = K.format_parts(buf, values, K.powers_of_ten())
    want, handed = formatted(values)
    if handed:                              # a cell for Python somewhere: the caller's turn
        assert written == -1
    else:
        assert buf[:written].tobytes() == want == reference(values)


def test_a_tie_in_any_part_hands_the_rows_back():
    values = np.full((5000, 1), 0.25)
    values[4321, 0] = 1.234567895e30        # decided in Python (see above)
    assert K.format_parts(np.zeros(values.size * K.MAX_CELL, np.uint8), values,
                          K.powers_of_ten()) == -1
