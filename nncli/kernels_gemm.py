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
from llvmlite.binding import get_host_cpu_features
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

_SERIAL = dict(cache=True, error_model="numpy", nogil=True)
_PARALLEL = dict(_SERIAL, parallel=True)


def _wide_vectors(context) -> bool:
    """True when the target compiled for has AVX-512 (its features decide the tile)."""
    features = getattr(context.codegen(), "_tm_features", None)  # what Numba gave LLVM
    if features is None:
        from numba.core import config

        features = config.CPU_FEATURES or get_host_cpu_features().flatten()
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
                 n_valid, accumulate):
    """C[i, j] (+)= sum_{p < kc} A[i, p] B[p, j] for i < m_valid, j < n_valid of one MR x NR
    tile, elements addressed flat: C at c_off + i ldc + j, A at a_off + i a_rs + p a_cs, B at
    b_off + p ldb + j. Nothing outside those rows and columns is read or written (masked vector
    loads and stores), so a tile may overhang its matrices. With accumulate false C's old values
    are not read. All three arrays share one dtype."""
    sig = types.void(C, c_off, ldc, A, a_off, a_rs, a_cs, B, b_off, ldb, kc, m_valid, n_valid,
                     accumulate)

    def codegen(context, builder, signature, args):
        (C_, c_off_, ldc_, A_, a_off_, a_rs_, a_cs_, B_, b_off_, ldb_, kc_, m_valid_, n_valid_,
         accumulate_) = args
        aty = signature.args
        rows, vectors, lanes = _tile_shape(context, aty[0].dtype)
        vty = ir.VectorType(context.get_data_type(aty[0].dtype), lanes)
        i64 = ir.IntType(64)
        zero64 = ir.Constant(i64, 0)
        name = f"v{lanes}f{aty[0].dtype.bitwidth}"
        i32 = ir.IntType(32)
        mty = ir.VectorType(ir.IntType(1), lanes)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty] * 3),
                                             f"llvm.fma.{name}")
        # named for opaque pointers; LLVM 14 (numba 0.60) re-mangles the name for its typed ones
        masked_load = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vty, [vty.as_pointer(), i32, mty, vty]),
            f"llvm.masked.load.{name}.p0")
        masked_store = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [vty, vty.as_pointer(), i32, mty]),
            f"llvm.masked.store.{name}.p0")
        align = ir.Constant(i32, 4)
        zeros = ir.Constant(vty, None)
        c = _data(context, builder, aty[0], C_, c_off_)
        a = _data(context, builder, aty[3], A_, a_off_)
        b = _data(context, builder, aty[7], B_, b_off_)

        def vector_at(base, offset):
            return builder.bitcast(builder.gep(base, [offset]), vty.as_pointer())

        # rows past m_valid read row 0 of A and store nothing; lanes past n_valid are masked
        a_rows = []
        row_valid = []
        for i in range(rows):
            row = ir.Constant(i64, i)
            row_valid.append(builder.icmp_signed("<", row, m_valid_))
            a_rows.append(builder.mul(builder.select(row_valid[i], row, zero64), a_rs_))
        n_splat = builder.insert_element(ir.Constant(ir.VectorType(i64, lanes), ir.Undefined),
                                         n_valid_, ir.Constant(i32, 0))
        n_splat = builder.shuffle_vector(n_splat, ir.Constant(ir.VectorType(i64, lanes),
                                                              ir.Undefined),
                                         ir.Constant(ir.VectorType(i32, lanes), None))
        col_masks = [builder.icmp_signed("<", ir.Constant(ir.VectorType(i64, lanes),
                                                          [v * lanes + j for j in range(lanes)]),
                                         n_splat) for v in range(vectors)]
        no_lanes = ir.Constant(mty, None)
        c_masks = [[builder.select(row_valid[i], col_masks[v], no_lanes) for v in range(vectors)]
                   for i in range(rows)]
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
        old = {(i, v): builder.call(masked_load, [c_vectors[i][v], align, c_masks[i][v], zeros])
               for i, v in tiles}
        builder.branch(head)

        builder.position_at_end(head)
        start = {}
        for t in tiles:
            start[t] = builder.phi(vty)
            start[t].add_incoming(zeros, entry)
            start[t].add_incoming(old[t], load_block)
        whole = fn.append_basic_block("tile_whole")
        masked = fn.append_basic_block("tile_masked")
        builder.cbranch(builder.icmp_signed(">", kc_, zero64), whole, done)
        builder.position_at_end(whole)
        builder.cbranch(builder.icmp_signed(">=", n_valid_, ir.Constant(i64, vectors * lanes)),
                        body, masked)
        a_lane = ir.Constant(i32, 0)
        splat = ir.Constant(ir.VectorType(i32, lanes), None)

        def reduction(loop, plain):
            """The loop over p in block `loop`, entered from `whole`; B's lanes masked unless
            plain. Returns the accumulators after its last step."""
            builder.position_at_end(loop)
            p = builder.phi(i64)
            p.add_incoming(zero64, whole)
            acc = {}
            for t in tiles:
                acc[t] = builder.phi(vty)
                acc[t].add_incoming(start[t], whole)
            b_row = builder.mul(p, ldb_)
            b_vectors = []
            for v in range(vectors):
                at = vector_at(b, builder.add(b_row, ir.Constant(i64, v * lanes)))
                b_vectors.append(builder.load(at, align=4) if plain else
                                 builder.call(masked_load, [at, align, col_masks[v], zeros]))
            a_col = builder.mul(p, a_cs_)
            new = {}
            for i in range(rows):
                scalar = builder.load(builder.gep(a, [builder.add(a_rows[i], a_col)]))
                one = builder.insert_element(ir.Constant(vty, ir.Undefined), scalar, a_lane)
                broadcast = builder.shuffle_vector(one, ir.Constant(vty, ir.Undefined), splat)
                for v in range(vectors):
                    new[i, v] = builder.call(fma, [broadcast, b_vectors[v], acc[i, v]])
            p_next = builder.add(p, ir.Constant(i64, 1))
            p.add_incoming(p_next, loop)
            for t in tiles:
                acc[t].add_incoming(new[t], loop)
            builder.cbranch(builder.icmp_signed("<", p_next, kc_), loop, done)
            return new

        # a whole tile's panel is read with plain loads (masked ones cost more without AVX-512)
        after = [(body, reduction(body, True)), (masked, reduction(masked, False))]
        builder.position_at_end(done)
        final = {}
        for t in tiles:
            final[t] = builder.phi(vty)
            final[t].add_incoming(start[t], head)
            for block, new in after:
                final[t].add_incoming(new[t], block)
        for i, v in tiles:
            builder.call(masked_store, [final[i, v], c_vectors[i][v], align, c_masks[i][v]])
        return context.get_dummy_value()

    return sig, codegen


# Rows r0..r1 of C, columns j0..j0 + NR (or to N), over the whole reduction in blocks of 256
# C (M, N), B (K, N) C-contiguous; A flat with strides (a_rs, a_cs)
@njit(**_SERIAL)
def _tile_group(C, A, a_rs, a_cs, B, j0, r0, r1):
    mr, nr = tile(C)
    M, N = C.shape
    K = B.shape[0]
    c = C.reshape(M * N)
    b = B.reshape(K * N)
    cols = min(nr, N - j0)
    for k0 in range(0, K, 256):
        kc = min(256, K - k0)
        for i in range(r0, r1, mr):
            micro_kernel(c, i * N + j0, N, A, i * a_rs + k0 * a_cs, a_rs, a_cs, b, k0 * N + j0,
                         N, kc, min(mr, r1 - i), cols, k0 > 0)


# C = op(A) B with op(A)[i, p] = A[i a_rs + p a_cs] (A flat), in groups of tiles: 8 tiles high
# (a group's rows of A stay in L2 while its panel of B stays in L1), fewer when that leaves
# under 4 groups to share between threads; on one thread under 2^16 multiply-adds
# A flat, B (K, N) -> C (M, N)
@njit(**_PARALLEL)
def _gemm(C, A, a_rs, a_cs, B):
    mr, nr = tile(C)
    M, N = C.shape
    panels = (N + nr - 1) // nr
    height = 8 * mr
    while height > mr and panels * ((M + height - 1) // height) < 4:
        height -= mr
    groups = panels * ((M + height - 1) // height)
    if M * N * B.shape[0] < 65536:
        for q in range(groups):
            g = q // panels
            _tile_group(C, A, a_rs, a_cs, B, (q % panels) * nr, g * height,
                        min(g * height + height, M))
        return
    for q in prange(groups):
        g = q // panels
        _tile_group(C, A, a_rs, a_cs, B, (q % panels) * nr, g * height,
                    min(g * height + height, M))


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


# True when n columns of C fill at least half a tile: narrower products (the last layer's 10
# outputs) run faster as dot products
@njit(**_SERIAL)
def fills_a_tile(C, n):
    return 2 * n >= tile(C)[1]
