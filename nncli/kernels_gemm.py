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
rows of A; tiles are grouped 8 high so that one group's rows of A stay in L2 (lower when that
leaves fewer than 4 groups). A tile's sums start from zero, from C (the later blocks
of a reduction) or from a bias row, and after the last block they can also be stored through
linear or relu into a second array: a dense layer's Z and A in one pass (dense_nn).

The same tile reads A through int64 offsets instead of strides in gathered_kernel
(gemm_gathered): A's element (i, p) at rows[i] + offsets[p], so a convolution's windows are the
rows (forward) or the reduction steps (weight gradient) of a product, read where they lie in
the input (nncli.kernels_conv). ``panel`` runs one column panel of tiles, strided or gathered,
over a whole reduction at any offsets and leading dimensions, for callers that lay out their
own products (the locally connected layers, a windowed layer's input gradient).

Determinism: each element of C belongs to one tile, which sums it in the order of the reduction
index with one fused multiply-add per step, whatever the thread count and whatever the tile's
shape (the 8 x 32 and 6 x 16 tiles give the same bits).

This module imports only numpy, numba, llvmlite and its compile flags (nncli.kernel_flags), and
reads no module globals other than those flags and TILE_BYTES. Numba keys a cached function on
its own source file only; nncli's cache folder is keyed by a digest of the kernel modules and
the flags (nncli.kernel_cache), so an edit here recompiles nncli.kernels' functions too.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from llvmlite.binding import get_host_cpu_features
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from nncli.kernel_flags import PARALLEL, PARALLEL_MACS, SERIAL


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


def vector_functions(context, builder, dtype, lanes):
    """(vector type, fma, masked load, masked store) for vectors of `lanes` elements of the
    Numba type `dtype`: LLVM's intrinsics declared in the module `builder` writes to (masks are
    vectors of i1, one per lane)."""
    vty = ir.VectorType(context.get_data_type(dtype), lanes)
    i32 = ir.IntType(32)
    mty = ir.VectorType(ir.IntType(1), lanes)
    name = f"v{lanes}f{dtype.bitwidth}"
    fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty] * 3),
                                         f"llvm.fma.{name}")
    # named for opaque pointers; LLVM 14 (numba 0.60) re-mangles the name for its typed ones
    masked_load = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vty, [vty.as_pointer(), i32, mty, vty]),
        f"llvm.masked.load.{name}.p0")
    masked_store = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [vty, vty.as_pointer(), i32, mty]),
        f"llvm.masked.store.{name}.p0")
    return vty, fma, masked_load, masked_store


def loop_phis(builder, vty, entry, starts):
    """At the top of a loop entered from the block `entry`: the phi of its step (0 on entry)
    and one accumulator phi of type `vty` per key of `starts` (starts[key] on entry)."""
    i64 = ir.IntType(64)
    step = builder.phi(i64)
    step.add_incoming(ir.Constant(i64, 0), entry)
    acc = {}
    for key, value in starts.items():
        acc[key] = builder.phi(vty)
        acc[key].add_incoming(value, entry)
    return step, acc


def _emit_tile(context, builder, dtype, c, ldc_, a, a_row, a_column, b, ldb_, kc_, m_valid_,
               n_valid_, begin_, bias_at, d, act_, rows=None):
    """The LLVM IR of one tile (see micro_kernel) into `builder`: C, B, the bias and D given as
    pointers to their first element, A as the pointer `a` with a_row(i) the offset of row i (an
    i64, called once per row before the loop; rows past m_valid ask for row 0) and a_column(p)
    the offset of step p of the reduction (called inside the loop). `rows` overrides the
    tile's height."""
    height, vectors, lanes = _tile_shape(context, dtype)
    rows = rows or height
    vty, fma, masked_load, masked_store = vector_functions(context, builder, dtype, lanes)
    i64 = ir.IntType(64)
    zero64 = ir.Constant(i64, 0)
    i32 = ir.IntType(32)
    mty = ir.VectorType(ir.IntType(1), lanes)
    align = ir.Constant(i32, 4)
    zeros = ir.Constant(vty, None)

    def vector_at(base, offset):
        return builder.bitcast(builder.gep(base, [offset]), vty.as_pointer())

    # rows past m_valid read row 0 of A and store nothing; lanes past n_valid are masked
    a_rows = []
    row_valid = []
    for i in range(rows):
        row = ir.Constant(i64, i)
        row_valid.append(builder.icmp_signed("<", row, m_valid_))
        a_rows.append(a_row(builder.select(row_valid[i], row, zero64)))
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
    def tile_vectors(base):
        return [[vector_at(base, builder.add(builder.mul(ir.Constant(i64, i), ldc_),
                                             ir.Constant(i64, v * lanes)))
                 for v in range(vectors)] for i in range(rows)]

    c_vectors = tile_vectors(c)
    tiles = [(i, v) for i in range(rows) for v in range(vectors)]

    fn = builder.function
    not_loaded = fn.append_basic_block("tile_not_loaded")
    load_block = fn.append_basic_block("tile_load")
    bias_block = fn.append_basic_block("tile_bias")
    head = fn.append_basic_block("tile_head")
    body = fn.append_basic_block("tile_body")
    done = fn.append_basic_block("tile_done")
    builder.cbranch(builder.icmp_signed("==", begin_, ir.Constant(begin_.type, 1)),
                    load_block, not_loaded)
    builder.position_at_end(not_loaded)
    builder.cbranch(builder.icmp_signed("==", begin_, ir.Constant(begin_.type, 2)),
                    bias_block, head)
    builder.position_at_end(load_block)
    old = {(i, v): builder.call(masked_load, [c_vectors[i][v], align, c_masks[i][v], zeros])
           for i, v in tiles}
    builder.branch(head)
    builder.position_at_end(bias_block)
    biases = [builder.call(masked_load, [vector_at(bias_at, ir.Constant(i64, v * lanes)), align,
                                         col_masks[v], zeros]) for v in range(vectors)]
    builder.branch(head)

    builder.position_at_end(head)
    start = {}
    for i, v in tiles:
        start[i, v] = builder.phi(vty)
        start[i, v].add_incoming(zeros, not_loaded)
        start[i, v].add_incoming(old[i, v], load_block)
        start[i, v].add_incoming(biases[v], bias_block)
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
        p, acc = loop_phis(builder, vty, whole, start)
        b_row = builder.mul(p, ldb_)
        b_vectors = []
        for v in range(vectors):
            at = vector_at(b, builder.add(b_row, ir.Constant(i64, v * lanes)))
            b_vectors.append(builder.load(at, align=4) if plain else
                             builder.call(masked_load, [at, align, col_masks[v], zeros]))
        a_col = a_column(p)
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
    # the epilogue: the sums, or their relu (value where > 0, else +0 as nncli's relu), to D
    epilogue = fn.append_basic_block("tile_epilogue")
    after = fn.append_basic_block("tile_after")
    builder.cbranch(builder.icmp_signed(">=", act_, ir.Constant(act_.type, 0)), epilogue,
                    after)
    builder.position_at_end(epilogue)
    relu = builder.icmp_signed("==", act_, ir.Constant(act_.type, 1))
    d_vectors = tile_vectors(d)
    for i, v in tiles:
        value = builder.select(relu, builder.select(
            builder.fcmp_ordered(">", final[i, v], zeros), final[i, v], zeros), final[i, v])
        builder.call(masked_store, [value, d_vectors[i][v], align, c_masks[i][v]])
    builder.branch(after)
    builder.position_at_end(after)


@intrinsic
def micro_kernel(typingctx, C, c_off, ldc, A, a_off, a_rs, a_cs, B, b_off, ldb, kc, m_valid,
                 n_valid, begin, bias, bias_off, D, d_off, act):
    """C[i, j] = s[j] + sum_{p < kc} A[i, p] B[p, j] for i < m_valid, j < n_valid of one MR x NR
    tile, elements addressed flat: C at c_off + i ldc + j, A at a_off + i a_rs + p a_cs, B at
    b_off + p ldb + j. The start s is 0 (begin 0), C's old value (begin 1) or bias[bias_off + j]
    (begin 2). With act 0 or 1 the sums also go to D (at d_off + i ldc + j, which may be C
    itself), as they are (0: linear) or through relu (1); with act -1 D is not touched.
    Nothing outside those rows and columns is read or written (masked vector loads and stores),
    so a tile may overhang its matrices. All arrays share one dtype."""
    sig = types.void(C, c_off, ldc, A, a_off, a_rs, a_cs, B, b_off, ldb, kc, m_valid, n_valid,
                     begin, bias, bias_off, D, d_off, act)

    def codegen(context, builder, signature, args):
        (C_, c_off_, ldc_, A_, a_off_, a_rs_, a_cs_, B_, b_off_, ldb_, kc_, m_valid_, n_valid_,
         begin_, bias_, bias_off_, D_, d_off_, act_) = args
        aty = signature.args
        _emit_tile(context, builder, aty[0].dtype, _data(context, builder, aty[0], C_, c_off_),
                   ldc_, _data(context, builder, aty[3], A_, a_off_),
                   lambda i: builder.mul(i, a_rs_), lambda p: builder.mul(p, a_cs_),
                   _data(context, builder, aty[7], B_, b_off_), ldb_, kc_, m_valid_, n_valid_,
                   begin_, _data(context, builder, aty[14], bias_, bias_off_),
                   _data(context, builder, aty[16], D_, d_off_), act_)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def gathered_kernel(typingctx, C, c_off, ldc, A, rows, r_off, offsets, k_off, B, b_off, ldb, kc,
                    m_valid, n_valid, begin, bias, bias_off, D, d_off, act):
    """micro_kernel with A's element (i, p) at A[rows[r_off + i] + offsets[k_off + p]] (rows and
    offsets int64 offsets into A flat): the rows, or the steps of the reduction, of a product
    whose operand is not evenly strided, such as the windows of a convolution read where they
    lie (an implicit im2col). The rest as micro_kernel."""
    sig = types.void(C, c_off, ldc, A, rows, r_off, offsets, k_off, B, b_off, ldb, kc, m_valid,
                     n_valid, begin, bias, bias_off, D, d_off, act)

    def codegen(context, builder, signature, args):
        (C_, c_off_, ldc_, A_, rows_, r_off_, offsets_, k_off_, B_, b_off_, ldb_, kc_, m_valid_,
         n_valid_, begin_, bias_, bias_off_, D_, d_off_, act_) = args
        aty = signature.args
        row_at = _data(context, builder, aty[4], rows_, r_off_)
        col_at = _data(context, builder, aty[6], offsets_, k_off_)
        _emit_tile(context, builder, aty[0].dtype, _data(context, builder, aty[0], C_, c_off_),
                   ldc_, _data(context, builder, aty[3], A_, ir.Constant(ir.IntType(64), 0)),
                   lambda i: builder.load(builder.gep(row_at, [i])),
                   lambda p: builder.load(builder.gep(col_at, [p])),
                   _data(context, builder, aty[8], B_, b_off_), ldb_, kc_, m_valid_, n_valid_,
                   begin_, _data(context, builder, aty[15], bias_, bias_off_),
                   _data(context, builder, aty[17], D_, d_off_), act_)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def column_sums(typingctx, C, c_off, B, b_off, ldb, kc, n_valid, begin):
    """C[c_off + j] = s[j] + sum_{p < kc} B[b_off + p ldb + j] for j < n_valid (at most NR, as
    micro_kernel's tile): one row of the tile with A all ones, so each column is summed in the
    order of p, the bits of adding B's rows one by one (1 x b is exact). s is 0 (begin 0) or
    C's old value (begin 1)."""
    sig = types.void(C, c_off, B, b_off, ldb, kc, n_valid, begin)

    def codegen(context, builder, signature, args):
        C_, c_off_, B_, b_off_, ldb_, kc_, n_valid_, begin_ = args
        aty = signature.args
        i64 = ir.IntType(64)
        zero = ir.Constant(i64, 0)
        one = cgutils.alloca_once_value(builder, context.get_constant(aty[0].dtype, 1.0))
        c = _data(context, builder, aty[0], C_, c_off_)
        _emit_tile(context, builder, aty[0].dtype, c, zero, one, lambda i: zero,
                   lambda p: zero, _data(context, builder, aty[2], B_, b_off_), ldb_, kc_,
                   ir.Constant(i64, 1), n_valid_, begin_, c, c, ir.Constant(i64, -1), rows=1)
        return context.get_dummy_value()

    return sig, codegen


# out[j] = sum over the rows of M (m, width) flat of M[., j], in the order of the rows, for
# j < width (column_sums a panel of NR columns at a time); out (width,)
@njit(**SERIAL)
def sum_rows(out, M, width):
    nr = tile(out)[1]
    for j0 in range(0, width, nr):
        column_sums(out, j0, M, j0, width, M.shape[0] // width, min(nr, width - j0), _int(0))


# m rows of C, the one at c_off + i ldc for row i (D's the same), and `cols` (<= NR) columns,
# over the whole reduction of K steps in blocks of 256: the first block starts from `first`
# (0 zeros, 1 C, 2 the bias at bias_off), the others from C; the last one also writes D through
# the epilogue `act` (see micro_kernel). A at a_off + i a_rs + p a_cs, or with offset vectors
# (rows not None: gathered_kernel) A's element (i, p) at rows[a_off + i a_rs] + offsets[p];
# B at b_off + p ldb; all arrays flat. (rows None is resolved while compiling: Numba prunes the
# branch it does not take, so the strided products never compile the gathered kernel.)
@njit(**SERIAL)
def panel(c, c_off, ldc, A, a_off, a_rs, a_cs, rows, offsets, b, b_off, ldb, K, m, cols, first,
          bias, bias_off, d, act):
    mr = tile(c)[0]
    for k0 in range(0, max(K, 1), 256):
        kc = min(256, K - k0)
        begin = first if k0 == 0 else 1
        last = act if k0 + 256 >= K else -1
        for i in range(0, m, mr):
            if rows is None:
                micro_kernel(c, c_off + i * ldc, ldc, A, a_off + i * a_rs + k0 * a_cs, a_rs,
                             a_cs, b, b_off + k0 * ldb, ldb, kc, min(mr, m - i), cols, begin,
                             bias, bias_off, d, c_off + i * ldc, last)
            else:
                gathered_kernel(c, c_off + i * ldc, ldc, A, rows, a_off + i * a_rs, offsets, k0,
                                b, b_off + k0 * ldb, ldb, kc, min(mr, m - i), cols, begin, bias,
                                bias_off, d, c_off + i * ldc, last)


# How an (M, N) C is shared between threads: (panels of NR columns, height of a group of rows,
# groups). Groups of tiles 8 tiles high (a group's rows of A stay in L2 while its panel of B
# stays in L1), fewer when that leaves under 4 groups to share between threads (the split never
# changes a sum: each element stays in one tile). (The thread count itself is not consulted:
# numba.get_num_threads in a kernel keeps Numba from caching it.)
@njit(**SERIAL)
def tile_groups(M, N, mr, nr):
    panels = (N + nr - 1) // nr
    height = 8 * mr
    while height > mr and panels * ((M + height - 1) // height) < 4:
        height -= mr
    return panels, height, panels * ((M + height - 1) // height)


# Rows r0..r1 of C, columns j0..j0 + NR (or to N), as panel
# C, D (M, N), B (K, N) C-contiguous; A flat; bias (N,)
@njit(**SERIAL)
def _tile_group(C, A, a_rs, a_cs, rows, offsets, B, j0, r0, r1, first, bias, D, act):
    nr = tile(C)[1]
    M, N = C.shape
    K = B.shape[0]
    panel(C.reshape(M * N), r0 * N + j0, N, A, r0 * a_rs, a_rs, a_cs, rows, offsets,
          B.reshape(K * N), j0, N, K, r1 - r0, min(nr, N - j0), first, bias, j0, D.reshape(M * N),
          act)


# C = op(A) B (+ bias), D = act(C), with op(A)[i, p] = A[i a_rs + p a_cs] (A flat), or
# A[rows[i] + offsets[p]] when rows is not None (then a_rs = 1, a_cs unused), in the groups of
# tile_groups; on one thread under PARALLEL_MACS multiply-adds
# A flat, B (K, N), bias (N,) -> C, D (M, N)
@njit(**PARALLEL)
def _gemm(C, A, a_rs, a_cs, rows, offsets, B, first, bias, D, act):
    mr, nr = tile(C)
    M, N = C.shape
    panels, height, groups = tile_groups(M, N, mr, nr)
    if M * N * B.shape[0] < PARALLEL_MACS:
        for q in range(groups):
            g = q // panels
            _tile_group(C, A, a_rs, a_cs, rows, offsets, B, (q % panels) * nr, g * height,
                        min(g * height + height, M), first, bias, D, act)
        return
    for q in prange(groups):
        g = q // panels
        _tile_group(C, A, a_rs, a_cs, rows, offsets, B, (q % panels) * nr, g * height,
                    min(g * height + height, M), first, bias, D, act)


# The value as a plain int64: a constant argument is typed as a literal, and every distinct set
# of literals would compile _gemm (a parallel function, the costliest to compile) once more
@njit(**SERIAL)
def _int(value):
    return np.int64(value)


# band = (A^T B)[r0:r1]: rows r0..r1 of matmul_tn's product (the same sums in the same order)
# into a buffer of their own, for a caller that consumes them at once while they are in cache
# (nncli.kernels_update.dense_weight_step)
# A (k, m), B (k, n) C-contiguous -> band ((r1 - r0) n,) at least, row i at i n
@njit(**SERIAL)
def tn_band(band, A, B, r0, r1):
    nr = tile(band)[1]
    K, M = A.shape
    N = B.shape[1]
    for j0 in range(0, N, nr):
        panel(band, j0, N, A.reshape(A.size), r0, _int(1), M, None, None, B.reshape(B.size), j0,
              N, K, r1 - r0, min(nr, N - j0), _int(0), band, _int(0), band, _int(-1))


# C = A @ B
# A (m, k), B (k, n) -> C (m, n), all C-contiguous
@njit(**PARALLEL)
def matmul_nn(C, A, B):
    _gemm(C, A.reshape(A.size), A.shape[1], _int(1), None, None, B, _int(0), C.reshape(C.size), C,
          _int(-1))


# C = A^T @ B (a weight gradient X^T dZ: A's rows are read as columns, no transpose needed)
# A (k, m), B (k, n) -> C (m, n), all C-contiguous
@njit(**PARALLEL)
def matmul_tn(C, A, B):
    _gemm(C, A.reshape(A.size), _int(1), A.shape[1], None, None, B, _int(0), C.reshape(C.size), C,
          _int(-1))


# Z = X @ W + b and A = act(Z) in one pass (bias as the sums' start, the activation as the
# tiles' epilogue); act 0 linear, 1 relu (codes of nncli.arch); A may be Z itself
# X (n, n_in), W (n_in, n_out), b (n_out,) -> Z, A (n, n_out), all C-contiguous
@njit(**PARALLEL)
def dense_nn(Z, A, X, W, b, act):
    _gemm(Z, X.reshape(X.size), X.shape[1], _int(1), None, None, W, _int(2), b, A, _int(act))


# C = op(A) B (+ bias), D = act(C) with op(A)[i, p] = A[rows[i] + offsets[p]]: a product whose
# rows (or reduction steps) are windows of A read where they lie; first and act as panel's
# A flat; rows (M,), offsets (K,) int64; B (K, N), bias (N,) -> C, D (M, N), all C-contiguous
@njit(**PARALLEL)
def gemm_gathered(C, A, rows, offsets, B, first, bias, D, act):
    _gemm(C, A, _int(1), _int(0), rows, offsets, B, first, bias, D, act)


# Bytes of a row of C from which a product takes the register tiles (fills_a_tile)
TILE_BYTES = 64


# True when n columns of C fill at least half of the widest tile (TILE_BYTES: 16 float32 or 8
# float64 columns); narrower products (the last layer's 10 outputs) run faster as the dot
# products of nncli.kernels_dot. A constant, not this CPU's tile: the two paths sum in different
# orders, and every CPU must take the same one to give the same bits.
@njit(**SERIAL)
def fills_a_tile(C, n):
    return n * C.itemsize >= TILE_BYTES
