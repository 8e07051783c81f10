# SPDX-License-Identifier: BSD-3-Clause
"""The training kernel matrix ``K = k(X, X)`` as EigenPro reads it: one batch of rows at a time.

EigenPro visits the training points in batches. Here the points are permuted
once at random and a batch is a contiguous block of ``m`` rows, so every
batch needs ``K[batch, :] @ coef`` and the batch's columns on the Nyström
subsample (the first ``s`` permuted points). Two implementations give the
same numbers:

- :class:`PackedTrainingMatrix` stores the matrix once, as its upper
  triangle in block rows ``U_r = K[block r, start_r:]``: half the memory and
  half the GEMM work of the full matrix, no mirrored copy. The part of row
  block ``r`` left of its diagonal block is read from earlier block rows as
  the transposed slab ``U_c[:, block r]``, so every read is contiguous.
- :class:`StreamedTrainingMatrix` recomputes ``K(X_batch, X)`` for every
  batch, in row chunks that fit the memory budget.

Both follow :class:`eigenpro.operator.KernelOperator`'s vocabulary:
``batch_matmul(r, coef)`` is ``K[batch r, :] @ coef`` (with the batch's
subsample columns), ``leading_matmul(stop, coef)`` is ``K[:stop, :] @ coef``.
(The names before the redesign, ``PackedKernel``, ``StreamedKernel``,
``make_training_kernel``, ``row_block`` and ``rows_matmul``, remain as aliases;
:mod:`eigenpro.training_kernel` re-exports them.)
"""

from __future__ import annotations

from typing import Any, NamedTuple

from solvers.backend import fits_storage, get_namespace_and_device, itemsize, rows_per_block

__all__ = [
    "BatchProduct",
    "PackedTrainingMatrix",
    "StreamedTrainingMatrix",
    "TrainingMatrix",
    "make_training_matrix",
    "packed_bytes",
]


class BatchProduct(NamedTuple):
    """What one batch needs from the training matrix."""

    #: ``K[batch, :] @ coef``, shape (batch size, n_outputs).
    outputs: Any
    #: ``K[batch, :s]``, the batch's columns on the Nyström subsample.
    subsample_columns: Any


def _blocks(n, block_size):
    return [(a, min(a + block_size, n)) for a in range(0, n, block_size)]


def packed_bytes(n, block_size, n_subsample, bytes_per_item):
    """Bytes :class:`PackedTrainingMatrix` needs: upper block triangle plus ``K[:, :s]``."""
    upper = sum((b - a) * (n - a) for a, b in _blocks(n, block_size))
    return (upper + n * n_subsample) * bytes_per_item


class TrainingMatrix:
    """Base class: ``k(X, X)`` split into batches of contiguous rows.

    Attributes
    ----------
    blocks : list of (start, stop)
        The row range of every batch; the last one may be shorter.
    nbytes : int
        Bytes the stored matrix occupies (0 when streamed).
    """

    nbytes = 0

    def __init__(self, kernel, X, block_size, n_subsample):
        self.kernel = kernel
        self.X = X
        self.xp, self.device = get_namespace_and_device(X)
        self.n = X.shape[0]
        self.blocks = _blocks(self.n, int(block_size))
        self.n_subsample = int(n_subsample)
        self.state = kernel.prepare(X)

    def _state(self, rows):
        return None if self.state is None else self.state[rows]

    def batch_matmul(self, r, coef):
        """``K[batch r, :] @ coef`` and ``K[batch r, :s]``, as a :class:`BatchProduct`."""
        raise NotImplementedError

    def leading_matmul(self, stop, coef):
        """``K[:stop', :] @ coef`` over the batches covering rows ``0:stop`` (stop' >= stop)."""
        parts = []
        for r, (a, _) in enumerate(self.blocks):
            if a >= stop:
                break
            parts.append(self.batch_matmul(r, coef).outputs)
        return self.xp.concat(parts, axis=0)

    # The names before the redesign.
    def row_block(self, r, coef):
        """Alias of :meth:`batch_matmul`."""
        return self.batch_matmul(r, coef)

    def rows_matmul(self, stop, coef):
        """Alias of :meth:`leading_matmul`."""
        return self.leading_matmul(stop, coef)


class PackedTrainingMatrix(TrainingMatrix):
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

    def batch_matmul(self, r, coef):
        a, b = self.blocks[r]
        G = self.upper[r] @ coef[a:, :]
        for c in range(r):
            ca, cb = self.blocks[c]
            G += self.upper[c][:, a - ca : b - ca].T @ coef[ca:cb, :]
        return BatchProduct(G, self.subsample_cols[a:b, :])


class StreamedTrainingMatrix(TrainingMatrix):
    """``K(X_batch, X)`` recomputed for every batch, in chunks within ``memory_budget``."""

    def __init__(self, kernel, X, block_size, n_subsample, memory_budget):
        super().__init__(kernel, X, block_size, n_subsample)
        # A chunk of rows plus up to two temporaries of its size (kernel profiles).
        self.chunk_rows = rows_per_block(
            self.n, itemsize(self.xp, X.dtype), memory_budget, n_buffers=3
        )

    def batch_matmul(self, r, coef):
        xp, X, s = self.xp, self.X, self.n_subsample
        a, b = self.blocks[r]
        G = xp.empty((b - a, coef.shape[1]), dtype=coef.dtype, device=self.device)
        KS = xp.empty((b - a, s), dtype=X.dtype, device=self.device)
        # one chunk buffer, refilled: a new chunk never coexists with the previous one
        rows = min(self.chunk_rows, b - a)
        buffer = xp.empty((rows, self.n), dtype=X.dtype, device=self.device)
        for start in range(a, b, rows):
            stop = min(start + rows, b)
            K = self.kernel.block(
                X[start:stop, :],
                X,
                x_state=self._state(slice(start, stop)),
                z_state=self.state,
                out=buffer[: stop - start, :],
            )
            G[start - a : stop - a, :] = K @ coef
            KS[start - a : stop - a, :] = K[:, :s]
        return BatchProduct(G, KS)


def make_training_matrix(kernel, X, *, block_size, n_subsample, memory_budget, precompute="auto"):
    """:class:`PackedTrainingMatrix` when it fits 90 % of the budget (or ``precompute=True``).

    Raises
    ------
    MemoryError
        ``precompute=True`` and the packed matrix does not fit the budget.
    """
    xp, _ = get_namespace_and_device(X)
    need = packed_bytes(X.shape[0], block_size, n_subsample, itemsize(xp, X.dtype))
    what = "the training kernel matrix (its upper triangle)"
    if fits_storage(need, memory_budget, precompute, what):
        return PackedTrainingMatrix(kernel, X, block_size, n_subsample)
    return StreamedTrainingMatrix(kernel, X, block_size, n_subsample, memory_budget)
