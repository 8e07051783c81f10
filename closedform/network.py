# SPDX-License-Identifier: BSD-3-Clause
"""The layerwise closed-form network: forward ridge layers, backward targets, a sweep.

Plain functions over arrays of any Array-API library; the estimators in
:mod:`closedform.manifold_net` hold the state. Notation (row-major): ``H_0 =
X``, ``H_l = sigma(H_{l-1} W_l + 1 b_l^T)``, and the decision layer maps
``H_{L-1}`` to the outputs.

One *backward sweep* (Zhang, Jiao, Zhang, Li, TPAMI 2023; the project's notes
section 3.5-3.7) visits the hidden layers top-down: it pulls the target of the
layer above back to a target output ``H*_l`` (:mod:`closedform.backward`),
squashes it into the activation's range and inverts the activation,
``Z*_l = sigma^-1(clip(H*_l))``, and refits ``(W_l, b_l)`` by ridge regression
of ``Z*_l`` on the current ``H_{l-1}``. The first layer's Gram matrix does not
change during a fit, so its Cholesky factor is computed once (:class:`RidgeLayerFactor`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from closedform.backward import backward_target
from closedform.svm_head import relative_scale
from solvers.backend import (
    get_namespace_and_device,
    map_row_chunks_,
    take_rows,
    to_namespace,
    to_numpy,
)
from solvers.distributed import Communicator
from solvers.linalg import cho_solve, cholesky
from solvers.ridge import GramStatistics

__all__ = [
    "INITS",
    "RidgeLayerFactor",
    "SweepSettings",
    "backward_sweep",
    "forward",
    "init_network",
]


INITS = ("samples", "gaussian")

#: ``init="samples"`` computes the rows' spread ``E||h||^2 - ||m||^2`` in one
#: pass; below this fraction of ``E||h||^2`` the difference may be rounding, and
#: the mean and the spread are recomputed from the centred rows in float64.
SUSPECT_SPREAD = 1e-3
#: ... and a float64 spread below this fraction of ``E||h||^2`` (a root-mean-square
#: distance of 1e-10 of the norm: the float64 mean's own rounding) means equal rows.
FLAT_SPREAD = 1e-20


def init_network(rng, X, sizes, activation, *, init, init_scale, weights=None, comm=None):
    """Draw the hidden layers and return them with their outputs on ``X``.

    - ``"gaussian"`` (hpelm's rule): ``W_l ~ N(0, (s / sqrt(d_{l-1}))^2)``.
    - ``"samples"``: unit ``j`` points at a random training row ``x_j`` of the
      layer's input, ``w_j = s (x_j - m) / (||x_j - m|| r)`` with ``m`` the
      input mean and ``r`` the root-mean-square of ``||x_i - m||``, so that
      ``w_j . (x - m)`` is ``s`` times the cosine between ``x - m`` and ``x_j
      - m`` at a typical norm (scale-free). Units that look like the data
      beat random directions at equal width (on MNIST 98.0 % against 96.8 %
      with 2000 units; the idea of data-drawn hidden weights is Zhu et al.,
      "Constrained extreme learning machines", 2015).

    Biases are ``N(0, 1)`` (after the centring, for ``"samples"``). Random
    numbers come from a NumPy generator in float64, so every array library
    gets the same network from the same ``random_state``.

    Parameters
    ----------
    rng : numpy.random.RandomState
    X : array of shape (n, d_0)
    sizes : sequence of int
        Hidden widths.
    activation : closedform.activations.Activation
    init : {"samples", "gaussian"}
    init_scale : float
    weights : array of shape (n,), default=None
        Sample weights summing to one: ``"samples"`` draws rows with these
        probabilities and weighs the mean and the typical distance by them.
    comm : solvers.distributed.Communicator, default=None
        The rows of ``X`` (and ``weights``, summing to one over all ranks)
        are spread over its ranks: ``"samples"`` draws indices into their
        concatenation (gathering the weights, ``n`` floats, to draw by them),
        gathers the drawn rows and sums the means and spreads over the
        ranks, so every rank gets the network of one process on the
        concatenation.

    Returns
    -------
    layers : list of (W, b)
        In the namespace and dtype of ``X``.
    hidden : list of arrays
        ``[H_1, ..., H_{L-1}]``.
    """
    xp, device = get_namespace_and_device(X)
    comm = Communicator() if comm is None else comm
    dtype = X.dtype
    layers, hidden = [], []
    H = X
    counts = None
    if init == "samples":
        counts = comm.row_counts(X.shape[0], "Counting the rows to draw units from")
    for d_out in sizes:
        d_in = H.shape[1]
        n = None if counts is None else sum(counts)
        if init == "gaussian":
            W = rng.standard_normal((d_in, d_out)) * (init_scale / np.sqrt(d_in))
            W = xp.astype(to_namespace(W, xp, device), xp.float64)
            shift = xp.zeros((d_in,), dtype=xp.float64, device=device)
        else:
            if weights is None:
                rows = rng.choice(n, size=d_out, replace=d_out > n)
                w = xp.full((H.shape[0],), 1.0 / n, dtype=xp.float64, device=device)
            else:
                prob = to_numpy(comm.all_gather_rows(weights, "Gathering the sample weights"))
                prob = prob.astype(np.float64)
                prob = prob / prob.sum()
                rows = rng.choice(n, size=d_out, replace=d_out > np.count_nonzero(prob), p=prob)
                w = xp.astype(weights, xp.float64)
            shift = xp.astype(w, H.dtype) @ H
            shift = comm.all_reduce_sum(xp.astype(shift, xp.float64), "Summing the inputs' mean")
            drawn = _drawn_rows(H, rows, counts, comm)
            D = xp.astype(drawn, xp.float64) - shift
            # root-mean-square distance to the mean: sqrt(E||h||^2 - ||m||^2)
            sq = xp.astype(xp.sum(H * H, axis=1), xp.float64)
            mean_sq = comm.all_reduce_sum(float(w @ sq), "Summing the inputs' squared norms")
            spread = mean_sq - float(xp.sum(shift * shift))
            if spread <= SUSPECT_SPREAD * mean_sq:
                # the difference cancels: redo the mean and the spread in float64
                shift, spread = _centred_spread(H, w, comm=comm)
                D = xp.astype(drawn, xp.float64) - shift
            if not spread > FLAT_SPREAD * mean_sq:
                # equal rows: their differences carry no direction, the units are flat
                W = xp.zeros((d_in, d_out), dtype=xp.float64, device=device)
            else:
                norms = xp.sqrt(xp.sum(D * D, axis=1))
                norms = xp.where(norms > 0, norms, 1.0)
                W = (init_scale / spread**0.5) * (D / norms[:, None]).T
        b = to_namespace(rng.standard_normal(d_out), xp, device) - shift @ W
        layer = (xp.astype(W, dtype), xp.astype(b, dtype))
        layers.append(layer)
        H = forward(H, [layer], activation)[0]
        hidden.append(H)
    return layers, hidden


def _drawn_rows(H, rows, counts, comm):
    """The rows of ``H`` at the indices ``rows`` into the concatenation of every rank's rows.

    Each rank takes the drawn rows it holds; one gather puts them in rank
    order, and the draw order is restored on the host.
    """
    xp, device = get_namespace_and_device(H)
    if not comm.distributed:
        return take_rows(xp, H, to_namespace(rows, xp, device))
    starts = np.cumsum([0, *counts])
    owner = np.searchsorted(starts, rows, side="right") - 1
    mine = np.flatnonzero(owner == comm.rank)
    local = take_rows(xp, H, to_namespace(rows[mine] - starts[comm.rank], xp, device))
    gathered = comm.all_gather_rows(local, "Gathering the rows the units are drawn from")
    order = np.argsort(owner, kind="stable")  # the gathered rows' draw positions
    place = np.empty_like(order)
    place[order] = np.arange(order.shape[0])
    return take_rows(xp, gathered, to_namespace(place, xp, device))


def _centred_spread(H, weights, block_rows=4096, comm=None):
    """The weighted mean (float64) of the rows of ``H`` and ``sum_i w_i ||h_i - m||^2``.

    Two blocked passes in float64: exact for equal rows (spread 0), where the
    one-pass ``E||h||^2 - ||m||^2`` in the features' precision is rounding.
    """
    xp, _ = get_namespace_and_device(H)
    comm = Communicator() if comm is None else comm
    n = H.shape[0]
    mean = 0.0
    for a in range(0, n, block_rows):
        mean = mean + weights[a : a + block_rows] @ xp.astype(H[a : a + block_rows], xp.float64)
    mean = comm.all_reduce_sum(mean, "Summing the inputs' mean")
    spread = 0.0
    for a in range(0, n, block_rows):
        C = xp.astype(H[a : a + block_rows], xp.float64) - mean
        spread += float(weights[a : a + block_rows] @ xp.sum(C * C, axis=1))
    return mean, comm.all_reduce_sum(spread, "Summing the inputs' spread")


def forward(X, layers, activation):
    """Outputs of every hidden layer: ``[H_1, ..., H_{L-1}]`` (``H_0 = X`` not included)."""
    outputs = []
    H = X
    for W, b in layers:
        Z = H @ W
        Z += b
        H = activation.forward_(Z)
        outputs.append(H)
    return outputs


def pull_back(activation, H_star, eps):
    """``sigma^-1(squash(H*))``: the pre-activation target (in place where possible)."""
    if isinstance(H_star, np.ndarray):

        def chunk_(U, start, stop):
            U[...] = activation.inverse(activation.squash(U, eps))

        return map_row_chunks_(chunk_, H_star)
    return activation.inverse(activation.squash(H_star, eps))


class RidgeLayerFactor:
    """Weighted mean and Cholesky factor of ``cov(H) + gamma I`` for ridge fits on ``H``.

    ``gamma = alpha * trace(cov(H)) / d`` (relative). :meth:`solve` then fits
    ``(W, b) = argmin sum_i w_i ||W^T h_i + b - t_i||^2 / sum w + gamma ||W||^2``
    for any targets ``T`` at the cost of one product ``(H - h)^T (w T)``.

    Parameters
    ----------
    H : array of shape (n, d)
    weights : array of shape (n,) or None
        Normalised sample weights (summing to one), uniform when None.
    alpha : float
    block_rows : int
    comm : solvers.distributed.Communicator, default=None
        The rows (and weights, summing to one over all ranks) are spread over
        its ranks: the statistics and every solve's cross-moments are summed
        over them.
    """

    def __init__(self, H, weights, alpha, block_rows, comm=None):
        xp, device = get_namespace_and_device(H)
        self.comm = comm = Communicator() if comm is None else comm
        self.n_rows = comm.all_reduce_sum(H.shape[0], "Counting the layer's rows")
        stats = GramStatistics().update(H, sample_weight=weights, block_rows=block_rows)
        stats = stats.all_reduce(comm)
        cov = stats.covariance()
        self.gamma = alpha * relative_scale(cov)
        self.mean = stats.mean
        eye = xp.eye(cov.shape[0], dtype=xp.float64, device=device)
        self.factor = cholesky(cov + self.gamma * eye)
        self.weights = weights
        self.block_rows = block_rows

    def solve(self, H, T):
        """Ridge coefficients ``W`` (d, k) and intercepts ``b`` (k,) for targets ``T``, float64."""
        xp, device = get_namespace_and_device(H)
        n, n_all = H.shape[0], self.n_rows
        f64 = xp.float64
        shift = xp.astype(self.mean, H.dtype)
        C = xp.zeros((H.shape[1], T.shape[1]), dtype=f64, device=device)
        t_mean = xp.zeros((T.shape[1],), dtype=f64, device=device)
        for start in range(0, n, self.block_rows):
            stop = min(start + self.block_rows, n)
            Tb = T[start:stop, :]
            if self.weights is None:
                Tw = Tb
                t_mean = t_mean + xp.sum(Tb, axis=0, dtype=f64) / n_all
            else:
                w = xp.astype(self.weights[start:stop], Tb.dtype)
                Tw = Tb * w[:, None]
                t_mean = t_mean + xp.sum(Tw, axis=0, dtype=f64)
            # sum_i w_i (h_i - h) t_i^T: centring one side suffices
            C = C + xp.astype((H[start:stop, :] - shift).T @ Tw, f64)
        if self.weights is None:
            C = C / n_all
        if self.comm.distributed:
            both = self.comm.all_reduce_sum(
                xp.concat([xp.reshape(C, (-1,)), t_mean]), "Summing the layer's cross-moments"
            )
            C, t_mean = xp.reshape(both[: C.shape[0] * C.shape[1]], C.shape), both[-T.shape[1] :]
        W = cho_solve(self.factor, C)
        return W, t_mean - self.mean @ W


@dataclass(frozen=True)
class SweepSettings:
    """What a backward sweep needs besides the arrays; built once per fit.

    Attributes
    ----------
    activation : closedform.activations.Activation
    backward : {"proximal", "pinv", "adjoint"}
        How targets are pulled back through a layer (:func:`closedform.backward.backward_target`).
    mu : float
        Relative proximal weight (``backward="proximal"``).
    squash_eps : float
        How far inside the activation's range targets are clipped before inversion.
    alpha_hidden : float
        Relative ridge penalty of the hidden layers' fits.
    block_rows : int
        Rows per block of the Gram and cross-moment accumulations.
    """

    activation: object
    backward: str
    mu: float
    squash_eps: float
    alpha_hidden: float
    block_rows: int


def backward_sweep(
    X,
    hidden,
    layers,
    head_W,
    head_b,
    targets,
    settings,
    *,
    weights=None,
    first_factor=None,
    comm=None,
):
    """One top-down sweep; returns the new layers and the first layer's (cached) factor.

    Parameters
    ----------
    X : array of shape (n, d_0)
    hidden : list of arrays
        ``[H_1, ..., H_{L-1}]`` of the current layers.
    layers : list of (W, b)
    head_W, head_b : arrays
        The decision layer (float64).
    targets : array of shape (n, c)
        The decision layer's targets (the retargeted codes).
    settings : SweepSettings
    weights : array of shape (n,), default=None
        Normalised sample weights for the hidden ridge fits (uniform when None).
    first_factor : RidgeLayerFactor, default=None
        The first layer's factor from an earlier sweep of the same fit.
    comm : solvers.distributed.Communicator, default=None
        The rows are spread over its ranks (:class:`RidgeLayerFactor`); the
        backward targets are per row and need no communication.

    Returns
    -------
    new_layers : list of (W, b)
    first_factor : RidgeLayerFactor
    """
    xp, _ = get_namespace_and_device(X)
    dtype = X.dtype
    new_layers = list(layers)
    T, W_up, b_up = targets, head_W, head_b
    for k in range(len(layers) - 1, -1, -1):
        H_star = backward_target(settings.backward, T, W_up, b_up, hidden[k], mu=settings.mu)
        Z_star = pull_back(settings.activation, H_star, settings.squash_eps)
        del H_star
        below = X if k == 0 else hidden[k - 1]
        if k == 0 and first_factor is not None:
            factor = first_factor  # the inputs do not change during a fit
        else:
            factor = RidgeLayerFactor(
                below, weights, settings.alpha_hidden, settings.block_rows, comm=comm
            )
        if k == 0:
            first_factor = factor
        W, b = factor.solve(below, Z_star)
        new_layers[k] = (xp.astype(W, dtype), xp.astype(b, dtype))
        T, W_up, b_up = Z_star, W, b
    return new_layers, first_factor
