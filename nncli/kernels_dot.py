"""Products of narrow dense layers as dot products of rows, and the transposes they need.

A dense layer's products run through nncli.kernels_gemm's register tiles whenever the output is
at least 64 bytes wide (16 float32 columns: half a tile with AVX-512; kernels_gemm.fills_a_tile).
The kernels here serve the narrower ones (the last layer's 10 outputs), for nncli.kernels'
dense_forward and dense_backward: C = A @ B^T with A and B row-major (matmul_nt), so each
output element is a dot product of two contiguous rows; the operand in the wrong orientation is
transposed into scratch first (transpose; O(rows x cols) against the product's
O(rows x cols x n)). Outputs come in 4 x 4 blocks: each step of the reduction loads 4 vectors of
A and 4 of B for 16 multiply-adds into 16 vector accumulators (without AVX-512, whose 16
registers hold 8 of them, as 2 x 2 blocks in turn). Reductions shorter than 64 keep 4 x 1
blocks (4 x 4 ones measured no faster there).

Every dot product is summed the same way on every CPU (so that a model trained with AVX2 has the
bits of one trained with AVX-512): in 512-bit vectors whatever the CPU's registers (16 float32
or 8 float64 lanes; LLVM splits each into two 256-bit registers without AVX-512, lane for lane
the same math), lane l summing the products of the steps t with t mod 16 = l (8 for float64)
in the order of t with one fused multiply-add each, the last partial vector read masked (zeros
past the end); then the lanes added in a fixed tree (halves, then quarters, ...). The block is
written in LLVM IR through a Numba intrinsic (dot_block) and its callers are compiled without
fastmath: a loop vectorised by LLVM would take the host's vector width and its own order of the
sums. The block's shape does not change a sum, so any block and any thread count give the same
bits.

Conventions of nncli.kernels: outputs first, preallocated; float32 and float64 from the same
source. Threads own groups of 16 rows of C (stripes of 32 columns of a transpose). Work below
PARALLEL_MACS multiply-adds (nncli.kernel_flags) stays on one thread.

This module imports only numba, llvmlite, the compile flags (nncli.kernel_flags) and the LLVM
helpers of nncli.kernels_gemm, and reads no module globals other than those flags; nncli's cache
folder is keyed by a digest of every kernel module (nncli.kernel_cache), so an edit here
recompiles nncli.kernels' functions too.
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from nncli.kernel_flags import PARALLEL, PARALLEL_MACS, SERIAL
from nncli.kernels_gemm import _data, _int, _wide_vectors, loop_phis, vector_functions

VECTOR_BYTES = 64  # the lanes of a dot product's sums: 512 bits on every CPU


def _horizontal_sum(builder, v, lanes):
    """The sum of the `lanes` lanes of `v` in a fixed tree: the upper half added to the lower,
    then the upper quarter to the lower, ... (plain fadd: no flag lets LLVM reorder it)."""
    while lanes > 1:
        half = lanes // 2
        picks = [ir.Constant(ir.VectorType(ir.IntType(32), half), list(range(h, h + half)))
                 for h in (0, half)]
        v = builder.fadd(*(builder.shuffle_vector(v, v, pick) for pick in picks))
        lanes = half
    return builder.extract_element(v, ir.Constant(ir.IntType(32), 0))


def _emit_dots(context, builder, dtype, c, ldc, a, lda, b, ldb, k, rows, cols):
    """The LLVM IR of a rows x cols block of dot products (see dot_block) into `builder`; c, a
    and b point to the block's first element of C, row of A and row of B."""
    i64 = ir.IntType(64)
    if rows * cols > 4 and not _wide_vectors(context):
        # each accumulator takes two of AVX2's 16 registers: 2 x 2 blocks, one after the other
        for r in range(0, rows, 2):
            for j in range(0, cols, 2):
                row, col = ir.Constant(i64, r), ir.Constant(i64, j)
                _emit_dots(context, builder, dtype, builder.gep(c, [builder.add(
                    builder.mul(row, ldc), col)]), ldc, builder.gep(a, [builder.mul(row, lda)]),
                    lda, builder.gep(b, [builder.mul(col, ldb)]), ldb, k, min(2, rows - r),
                    min(2, cols - j))
        return
    lanes = VECTOR_BYTES // (dtype.bitwidth // 8)
    vty, fma, masked_load, _ = vector_functions(context, builder, dtype, lanes)
    zero64 = ir.Constant(i64, 0)
    align = ir.Constant(ir.IntType(32), 4)
    zeros = ir.Constant(vty, None)
    a_rows = [builder.gep(a, [builder.mul(ir.Constant(i64, r), lda)]) for r in range(rows)]
    b_rows = [builder.gep(b, [builder.mul(ir.Constant(i64, j), ldb)]) for j in range(cols)]
    block = [(r, j) for r in range(rows) for j in range(cols)]
    whole = builder.and_(k, ir.Constant(i64, -lanes))  # steps in whole vectors

    def vector_at(row, t):
        return builder.bitcast(builder.gep(row, [t]), vty.as_pointer())

    fn = builder.function
    entry = builder.block
    loop = fn.append_basic_block("dots_loop")
    rest = fn.append_basic_block("dots_rest")
    masked = fn.append_basic_block("dots_masked")
    done = fn.append_basic_block("dots_done")
    builder.cbranch(builder.icmp_signed(">", whole, zero64), loop, rest)

    builder.position_at_end(loop)
    t, acc = loop_phis(builder, vty, entry, dict.fromkeys(block, zeros))
    a_vectors = [builder.load(vector_at(row, t), align=4) for row in a_rows]
    b_vectors = [builder.load(vector_at(row, t), align=4) for row in b_rows]
    new = {(r, j): builder.call(fma, [a_vectors[r], b_vectors[j], acc[r, j]]) for r, j in block}
    t_next = builder.add(t, ir.Constant(i64, lanes))
    t.add_incoming(t_next, loop)
    for rj in block:
        acc[rj].add_incoming(new[rj], loop)
    builder.cbranch(builder.icmp_signed("<", t_next, whole), loop, rest)

    # the last partial vector: lanes past k read as zeros (fma(0, 0, s) leaves s's value)
    builder.position_at_end(rest)
    sums = {}
    for rj in block:
        sums[rj] = builder.phi(vty)
        sums[rj].add_incoming(zeros, entry)
        sums[rj].add_incoming(new[rj], loop)
    left = builder.sub(k, whole)
    builder.cbranch(builder.icmp_signed(">", left, zero64), masked, done)
    builder.position_at_end(masked)
    left_splat = builder.shuffle_vector(
        builder.insert_element(ir.Constant(ir.VectorType(i64, lanes), ir.Undefined), left,
                               ir.Constant(ir.IntType(32), 0)),
        ir.Constant(ir.VectorType(i64, lanes), ir.Undefined),
        ir.Constant(ir.VectorType(ir.IntType(32), lanes), None))
    mask = builder.icmp_signed("<", ir.Constant(ir.VectorType(i64, lanes), list(range(lanes))),
                               left_splat)
    a_last = [builder.call(masked_load, [vector_at(row, whole), align, mask, zeros])
              for row in a_rows]
    b_last = [builder.call(masked_load, [vector_at(row, whole), align, mask, zeros])
              for row in b_rows]
    last = {(r, j): builder.call(fma, [a_last[r], b_last[j], sums[r, j]]) for r, j in block}
    builder.branch(done)

    builder.position_at_end(done)
    final = {}
    for rj in block:
        final[rj] = builder.phi(vty)
        final[rj].add_incoming(sums[rj], rest)
        final[rj].add_incoming(last[rj], masked)
    for r, j in block:
        at = builder.add(builder.mul(ir.Constant(i64, r), ldc), ir.Constant(i64, j))
        builder.store(_horizontal_sum(builder, final[r, j], lanes), builder.gep(c, [at]))


def _dot_block(rows, cols):
    """dot_block for a rows x cols block of C (an intrinsic per shape: the shape is unrolled
    into the IR)."""

    def dot_block(typingctx, C, c_off, ldc, A, a_off, lda, B, b_off, ldb, k):
        """C[c_off + r ldc + j] = sum_{t < k} A[a_off + r lda + t] B[b_off + j ldb + t] for
        r < rows, j < cols, each sum in the fixed lanes and order of the module docstring. All
        arrays flat and of one dtype; nothing past the k steps of a row is read."""
        sig = types.void(C, c_off, ldc, A, a_off, lda, B, b_off, ldb, k)

        def codegen(context, builder, signature, args):
            C_, c_off_, ldc_, A_, a_off_, lda_, B_, b_off_, ldb_, k_ = args
            aty = signature.args
            _emit_dots(context, builder, aty[0].dtype, _data(context, builder, aty[0], C_, c_off_),
                       ldc_, _data(context, builder, aty[3], A_, a_off_), lda_,
                       _data(context, builder, aty[6], B_, b_off_), ldb_, k_, rows, cols)
            return context.get_dummy_value()

        return sig, codegen

    dot_block.__name__ = dot_block.__qualname__ = f"dot_block_{rows}x{cols}"
    return intrinsic(dot_block)


dot_4x4 = _dot_block(4, 4)
dot_4x1 = _dot_block(4, 1)
dot_1x1 = _dot_block(1, 1)


# Rows r0..r1 of C = A @ B^T (C (m, p), A (m, k), B (p, k), all flat): 4 x 4 blocks (4 x 1 for
# reductions under 64), then the rows past the last 4
@njit(**SERIAL)
def _dot_rows(c, a, b, r0, r1, p, k):
    r4 = r1 - (r1 - r0) % 4
    p4 = p - p % 4 if k >= 64 else 0
    for j in range(0, p4, 4):
        for r in range(r0, r4, 4):
            dot_4x4(c, r * p + j, p, a, r * k, k, b, j * k, k, k)
    for r in range(r0, r4, 4):
        for j in range(p4, p):
            dot_4x1(c, r * p + j, p, a, r * k, k, b, j * k, k, k)
    for r in range(r4, r1):
        for j in range(p):
            dot_1x1(c, r * p + j, p, a, r * k, k, b, j * k, k, k)


# C = A @ B^T
# A (m, k), B (p, k) -> C (m, p), all C-contiguous
@njit(**PARALLEL)
def matmul_nt(C, A, B):
    m, p = C.shape
    k = B.shape[1]
    c, a, b = C.reshape(C.size), A.reshape(A.size), B.reshape(B.size)
    if m * p * k < PARALLEL_MACS:
        _dot_rows(c, a, b, _int(0), m, p, k)
        return
    for q in prange((m + 15) // 16):
        _dot_rows(c, a, b, q * 16 + 0, min(q * 16 + 16, m), p, k)


# out[j:j+4, i:i+4] = A[i:i+4, j:j+4]^T: sixteen loads of four short rows, then four short rows
# stored (the compiler turns them into vector shuffles: 0.35 ns an element here, against 0.7 for
# an element-by-element loop)
@njit(**SERIAL)
def _transpose4(out, A, i, j):
    r0 = A[i]
    r1 = A[i + 1]
    r2 = A[i + 2]
    r3 = A[i + 3]
    a00, a01, a02, a03 = r0[j], r0[j + 1], r0[j + 2], r0[j + 3]
    a10, a11, a12, a13 = r1[j], r1[j + 1], r1[j + 2], r1[j + 3]
    a20, a21, a22, a23 = r2[j], r2[j + 1], r2[j + 2], r2[j + 3]
    a30, a31, a32, a33 = r3[j], r3[j + 1], r3[j + 2], r3[j + 3]
    out[j, i], out[j, i + 1], out[j, i + 2], out[j, i + 3] = a00, a10, a20, a30
    out[j + 1, i], out[j + 1, i + 1], out[j + 1, i + 2], out[j + 1, i + 3] = a01, a11, a21, a31
    out[j + 2, i], out[j + 2, i + 1], out[j + 2, i + 2], out[j + 2, i + 3] = a02, a12, a22, a32
    out[j + 3, i], out[j + 3, i + 1], out[j + 3, i + 2], out[j + 3, i + 3] = a03, a13, a23, a33


# Columns j0..j1 of A into rows j0..j1 of out: 4 x 4 blocks, then the ragged edges
@njit(**SERIAL)
def _transpose_stripe(out, A, j0, j1):
    m = A.shape[0]
    m4 = m - m % 4
    j4 = j0 + (j1 - j0) - (j1 - j0) % 4
    for i in range(0, m4, 4):
        for j in range(j0, j4, 4):
            _transpose4(out, A, i, j)
    for i in range(m):
        for j in range(j4, j1):
            out[j, i] = A[i, j]
    for i in range(m4, m):
        for j in range(j0, j4):
            out[j, i] = A[i, j]


# out = A^T in stripes of 32 columns of A (a stripe's rows of out stay in L1); threads own stripes
# from 2^14 elements (a 32 x 784 batch already gains from a second thread)
# A (m, p) -> out (p, m)
@njit(**PARALLEL)
def transpose(out, A):
    m, p = A.shape
    stripes = (p + 31) // 32
    if m * p < 16384:
        for q in range(stripes):
            _transpose_stripe(out, A, q * 32, min(q * 32 + 32, p))
        return
    for q in prange(stripes):
        _transpose_stripe(out, A, q * 32, min(q * 32 + 32, p))
