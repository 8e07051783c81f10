# SPDX-License-Identifier: BSD-3-Clause
"""The kernel matrix ``K(X, Z)`` as an operator evaluated in memory-bounded blocks."""

from __future__ import annotations

import logging

import numpy as np

from solvers.backend import (
    get_namespace_and_device,
    itemsize,
    namespace_kind,
    rows_per_block,
    run_parallel,
    take_rows,
)
from solvers.linalg import blocked_matmul

__all__ = ["KernelOperator"]

logger = logging.getLogger("eigenpro")

#: Rows per GEMM when the full matrix is precomputed.
_PRECOMPUTE_BLOCK = 1024
#: Side of the tiles that mirror the upper triangle into the lower one.
_MIRROR_TILE = 128


class KernelOperator:
    """``K = k(X, Z)`` evaluated block by block, never more than the budget holds.

    Parameters
    ----------
    kernel : eigenpro.kernels.Kernel
    X : array of shape (n_rows, d)
        Row points.
    Z : array of shape (n_cols, d), default=None
        Column points (centers); ``X`` when None, which makes ``K`` symmetric.
    memory_budget : int
        Bytes this operator may use for kernel blocks (and the stored matrix).
    precompute : bool or "auto", default="auto"
        Store the whole ``n_rows x n_cols`` matrix, computed once. ``"auto"``
        stores it when it takes at most 90 % of ``memory_budget``; True
        raises if it does not fit. A stored matrix turns every later product
        from O(n_rows n_cols d) into O(n_rows n_cols) work.

    Attributes
    ----------
    matrix : array of shape (n_rows, n_cols) or None
        The stored kernel matrix, when precomputed.
    block_rows : int
        Rows per block of the blocked products.
    """

    def __init__(self, kernel, X, Z=None, *, memory_budget, precompute="auto"):
        self.kernel = kernel
        self.X = X
        self.symmetric = Z is None
        self.Z = X if Z is None else Z
        self.xp, self.device = get_namespace_and_device(X)
        self.dtype = X.dtype
        self.itemsize = itemsize(self.xp, X.dtype)
        self.shape = (X.shape[0], self.Z.shape[0])
        self._z_state = kernel.prepare(self.Z)
        self._x_state = self._z_state if self.symmetric else None
        matrix_bytes = self.shape[0] * self.shape[1] * self.itemsize
        fits = matrix_bytes <= 0.9 * memory_budget
        if precompute is True and not fits:
            raise MemoryError(
                f"The {self.shape[0]} x {self.shape[1]} kernel matrix needs "
                f"{matrix_bytes / 2**30:.2f} GiB, more than 90% of the memory budget "
                f"({memory_budget / 2**30:.2f} GiB); raise memory_budget or set "
                "precompute_kernel='auto'."
            )
        self.matrix = None
        self._buffer = None
        work_budget = memory_budget
        if precompute is True or (precompute == "auto" and fits):
            self.matrix = self._compute_matrix()
            work_budget = max(memory_budget - matrix_bytes, 64 * 2**20)
        # Blocks of rows for products: one block plus its copy in flight.
        self.block_rows = rows_per_block(self.shape[1], self.itemsize, work_budget, n_buffers=2)
        logger.debug(
            "KernelOperator %s: stored=%s, block_rows=%d",
            self.shape,
            self.matrix is not None,
            self.block_rows,
        )

    @property
    def precomputed(self):
        """Whether the whole matrix is stored."""
        return self.matrix is not None

    # ------------------------------------------------------------------ #
    def evaluate(self, X_rows, x_state=None, out=None):
        """``k(X_rows, Z)``, freshly computed."""
        return self.kernel.block(X_rows, self.Z, x_state=x_state, z_state=self._z_state, out=out)

    def _compute_matrix(self):
        xp, n_rows, n_cols = self.xp, self.shape[0], self.shape[1]
        K = xp.empty((n_rows, n_cols), dtype=self.dtype, device=self.device)
        step = _PRECOMPUTE_BLOCK
        if namespace_kind(xp) == "numpy":
            # Fault the pages in sequentially first: the mirrored (transposed)
            # writes would otherwise touch fresh pages in a scattered order,
            # which costs the kernel far more (measured at n = 60000: 17 s of
            # page faults instead of 2.6 s for a sequential fill).
            for start in range(0, n_rows, 4 * step):
                K[start : start + 4 * step].fill(0.0)
        for start in range(0, n_rows, step):
            stop = min(start + step, n_rows)
            x_state = None if self._x_state is None else self._x_state[start:stop]
            if self.symmetric:
                # Upper block row only (half the GEMM work), mirrored below.
                self.kernel.block(
                    self.X[start:stop, :],
                    self.Z[start:, :],
                    x_state=x_state,
                    z_state=None if self._z_state is None else self._z_state[start:],
                    out=K[start:stop, start:],
                )
                self._mirror(K, start, stop)
            else:
                self.evaluate(self.X[start:stop, :], x_state=x_state, out=K[start:stop, :])
        return K

    def _mirror(self, K, start, stop):
        n = K.shape[0]
        if stop >= n:
            return
        if namespace_kind(self.xp) != "numpy":
            K[stop:, start:stop] = K[start:stop, stop:].T
            return
        tile = _MIRROR_TILE

        def copy(j):
            return lambda: K.__setitem__(
                (slice(j, j + tile), slice(start, stop)), K[start:stop, j : j + tile].T
            )

        run_parallel([copy(j) for j in range(stop, n, tile)])

    # ------------------------------------------------------------------ #
    def row_blocks(self, idx):
        """Yield ``(start, stop, K[idx[start:stop], :])`` over blocks of ``idx``.

        ``idx`` is an integer array of row indices (sorted indices read the
        stored matrix fastest).
        """
        m = idx.shape[0]
        for start in range(0, m, self.block_rows):
            stop = min(start + self.block_rows, m)
            rows = idx[start:stop]
            if self.matrix is not None:
                yield start, stop, self._gather(rows)
            else:
                x_state = None if self._x_state is None else self._x_state[rows]
                yield start, stop, self.evaluate(take_rows(self.xp, self.X, rows), x_state=x_state)

    def _gather(self, rows):
        """Rows of the stored matrix, copied into a reused buffer where possible."""
        count = rows.shape[0]
        kind = namespace_kind(self.xp)
        if kind not in ("numpy", "torch"):
            return take_rows(self.xp, self.matrix, rows)
        if self._buffer is None or self._buffer.shape[0] < count:
            self._buffer = self.xp.empty(
                (min(self.block_rows, self.shape[0]), self.shape[1]),
                dtype=self.dtype,
                device=self.device,
            )
        out = self._buffer[:count]
        if kind == "numpy":
            # mode="clip" skips the bounds-check copy of ``out`` ("raise" makes
            # one): twice the speed of fancy indexing and no fresh allocation.
            return np.take(self.matrix, rows, axis=0, out=out, mode="clip")
        import torch

        return torch.index_select(self.matrix, 0, rows, out=out)

    def matmul(self, V, idx=None):
        """``K[idx] @ V`` (all rows when ``idx`` is None), in blocks."""
        xp = self.xp
        if idx is None:
            if self.matrix is not None:
                return self.matrix @ V
            return blocked_matmul(
                lambda a, b: self.evaluate(
                    self.X[a:b, :],
                    x_state=None if self._x_state is None else self._x_state[a:b],
                ),
                self.shape[0],
                V,
                self.block_rows,
            )
        out = xp.empty((idx.shape[0], V.shape[1]), dtype=V.dtype, device=self.device)
        for start, stop, block in self.row_blocks(idx):
            out[start:stop, :] = block @ V
        return out
