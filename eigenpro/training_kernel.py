# SPDX-License-Identifier: BSD-3-Clause
"""The training kernel matrix as EigenPro reads it: one block of rows per batch.

EigenPro visits the training points in batches. Here the points are permuted
once at random and a batch is a contiguous block of ``m`` rows, so every
batch needs ``K[block, :] @ coef`` and the block's columns on the Nyström
subsample (the first ``s`` permuted points). Two implementations give the
same numbers:

- :class:`PackedKernel` stores the matrix once, as its upper triangle in
  block rows ``U_r = K[block r, start_r:]``: half the memory and half the
  GEMM work of the full matrix, no mirrored copy. The part of row block ``r``
  left of its diagonal block is read from earlier block rows as the
  transposed slab ``U_c[:, block r]``, so every read is contiguous.
- :class:`StreamedKernel` recomputes ``K(X_block, X)`` for every batch, in
  row chunks that fit the memory budget.
"""

from __future__ import annotations

from solvers.backend import fits_storage, get_namespace_and_device, itemsize, rows_per_block

__all__ = ["PackedKernel", "StreamedKernel", "make_training_kernel", "packed_bytes"]


def _blocks(n, block_size):
    return [(a, min(a + block_size, n)) for a in range(0, n, block_size)]


def packed_bytes(n, block_size, n_subsample, bytes_per_item):
    """Bytes :class:`PackedKernel` needs: upper block triangle plus ``K[:, :s]``."""
    upper = sum((b - a) * (n - a) for a, b in _blocks(n, block_size))
    return (upper + n * n_subsample) * bytes_per_item


class _TrainingKernel:
    def __init__(self, kernel, X, block_size, n_subsample):
        self.kernel = kernel
        self.X = X
        self.xp, self.device = get_namespace_and_device(X)
        self.n = X.shape[0]
        self.blocks = _blocks(self.n, int(block_size))
        self.n_subsample = int(n_subsample)
        self.state = kernel.prepare(X)

    #: Bytes the stored matrix occupies (0 when streamed).
    nbytes = 0

    def _state(self, rows):
        return None if self.state is None else self.state[rows]

    def row_block(self, r, coef):
        """``(K[block r, :] @ coef, K[block r, :s])`` for the r-th block."""
        raise NotImplementedError

    def rows_matmul(self, stop, coef):
        """``K[:stop', :] @ coef`` over the blocks covering rows ``0:stop`` (stop' >= stop)."""
        parts = []
        for r, (a, _) in enumerate(self.blocks):
            if a >= stop:
                break
            parts.append(self.row_block(r, coef)[0])
        return self.xp.concat(parts, axis=0)


class PackedKernel(_TrainingKernel):
    """Upper block triangle of ``K(X, X)``, computed once (see module docstring).

    Parameters
    ----------
    kernel : Kernel
    X : array of shape (n, d)
    block_size : int
        Rows per block (the batch size).
    n_subsample : int
        ``s``: ``K[:, :s]`` is stored too, for the preconditioner.
    """

    def __init__(self, kernel, X, block_size, n_subsample):
        super().__init__(kernel, X, block_size, n_subsample)
        xp, X, s = self.xp, self.X, self.n_subsample
        self.upper = []
        for a, b in self.blocks:
            out = xp.empty((b - a, self.n - a), dtype=X.dtype, device=self.device)
            kernel.block(
                X[a:b, :],
                X[a:, :],
                x_state=self._state(slice(a, b)),
                z_state=self._state(slice(a, None)),
                out=out,
            )
            self.upper.append(out)
        sub = xp.empty((self.n, s), dtype=X.dtype, device=self.device)
        self.subsample_cols = kernel.block(
            X, X[:s, :], x_state=self.state, z_state=self._state(slice(0, s)), out=sub
        )
        self.nbytes = packed_bytes(self.n, block_size, s, itemsize(xp, X.dtype))

    def row_block(self, r, coef):
        a, b = self.blocks[r]
        G = self.upper[r] @ coef[a:, :]
        for c in range(r):
            ca, cb = self.blocks[c]
            G += self.upper[c][:, a - ca : b - ca].T @ coef[ca:cb, :]
        return G, self.subsample_cols[a:b, :]


class StreamedKernel(_TrainingKernel):
    """``K(X_block, X)`` recomputed for every batch, in chunks within ``memory_budget``."""

    def __init__(self, kernel, X, block_size, n_subsample, memory_budget):
        super().__init__(kernel, X, block_size, n_subsample)
        # A chunk of rows plus up to two temporaries of its size (kernel profiles).
        self.chunk_rows = rows_per_block(
            self.n, itemsize(self.xp, X.dtype), memory_budget, n_buffers=3
        )

    def row_block(self, r, coef):
        xp, X, s = self.xp, self.X, self.n_subsample
        a, b = self.blocks[r]
        G = xp.empty((b - a, coef.shape[1]), dtype=coef.dtype, device=self.device)
        KS = xp.empty((b - a, s), dtype=X.dtype, device=self.device)
        for start in range(a, b, self.chunk_rows):
            stop = min(start + self.chunk_rows, b)
            K = self.kernel.block(
                X[start:stop, :], X, x_state=self._state(slice(start, stop)), z_state=self.state
            )
            G[start - a : stop - a, :] = K @ coef
            KS[start - a : stop - a, :] = K[:, :s]
        return G, KS


def make_training_kernel(kernel, X, *, block_size, n_subsample, memory_budget, precompute="auto"):
    """:class:`PackedKernel` when it fits 90 % of the budget (or ``precompute=True``).

    Raises
    ------
    MemoryError
        ``precompute=True`` and the packed matrix does not fit the budget.
    """
    xp, _ = get_namespace_and_device(X)
    need = packed_bytes(X.shape[0], block_size, n_subsample, itemsize(xp, X.dtype))
    what = "the training kernel matrix (its upper triangle)"
    if fits_storage(need, memory_budget, precompute, what):
        return PackedKernel(kernel, X, block_size, n_subsample)
    return StreamedKernel(kernel, X, block_size, n_subsample, memory_budget)
