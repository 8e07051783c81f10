# SPDX-License-Identifier: BSD-3-Clause
"""``partial_fit`` of the manifold networks: the decision layer from streamed statistics.

The hidden layers stay at their random draw (or at the layers ``fit``
found), and the decision layer is the one-pass fit to the codes (the
retargeting iterations need repeated passes): its sufficient statistics, the
mean, scatter and cross-moments of the last hidden layer's outputs
(:class:`solvers.ridge.GramStatistics`), are sums over samples, so streaming
batches through them and solving after each batch gives the model ``fit``
gives on all the batches at once (``max_iter=1``, ``head_max_iter=1``).
"""

from __future__ import annotations

import copy
from typing import NamedTuple

from sklearn.utils import check_random_state

from closedform.network import forward, init_network
from closedform.svm_head import check_head_width, pick_alpha, relative_scale, solve_head
from solvers.backend import get_namespace_and_device, resolve_memory_budget, rows_per_block
from solvers.linalg import cholesky
from solvers.ridge import GramStatistics

__all__ = ["StreamedHead", "solve_from_statistics"]

#: GPI iterations of a streamed ``head="gpi"`` solve (``stiefel_quadratic``'s default).
STREAM_GPI_MAX_ITER = 200


class StreamedHead(NamedTuple):
    """The decision layer solved from streamed statistics.

    ``W`` (p, c), ``b`` (c,) float64; ``objective``: ``J`` of the least-squares
    fit to the targets; ``alpha``: the relative penalty used.
    """

    W: object
    b: object
    objective: float
    alpha: float


def solve_from_statistics(stats, head, alpha, W_prev):
    """The one-pass decision layer (targets = codes) from streamed statistics.

    ``J = sum_i w_i ||W^T (h_i - h) - (t_i - t)||^2 / s + gamma ||W||^2``
    with ``s`` the weight sum and ``gamma = alpha * relative_scale(cov)``.

    Parameters
    ----------
    stats : solvers.ridge.GramStatistics
        Statistics of the features with the targets.
    head : {"stiefel", "gpi", "ridge"}
    alpha : float or "auto"
    W_prev : array of shape (p, c) or None
        The previous solution (GPI's warm start).

    Returns
    -------
    StreamedHead
    """
    xp, device = get_namespace_and_device(stats.mean)
    s = stats.weight_sum
    cov = stats.covariance()
    scale = relative_scale(cov)
    C = stats.cross / s
    if isinstance(alpha, str):
        alpha = pick_alpha(
            stats.scatter, stats.cross, stats.target_scatter, stats.n_samples, s, scale
        )
    gamma = alpha * scale
    G = cov + gamma * xp.eye(cov.shape[0], dtype=xp.float64, device=device)
    W = solve_head(head, cholesky(G), G, C, W_prev, STREAM_GPI_MAX_ITER)
    b = stats.target_mean - stats.mean @ W
    J = (
        float(xp.sum(W * (cov @ W)))
        - 2.0 * float(xp.sum(W * C))
        + float(xp.sum(stats.target_scatter)) / s
        + gamma * float(xp.sum(W * W))
    )
    return StreamedHead(W, b, J, alpha)


class _StreamingMixin:
    """``_partial_fit_head`` for :class:`closedform._base._BaseManifoldNet`."""

    def _partial_fit_head(self, X, Y, weights, sizes, comm):
        """Accumulate the last hidden layer's statistics and re-solve the decision layer.

        Returns the batch's last hidden outputs ``H`` and the new ``W``, ``b``.
        With ``comm`` spanning a process group, each rank streams its own
        rows into its own statistics and the solve uses their sum over the
        ranks (:meth:`solvers.ridge.GramStatistics.all_reduce`, ``p^2 + p c``
        floats per call); the first call draws the hidden layers from all
        ranks' first batches.
        """
        xp, device = get_namespace_and_device(X)
        settings = self._head_settings()
        fitted = hasattr(self, "coefs_")
        if not fitted:
            rng = check_random_state(self.random_state)
            check_head_width(settings.head, sizes[-1], Y.shape[1], "units in the last layer")
            normalised = None
            if weights is not None:
                total = comm.all_reduce_sum(xp.sum(weights), "Summing the sample weights")
                normalised = weights / total
            layers, _ = init_network(
                rng, X, sizes, self._activation, init=self.init, init_scale=self.init_scale,
                weights=normalised, comm=comm,
            )  # fmt: skip
        else:  # after fit: keep its hidden layers, stream the decision layer's statistics afresh
            layers = list(zip(self.coefs_[:-1], self.intercepts_[:-1], strict=True))
            if X.dtype != layers[0][0].dtype:
                X = xp.astype(X, layers[0][0].dtype)
        previous = getattr(self, "_stream", None)
        # a copy: the update adds into the statistics in place, and a partial_fit that fails
        # after it must leave the previous statistics as they were (one p x p copy, less
        # than the update's own product)
        stream = copy.deepcopy(previous) if previous is not None else GramStatistics()
        budget = resolve_memory_budget(self.memory_budget, xp, device)
        block = rows_per_block(max(sizes), 8, budget, n_buffers=3, min_rows=64, max_rows=8192)
        H = forward(X, layers, self._activation)[-1]
        stream.update(H, Y, weights, block_rows=block)
        total = stream.all_reduce(comm)  # this rank's statistics for one process
        if total.weight_sum <= 0.0:
            raise ValueError("partial_fit has seen no sample with positive weight yet.")
        W, b, J, alpha = solve_from_statistics(
            total, settings.head, settings.alpha, self.coefs_[-1] if fitted else None
        )
        self._stream = stream
        self.coefs_ = [Wl for Wl, _ in layers] + [W]
        self.intercepts_ = [bl for _, bl in layers] + [b]
        self.alpha_ = alpha
        self.n_iter_ = 1
        self.objective_curve_ = [J]
        return H, W, b
