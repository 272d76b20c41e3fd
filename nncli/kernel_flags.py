"""The compile flags of every nncli kernel, in one place (nncli.kernels, nncli.kernels_conv and
nncli.kernels_gemm decorate their functions with these).

``SERIAL`` for a function that runs on one thread, ``PARALLEL`` for one that splits a loop over
threads (or calls one that does), ``FAST`` as ``fastmath=FAST`` where no exp/log is near.
error_model="numpy" drops the division-by-zero check that stops loops from vectorising.
FAST is for element-by-element loops only (the optimizers, bias rows, dropout), never for a sum:
its reassociation would let LLVM vectorise a reduction at the host's vector width, in an order
of its own, and a model trained on an AVX2 CPU would differ from one trained with AVX-512 (the
dot products of nncli.kernels_dot fix their lanes in LLVM IR instead). It never includes
'nnan'/'ninf', which would let NaN checks be optimised away.

Numba reads these when it compiles a function; it does not see an edit here in the modules that
use them, so nncli's cache folder is keyed by a digest of this file too (nncli.kernel_cache).
This module imports only numba.
"""

from __future__ import annotations

import warnings

from numba.core.errors import NumbaPerformanceWarning

SERIAL = dict(cache=True, error_model="numpy", nogil=True)
PARALLEL = dict(SERIAL, parallel=True)
FAST = {"nsz", "arcp", "contract", "reassoc"}
# Multiply-adds below which a product (dense, conv, local, the fused optimizer step) runs on one
# thread: waking the others costs about a microsecond a kernel, which smaller products do not
# repay. Where the work is split never changes a sum (each output element has one owner).
PARALLEL_MACS = 65536

# Functions that call parallel kernels are compiled parallel too, although they may have no loop
# of their own to split: a serial caller of a parallel callee crashes when loaded from Numba's
# cache (numba/numba#8578, #4807). Numba warns that they have nothing to parallelise; we know.
warnings.filterwarnings("ignore", message="(?s).*no transformation for parallel execution",
                        category=NumbaPerformanceWarning)
