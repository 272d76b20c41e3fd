"""nncli: train small dense and 1-D convolutional neural networks on the CPU from a one-line architecture string.

Importing this package is cheap on purpose: numba is only imported by the modules that run
kernels, so ``nncli --help`` starts fast.
"""

__version__ = "0.1.0"
