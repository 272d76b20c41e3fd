"""Matrix products at the processor's peak: a register-tiled micro-kernel and its drivers.

A product C = op(A) B runs as a grid of tiles of MR rows by NR columns of C. Each tile's
accumulators stay in vector registers across the whole reduction (the "outer-product" form of
BLIS and llm.c's matmul: per step of the reduction one vector load of B per NR/W columns, one
broadcast of A per row, MR x NR/W fused multiply-adds), so nothing is stored and nothing is
summed horizontally inside the loop. LLVM does not find that form from a loop written in Python
(its loop vectoriser only vectorises innermost loops, and the accumulators would live in memory),
so the micro-kernel is written in LLVM IR through a Numba intrinsic: vector types, phi nodes for
the accumulators, ``llvm.fma``. Everything around it (tiling, edges, threads) is plain Numba.

The tile is chosen for the target's registers: 8 x 2 vectors of 512 bits with AVX-512 (16 of
its 32 registers hold C), 6 x 2 vectors of 256 bits otherwise (12 of 16, BLIS's Haswell shape).
Numba keys its cache by the target's features, so a cached kernel always matches its tile.

Reduction blocks of 256 keep a tile's panel of B (256 x NR) in L1 while the tile walks down the
rows of A; tiles are grouped 64 rows high so that one group's rows of A stay in L2.

Determinism: each element of C belongs to one tile, which sums it in the order of the reduction
index with one fused multiply-add per step, whatever the thread count.

This module imports only numpy, numba and llvmlite and reads no module globals other than the
decorator settings (Numba's cache would not notice a change to another global). Numba's cache
keys a compiled function on its own source file only: after editing this file, remove the
cached kernels so that nncli.kernels recompiles (see nncli.kernel_cache).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

_SERIAL = dict(cache=True, error_model="numpy", nogil=True)
_PARALLEL = dict(_SERIAL, parallel=True)


def _wide_vectors(context) -> bool:
    """True when the target compiled for has AVX-512 (its features decide the tile)."""
    features = getattr(context.codegen(), "_tm_features", "") or ""
    return "+avx512f" in features.split(",")


def _tile_shape(context, dtype) -> tuple[int, int, int]:
    """(rows MR, vectors per row NV, lanes per vector) of the micro-kernel's tile."""
    width_bytes, rows = (64, 8) if _wide_vectors(context) else (32, 6)
    return rows, 2, width_bytes // (dtype.bitwidth // 8)


@intrinsic
def tile(typingctx, C):
    """(MR, NR): rows and columns of C one micro-kernel call computes, for C's dtype."""
    sig = types.UniTuple(types.int64, 2)(C)

    def codegen(context, builder, signature, args):
        rows, vectors, lanes = _tile_shape(context, signature.args[0].dtype)
        i64 = ir.IntType(64)
        return context.make_tuple(builder, signature.return_type,
                                  [ir.Constant(i64, rows), ir.Constant(i64, vectors * lanes)])

    return sig, codegen


def _data(context, builder, ty, value, offset):
    """Pointer to element `offset` of the array `value` of Numba type `ty`."""
    return builder.gep(context.make_array(ty)(context, builder, value).data, [offset])


@intrinsic
def micro_kernel(typingctx, C, c_off, ldc, A, a_off, a_rs, a_cs, B, b_off, ldb, kc, m_valid,
                 accumulate):
    """C[i, j] (+)= sum_{p < kc} A[i, p] B[p, j] for a whole MR x NR tile, elements addressed
    flat: C at c_off + i ldc + j, A at a_off + i a_rs + p a_cs, B at b_off + p ldb + j.
    Rows i >= m_valid read row 0 of A (they must then be thrown away by the caller); with
    accumulate false the tile's old values are ignored. All three arrays share one dtype."""
    sig = types.void(C, c_off, ldc, A, a_off, a_rs, a_cs, B, b_off, ldb, kc, m_valid, accumulate)

    def codegen(context, builder, signature, args):
        (C_, c_off_, ldc_, A_, a_off_, a_rs_, a_cs_, B_, b_off_, ldb_, kc_, m_valid_,
         accumulate_) = args
        aty = signature.args
        rows, vectors, lanes = _tile_shape(context, aty[0].dtype)
        vty = ir.VectorType(context.get_data_type(aty[0].dtype), lanes)
        i64 = ir.IntType(64)
        zero64 = ir.Constant(i64, 0)
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vty, [vty] * 3),
            f"llvm.fma.v{lanes}f{aty[0].dtype.bitwidth}")
        c = _data(context, builder, aty[0], C_, c_off_)
        a = _data(context, builder, aty[3], A_, a_off_)
        b = _data(context, builder, aty[7], B_, b_off_)

        def vector_at(base, offset):
            return builder.bitcast(builder.gep(base, [offset]), vty.as_pointer())

        a_rows = []
        for i in range(rows):
            row = ir.Constant(i64, i)
            valid = builder.icmp_signed("<", row, m_valid_)
            a_rows.append(builder.mul(builder.select(valid, row, zero64), a_rs_))
        c_vectors = [[vector_at(c, builder.add(builder.mul(ir.Constant(i64, i), ldc_),
                                               ir.Constant(i64, v * lanes)))
                      for v in range(vectors)] for i in range(rows)]
        tiles = [(i, v) for i in range(rows) for v in range(vectors)]

        fn = builder.function
        entry = builder.basic_block
        load_block = fn.append_basic_block("tile_load")
        head = fn.append_basic_block("tile_head")
        body = fn.append_basic_block("tile_body")
        done = fn.append_basic_block("tile_done")
        builder.cbranch(builder.icmp_unsigned("!=", accumulate_, ir.Constant(accumulate_.type, 0)),
                        load_block, head)
        builder.position_at_end(load_block)
        old = {t: builder.load(c_vectors[t[0]][t[1]], align=4) for t in tiles}
        builder.branch(head)

        builder.position_at_end(head)
        start = {}
        for t in tiles:
            start[t] = builder.phi(vty)
            start[t].add_incoming(ir.Constant(vty, None), entry)
            start[t].add_incoming(old[t], load_block)
        builder.cbranch(builder.icmp_signed(">", kc_, zero64), body, done)

        builder.position_at_end(body)
        p = builder.phi(i64)
        p.add_incoming(zero64, head)
        acc = {}
        for t in tiles:
            acc[t] = builder.phi(vty)
            acc[t].add_incoming(start[t], head)
        b_row = builder.mul(p, ldb_)
        b_vectors = [builder.load(vector_at(b, builder.add(b_row, ir.Constant(i64, v * lanes))),
                                  align=4) for v in range(vectors)]
        a_col = builder.mul(p, a_cs_)
        lane0 = ir.Constant(ir.IntType(32), 0)
        splat = ir.Constant(ir.VectorType(ir.IntType(32), lanes), None)
        new = {}
        for i in range(rows):
            scalar = builder.load(builder.gep(a, [builder.add(a_rows[i], a_col)]))
            one = builder.insert_element(ir.Constant(vty, ir.Undefined), scalar, lane0)
            broadcast = builder.shuffle_vector(one, ir.Constant(vty, ir.Undefined), splat)
            for v in range(vectors):
                new[i, v] = builder.call(fma, [broadcast, b_vectors[v], acc[i, v]])
        p_next = builder.add(p, ir.Constant(i64, 1))
        p.add_incoming(p_next, body)
        for t in tiles:
            acc[t].add_incoming(new[t], body)
        builder.cbranch(builder.icmp_signed("<", p_next, kc_), body, done)

        builder.position_at_end(done)
        final = {}
        for t in tiles:
            final[t] = builder.phi(vty)
            final[t].add_incoming(start[t], head)
            final[t].add_incoming(new[t], body)
        for t in tiles:
            builder.store(final[t], c_vectors[t[0]][t[1]], align=4)
        return context.get_dummy_value()

    return sig, codegen


# One group of tiles: rows r0..r1 of C (at most 64), columns j0..j0+NR, over the whole reduction
# in blocks of 256. A tile that overhangs C (the last rows, or columns past N) is computed in
# the scratch tile T and copied; a panel of B that overhangs is first copied into the zero-padded
# scratch P (K x NR). C (M, N), B (K, N) C-contiguous; A flat with strides (a_rs, a_cs).
@njit(**_SERIAL)
def _tile_group(C, A, a_rs, a_cs, B, j0, r0, r1):
    mr, nr = tile(C)
    M, N = C.shape
    K = B.shape[0]
    c = C.reshape(M * N)
    b = B.reshape(K * N)
    cols = min(nr, N - j0)
    T = np.empty((mr, nr), C.dtype)
    if cols < nr:
        P = np.zeros((K, nr), C.dtype)
        for p in range(K):
            for j in range(cols):
                P[p, j] = B[p, j0 + j]
        panel, p_off, ldb = P.reshape(K * nr), 0, nr
    else:
        panel, p_off, ldb = b, j0, N
    for k0 in range(0, K, 256):
        kc = min(256, K - k0)
        more = k0 > 0
        for i in range(r0, r1, mr):
            rows = min(mr, r1 - i)
            a_off = i * a_rs + k0 * a_cs
            if rows == mr and cols == nr:
                micro_kernel(c, i * N + j0, N, A, a_off, a_rs, a_cs, panel, p_off + k0 * ldb, ldb,
                             kc, mr, more)
                continue
            for r in range(rows):
                for j in range(cols):
                    T[r, j] = C[i + r, j0 + j]
            micro_kernel(T.reshape(mr * nr), 0, nr, A, a_off, a_rs, a_cs, panel,
                         p_off + k0 * ldb, ldb, kc, rows, more)
            for r in range(rows):
                for j in range(cols):
                    C[i + r, j0 + j] = T[r, j]


# C = op(A) B with op(A)[i, p] = A[i a_rs + p a_cs] (A flat); groups of 64 rows x NR columns
# over threads from 2^16 multiply-adds
# A flat, B (K, N) -> C (M, N)
@njit(**_PARALLEL)
def _gemm(C, A, a_rs, a_cs, B):
    _, nr = tile(C)
    M, N = C.shape
    panels = (N + nr - 1) // nr
    groups = panels * ((M + 63) // 64)
    if M * N * B.shape[0] < 65536:
        for q in range(groups):
            g = q // panels
            _tile_group(C, A, a_rs, a_cs, B, (q % panels) * nr, g * 64, min(g * 64 + 64, M))
        return
    for q in prange(groups):
        g = q // panels
        _tile_group(C, A, a_rs, a_cs, B, (q % panels) * nr, g * 64, min(g * 64 + 64, M))


# C = A @ B
# A (m, k), B (k, n) -> C (m, n), all C-contiguous
@njit(**_PARALLEL)
def matmul_nn(C, A, B):
    _gemm(C, A.reshape(A.size), A.shape[1], 1, B)


# C = A^T @ B (a weight gradient X^T dZ: A's rows are read as columns, no transpose needed)
# A (k, m), B (k, n) -> C (m, n), all C-contiguous
@njit(**_PARALLEL)
def matmul_tn(C, A, B):
    _gemm(C, A.reshape(A.size), 1, A.shape[1], B)


# True when C's width fills at least one tile: narrower products (the last layer's 10 outputs)
# run faster as dot products
@njit(**_SERIAL)
def fills_a_tile(C, n):
    return n >= tile(C)[1]
