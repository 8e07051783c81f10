# SPDX-License-Identifier: BSD-3-Clause
"""The kernel matrix ``K(X, Z)`` as an operator evaluated in memory-bounded blocks.

Used for predictions (``X`` new points, ``Z`` the centers) and validation
scores. The training matrix, which EigenPro reads one batch of rows at a time,
lives in :mod:`eigenpro.training_matrix`.
"""

from __future__ import annotations

from solvers.backend import fits_storage, get_namespace_and_device, itemsize, rows_per_block
from solvers.linalg import blocked_matmul

__all__ = ["KernelOperator"]


class KernelOperator:
    """``K = k(X, Z)``, evaluated block by block within a memory budget.

    Parameters
    ----------
    kernel : eigenpro.kernels.Kernel
    X : array of shape (n_rows, d)
        Row points.
    Z : array of shape (n_cols, d)
        Column points (the centers).
    memory_budget : int
        Bytes for kernel blocks (and the stored matrix).
    precompute : bool or "auto", default="auto"
        Store the whole matrix, computed once, so that repeated products (a
        validation score after every epoch, say) cost O(n_rows n_cols) each.
        ``"auto"`` stores it when it takes at most 90 % of ``memory_budget``;
        True raises ``MemoryError`` if it does not fit.

    Attributes
    ----------
    matrix : array of shape (n_rows, n_cols) or None
        The stored kernel matrix, when precomputed.
    block_rows : int
        Rows per block of the blocked products.
    """

    def __init__(self, kernel, X, Z, *, memory_budget, precompute="auto"):
        self.kernel = kernel
        self.X, self.Z = X, Z
        self.xp, self.device = get_namespace_and_device(X)
        self.shape = (X.shape[0], Z.shape[0])
        self._z_state = kernel.prepare(Z)
        bytes_per_item = itemsize(self.xp, X.dtype)
        matrix_bytes = self.shape[0] * self.shape[1] * bytes_per_item
        store = fits_storage(
            matrix_bytes,
            memory_budget,
            precompute,
            f"the {self.shape[0]} x {self.shape[1]} kernel matrix",
        )
        # A block in flight plus up to two temporaries of its size (kernel profiles).
        self.block_rows = rows_per_block(self.shape[1], bytes_per_item, memory_budget, n_buffers=3)
        self.matrix = self._rows(0, self.shape[0]) if store else None

    @property
    def precomputed(self):
        """Whether the whole matrix is stored."""
        return self.matrix is not None

    def _rows(self, start, stop):
        return self.kernel.block(self.X[start:stop, :], self.Z, z_state=self._z_state)

    def matmul(self, V):
        """``K @ V`` for ``V`` of shape (n_cols,) or (n_cols, k), in blocks."""
        if self.matrix is not None:
            return self.matrix @ V
        return blocked_matmul(self._rows, self.shape[0], V, self.block_rows)
