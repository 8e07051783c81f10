# SPDX-License-Identifier: BSD-3-Clause
"""The adaptive squared-hinge SVM decision layer, in closed-form steps.

The decision layer of the manifold neural network (Zhang, Jiao, Zhang, Li,
"Manifold Neural Network With Non-Gradient Optimization", TPAMI 2023; the
equations as reconstructed from the authors' code in the project's notes).
For features ``H`` (n x p), one-vs-rest codes ``Y`` in {-1, +1} (n x c) and
sample weights ``a`` on the simplex it minimises, by alternating exact steps,

    J(W, b, Z) = sum_i a_i ||W^T h_i + b - z_i||^2 + gamma ||W||_F^2,
    z_i = y_i + y_i * m_i,  m_i >= 0,

- **Retargeting step** (epsilon-dragging, Xiang et al. TNNLS 2012): for fixed
  outputs ``f = W^T h + b`` the optimal slack is ``m = max(0, y f - 1)``, so
  ``Z = Y + Y * M`` and the residual becomes ``max(0, 1 - y f)^2``: ``J`` at
  the optimal ``Z`` is the one-vs-rest squared-hinge (L2-SVM) objective.
- **(W, b) step** for fixed targets, with ``G = sum_i a_i (h_i - h)(h_i - h)^T
  + gamma I`` and ``C = sum_i a_i (h_i - h)(z_i - z)^T`` (``h``, ``z`` the
  a-means), ``b = z - W^T h`` and, by ``head``:

  - ``"stiefel"`` (the paper): ``W^T G W = I``, the "flexible" Stiefel
    manifold in the data metric, solved exactly by a generalised Procrustes
    step ``W = L^-T polar(L^-1 C)`` (``G = L L^T``);
  - ``"gpi"``: the Euclidean Stiefel manifold ``W^T W = I`` by generalised
    power iteration (Nie, Zhang, Li 2017), warm-started, monotone;
  - ``"ridge"``: unconstrained, ``W = G^-1 C``; the alternation then
    converges to the L2-SVM optimum (a convex problem), slowly: with fixed
    weights this head runs the alternation's first step, then preconditioned
    conjugate gradients with exact line searches on the same objective
    (:mod:`closedform.squared_hinge`).

  With fixed weights ``G`` does not change: it is factored once and the
  factor serves every iteration.
- **Adaptive sample weights** (optional; Nie, Wang, Huang, KDD 2014 "adaptive
  neighbours"): ``a = argmin_{a in simplex} sum_i a_i l_i + lambda ||a||^2``
  with ``lambda`` set so that exactly ``k`` weights are positive:
  ``a_i = (l_(k+1) - l_i)_+ / sum_{j<=k} (l_(k+1) - l_(j))``, which
  down-weights (and beyond ``k`` drops) the samples with the largest loss.

``gamma`` is relative to the features' scale: ``alpha * trace(G_0) / p``
(the paper's absolute 0.3 on sigmoid features is a huge penalty).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from closedform.squared_hinge import HingeProblem, squared_hinge_cg
from solvers.backend import get_namespace_and_device, to_namespace, to_numpy
from solvers.distributed import Communicator
from solvers.linalg import (
    cho_solve,
    cholesky,
    generalized_procrustes,
    stiefel_quadratic,
    weighted_moments,
)
from solvers.ridge import ridge_gcv, ridge_loo

__all__ = [
    "AUTO_ALPHAS",
    "AUTO_MAX_ITER",
    "HEADS",
    "LOO_ROWS",
    "PRIMAL_MAX_FEATURES",
    "HeadFit",
    "HeadSettings",
    "check_head_width",
    "fit_svm_head",
    "loo_alpha",
    "pick_alpha",
    "relative_scale",
    "simplex_weights",
    "solve_head",
    "validation_iterations",
]

HEADS = ("stiefel", "gpi", "ridge")

#: the communicator of one process (every collective is the identity): the private steps' default
_SINGLE = Communicator()

#: Relative penalties ``alpha="auto"`` chooses from: 1e-8 ... 10, half a decade apart.
AUTO_ALPHAS = tuple(10.0 ** (e / 2) for e in range(-16, 3))

#: ``alpha="auto"`` scores at most this many rows' leave-one-out residuals
#: (:func:`loo_alpha`).
LOO_ROWS = 2000

#: ``max_iter="auto"`` holds out this fraction of the rows to score the
#: iteration counts 1 ... :data:`AUTO_MAX_ITER` (:func:`validation_iterations`).
VALIDATION_FRACTION = 0.1
AUTO_MAX_ITER = 10

#: Up to this many features ``alpha="auto"`` decomposes the ``p x p`` covariance
#: (exact leave-one-out residuals; 3 s for 3000 features on two CPU cores).
PRIMAL_MAX_FEATURES = 4096


class HeadSettings(NamedTuple):
    """The decision layer's hyperparameters (:func:`fit_svm_head`), fixed for a fit.

    ``head``: the (W, b) step, one of :data:`HEADS`; ``alpha``: the relative
    ridge penalty, or ``"auto"``; ``max_iter``: iterations (retargeting
    alternations; for ``head="ridge"`` with the squared hinge, the
    least-squares fit then conjugate-gradient iterations), or ``"auto"``
    (:func:`validation_iterations` for that head, :data:`AUTO_MAX_ITER` otherwise);
    ``tol``: stop when ``J`` decreases by less than ``tol * J``;
    ``adaptive_weights``, ``keep_ratio``: the simplex weights keeping a fraction
    ``rho`` of the samples; ``gpi_max_iter``: GPI iterations per step for
    ``head="gpi"``; ``loss``: ``"squared_hinge"`` retargets the codes,
    ``"squared"`` keeps ``Z = Y`` (ridge regression onto real targets).
    """

    head: str = "stiefel"
    alpha: float | str = 1e-5
    max_iter: int | str = 10
    tol: float = 1e-4
    adaptive_weights: bool = False
    keep_ratio: float = 1.0
    gpi_max_iter: int = 100
    loss: str = "squared_hinge"


class HeadFit(NamedTuple):
    """The result of :func:`fit_svm_head`.

    ``W`` (p, c) and ``b`` (c,) in float64; ``weights`` (n,): the final sample
    weights; ``outputs`` (n, c): ``H W + b`` of the last iteration, float64;
    ``targets`` (n, c): the retargeted ``Z`` after the last iteration;
    ``objective_curve``: ``J`` after each retargeting (plus ``lambda ||a||^2``
    with adaptive weights); ``n_iter``; ``gamma``: the absolute penalty;
    ``alpha``: the relative penalty used (the chosen one for ``"auto"``).

    ``fit["W"]`` and ``fit.keys()`` still work, as on the dict this replaces.
    """

    W: object
    b: object
    weights: object
    outputs: object
    targets: object
    objective_curve: list
    n_iter: int
    gamma: float
    alpha: float

    def __getitem__(self, key):
        return getattr(self, key) if isinstance(key, str) else tuple.__getitem__(self, key)

    def keys(self):
        """The field names, as the dict this replaces listed them."""
        return self._fields


def relative_scale(cov):
    """``trace(cov) / p`` (1 for a zero matrix): the unit of the relative penalties.

    A penalty ``alpha`` means ``gamma = alpha * relative_scale(cov)``, so that
    it does not depend on the features' scale.
    """
    xp, _ = get_namespace_and_device(cov)
    scale = float(xp.sum(xp.linalg.diagonal(cov))) / cov.shape[0]
    return scale if scale > 0.0 else 1.0


def pick_alpha(scatter, cross, target_scatter, n_samples, weight_sum, scale):
    """The relative penalty in :data:`AUTO_ALPHAS` with the lowest GCV score.

    ``scatter``, ``cross`` and ``target_scatter`` are sums over the samples
    (:func:`solvers.ridge.ridge_gcv`), whose total weight is ``weight_sum``:
    ``alpha`` means ``gamma = weight_sum * alpha * scale`` in their units.
    """
    gammas = [weight_sum * a * scale for a in AUTO_ALPHAS]
    scores, _ = ridge_gcv(scatter, cross, target_scatter, n_samples, gammas)
    return AUTO_ALPHAS[min(range(len(scores)), key=scores.__getitem__)]


def solve_head(head, L, G, C, W_prev, gpi_max_iter):
    """The (W, b) step's ``W`` for ``G = L L^T`` and the cross-moment ``C``, by ``head``."""
    if head == "ridge":
        return cho_solve(L, C)
    if head == "stiefel":
        return generalized_procrustes(L, C)
    return stiefel_quadratic(G, C, W_prev, max_iter=gpi_max_iter, tol=1e-12)[0]


def check_head_width(head, width, n_outputs, what="features"):
    """Raise unless ``head``'s orthogonality constraint fits ``width`` columns and ``n_outputs``."""
    if head == "ridge" or width >= n_outputs:
        return
    constraint = "W^T G W = I" if head == "stiefel" else "W^T W = I"
    raise ValueError(
        f"head={head!r} constrains {constraint}, which needs at least as many {what} as outputs "
        f"(n_classes, or 1 for two classes); got {width} {what} for {n_outputs} outputs. "
        f"Use head='ridge' or more {what}."
    )


def simplex_weights(losses, k):
    """Sample weights on the simplex with exactly ``k`` positive entries (ties aside).

    ``a_i = (l_(k+1) - l_i)_+ / sum_{j<=k} (l_(k+1) - l_(j))``, the minimiser of
    ``sum_i a_i l_i + lambda ||a||^2`` over the simplex for
    ``lambda = (k l_(k+1) - sum_{j<=k} l_(j)) / 2`` (Nie, Wang, Huang 2014).
    Weights fall linearly with the loss; samples whose loss is at least the
    (k+1)-th smallest get 0. When the ``k`` smallest losses all equal the
    (k+1)-th, the samples at or below it share the weight equally.

    Parameters
    ----------
    losses : array of shape (n,)
    k : int in [1, n - 1]

    Returns
    -------
    weights : array of shape (n,)
    lam : float
        The ``lambda`` of the objective.
    """
    xp, _ = get_namespace_and_device(losses)
    n = losses.shape[0]
    if not 1 <= k <= n - 1:
        raise ValueError(f"k must be in [1, n - 1] = [1, {n - 1}]; got {k}.")
    ordered = xp.sort(losses)
    threshold = ordered[k]
    denom = float(k * threshold - xp.sum(ordered[:k]))
    if not denom > 1e-12 * max(abs(float(threshold)), 1e-300) * k:
        keep = xp.astype(losses <= threshold, losses.dtype)
        return keep / xp.sum(keep), 0.0
    weights = xp.clip(threshold - losses, min=0.0) / denom
    return weights, 0.5 * denom


class _Problem(NamedTuple):
    """The weighted least-squares problem of the (W, b) step (fixed between reweightings)."""

    weights: object  # (n,) on the simplex
    mean: object  # (p,) weighted mean of the features
    G: object  # (p, p) weighted covariance + gamma I
    L: object  # its Cholesky factor


def fit_svm_head(
    H,
    Y,
    sample_weight=None,
    settings=None,
    *,
    targets=None,
    block_rows=None,
    callback=None,
    comm=None,
    **fields,
):
    """Fit the decision layer by alternating its closed-form steps (module docstring).

    Parameters
    ----------
    H : array of shape (n, p)
        Features (float32 or float64; statistics are accumulated in float64).
    Y : array of shape (n, c)
        One-vs-rest codes in {-1, +1} (real targets for ``loss="squared"``).
    sample_weight : array of shape (n,), default=None
        Non-negative base weights (normalised to sum one for the fit; counts
        of repetitions for ``alpha="auto"``); uniform when None. Adaptive
        weights multiply them.
    settings : HeadSettings, default=None
        The hyperparameters (:class:`HeadSettings`' defaults when None);
        keyword ``**fields`` (``head=``, ``alpha=``, ...) replace some of them.
        ``alpha="auto"`` picks the relative penalty by the exact leave-one-out
        error of the least-squares fit to ``Y`` (:func:`loo_alpha`);
        ``keep_ratio=rho`` keeps ``k = clip(round(rho n) - 1, 1, n - 1)`` samples.
    targets : array of shape (n, c), default=None
        Warm start for the retargeted codes ``Z`` (default ``Y``): the previous
        fit's targets when the features have changed a little.
    block_rows : int, default=None
        Rows per block when accumulating the Gram matrix.
    callback : callable, default=None
        ``callback(info)`` after every iteration with ``info`` a dict
        (``iteration``, ``objective``); raising ``StopIteration`` stops.
    comm : solvers.distributed.Communicator, default=None
        Fit on the rows of every rank of its process group (each rank passes
        its own ``H``, ``Y``, ``sample_weight``): every sum over rows is
        summed over the ranks, the sort of the exact line search and of the
        adaptive weights runs on the gathered values (``n c`` and ``n``
        floats per iteration), and every rank gets the ``W``, ``b``,
        objective and counts of one process on the rows concatenated in rank
        order; ``weights``, ``outputs`` and ``targets`` are this rank's rows'.

    Returns
    -------
    HeadFit
    """
    settings = HeadSettings(**fields) if settings is None else settings._replace(**fields)
    comm = Communicator() if comm is None else comm
    xp, _ = get_namespace_and_device(H)
    n = comm.all_reduce_sum(H.shape[0], "Counting the SVM head's rows")
    Y64 = xp.astype(Y, xp.float64)
    base = _base_weights(H, sample_weight, comm)
    mean, G0 = weighted_moments(
        H, None if sample_weight is None else base, block_rows=block_rows,
        comm=comm if comm.distributed else None,
    )  # fmt: skip
    scale = relative_scale(G0)
    alpha = settings.alpha
    if isinstance(alpha, str):  # "auto": leave-one-out of the least-squares fit
        alpha = loo_alpha(H, Y64, sample_weight, scale, (mean, G0), block_rows, comm=comm)
    gamma = alpha * scale
    problem = _Problem(base, mean, *_penalised(G0, gamma, H.dtype))
    adaptive = settings.adaptive_weights
    max_iter = 1 if settings.loss == "squared" and not adaptive else settings.max_iter
    if max_iter == "auto" and not (settings.head == "ridge" and settings.loss == "squared_hinge"):
        max_iter = AUTO_MAX_ITER
    k = min(max(round(settings.keep_ratio * n) - 1, 1), n - 1) if n > 1 else 1
    Z = Y64 if targets is None else xp.astype(targets, xp.float64)
    if max_iter == "auto" and adaptive:
        max_iter = AUTO_MAX_ITER
    if settings.head == "ridge" and settings.loss == "squared_hinge" and not adaptive:
        return _fit_ridge_hinge(
            H, Y64, Z, problem, gamma, alpha, max_iter, settings.tol, callback, comm
        )
    W, curve, lam, losses = None, [], 0.0, None
    for it in range(max_iter):
        if it > 0 and adaptive and n > 1:  # reweight by the previous pass's losses
            problem, lam = _reweight(H, base, losses, k, gamma, block_rows, comm)
        W, b, F = _weights_step(H, Z, problem, W, settings, comm)
        Z, losses = _retarget(F, Y64, Z, settings.loss)
        weights = problem.weights
        sums = [float(weights @ losses)] + ([float(xp.sum(weights * weights))] if adaptive else [])
        sums = comm.all_reduce_sum(np.asarray(sums), "Summing the SVM head's objective")
        J = float(sums[0]) + gamma * float(xp.sum(W * W))
        if adaptive:
            J += lam * float(sums[1])
        if not math.isfinite(J):
            raise FloatingPointError(
                "The SVM head's objective is not finite; check the features for NaN/inf."
            )
        curve.append(J)
        if callback is not None:
            try:
                callback({"iteration": it + 1, "objective": J})
            except StopIteration:
                break
        if len(curve) > 1 and curve[-2] - J <= settings.tol * abs(curve[-2]):
            break
    return HeadFit(W, b, problem.weights, F, Z, curve, len(curve), gamma, alpha)


def _fit_ridge_hinge(H, Y, Z, problem, gamma, alpha, max_iter, tol, callback, comm=_SINGLE):
    """``head="ridge"``, squared hinge, fixed weights: the least-squares fit to ``Z``, then CG.

    The first iteration is the alternation's (W, b) step on the targets ``Z``;
    the remaining ``max_iter - 1`` are conjugate-gradient iterations on the
    same objective (:func:`closedform.squared_hinge.squared_hinge_cg`), which
    converge far faster than further alternations at the same cost.
    ``max_iter="auto"`` runs :func:`validation_iterations` alongside.
    """
    if max_iter == "auto":
        return validation_iterations(H, Y, Z, problem, gamma, alpha, tol, callback, comm)

    def report(j, iteration, J, W, b, F):
        if callback is not None:
            callback({"iteration": iteration, "objective": J})

    ((W, b, F, curve),) = _ridge_hinge_paths(H, Y, Z, [problem], gamma, max_iter, tol, report, comm)
    Z, _ = _retarget(F, Y, Z, "squared_hinge")
    return HeadFit(W, b, problem.weights, F, Z, curve, len(curve), gamma, alpha)


def _ridge_hinge_paths(H, Y, Z, problems, gamma, max_iter, tol, monitor, comm=_SINGLE):
    """The iterates of :func:`_fit_ridge_hinge` for each problem (weighting), sharing the passes.

    ``monitor(j, iteration, J, W, b, F)`` sees problem ``j``'s iterates
    (iteration 1: the least-squares fit); returns ``(W, b, F, curve)`` per problem.
    """
    xp, _ = get_namespace_and_device(H)
    n_out = Z.shape[1]
    # the least-squares step of every problem from one pass: H^T [a_1 Z ... a_k Z]
    AZ = xp.concat([p.weights[:, None] * Z for p in problems], axis=1)
    C = xp.astype(H.T @ xp.astype(AZ, H.dtype), xp.float64)
    C = comm.all_reduce_sum(C, "Summing the SVM head's cross-moments")
    z_means = comm.all_reduce_sum(xp.stack([p.weights @ Z for p in problems]), "Summing means")
    starts = []
    for j, p in enumerate(problems):
        z_mean = z_means[j, :]
        cross = C[:, j * n_out : (j + 1) * n_out] - p.mean[:, None] * z_mean[None, :]
        starts.append((cho_solve(p.L, cross), z_mean))  # centred: f = (h - mean) W + c

    def lib(j, iteration, J, W, c, F):  # b = c - mean W, the library's intercept
        monitor(j, iteration + 1, J, W, c - problems[j].mean @ W, F)

    hinge = [HingeProblem(p.weights, p.mean, p.L) for p in problems]
    paths = squared_hinge_cg(
        H, Y, hinge, gamma, starts, max_iter=max_iter - 1, tol=tol, callback=lib,
        comm=comm if comm.distributed else None,
    )  # fmt: skip
    return [
        (W, c - p.mean @ W, F, curve) for (W, c, F, curve), p in zip(paths, problems, strict=True)
    ]


def validation_iterations(H, Y, Z, problem, gamma, alpha, tol, callback=None, comm=None):
    """``max_iter="auto"``: the fit whose iteration count has the best held-out accuracy.

    The iterations trade the least-squares fit (1 iteration) for the
    squared-hinge optimum (converged). With many rows per feature the
    converged SVM classifies best (MNIST, 60000 rows and 1000 units: 97.7 %
    against 97.1 % for least squares), with few it overfits (digits, 1437 rows
    and 500 units: 96.3 % against 97.2 %, 5-fold CV). So the path is run up
    to :data:`AUTO_MAX_ITER` iterations twice, in lockstep and sharing every
    pass over ``H``: on all rows, and on the rows less a fraction
    :data:`VALIDATION_FRACTION` held out (:func:`_held_out_rows`). The
    held-out rows' weighted accuracy after each iteration of the second
    picks the iterate of the first, the largest count among ties (the SVM,
    unless least squares is seen to do better). The held-out rows' moments
    are subtracted from the full ones, so no second Gram matrix is
    accumulated. When no row can be held out (a handful of rows, or no
    weight on one side) the fit is the least-squares one, which few rows
    favour.

    Parameters
    ----------
    H : array of shape (n, p)
    Y : array of shape (n, c)
        Codes in {-1, +1}, float64.
    Z : array of shape (n, c)
        Targets of the least-squares start.
    problem : _Problem
        The weighted problem on all rows (weights on the simplex).
    gamma, alpha : float
    tol : float
    callback : callable, default=None
        As :func:`fit_svm_head`'s, for the iterations on all rows.
    comm : solvers.distributed.Communicator, default=None
        As :func:`fit_svm_head`'s: the held-out rows are those of the
        concatenation (the hash's scale is the largest over all ranks).

    Returns
    -------
    HeadFit
        ``n_iter`` is the chosen count; ``objective_curve`` runs up to it.
    """
    comm = Communicator() if comm is None else comm
    xp, _ = get_namespace_and_device(H)
    problems = [problem]
    held = _held_out_problem(H, problem, gamma, comm)
    if held is not None:
        problems.append(held[0])
        rows = held[1]
        Y_held = xp.take(Y, rows, axis=0)
        truth = xp.argmax(Y_held, axis=1) if Y.shape[1] > 1 else Y_held[:, 0] > 0.0
        w_held = xp.take(problem.weights, rows, axis=0)
    iterates, scores = [], []

    def monitor(j, iteration, J, W, b, F):
        if j == 0:
            iterates.append((W, b, F, J))
            if callback is not None:
                callback({"iteration": iteration, "objective": J})
            return
        F_held = xp.take(F, rows, axis=0)
        guess = xp.argmax(F_held, axis=1) if Y.shape[1] > 1 else F_held[:, 0] > 0.0
        score = float(w_held @ xp.astype(guess == truth, xp.float64))
        scores.append(comm.all_reduce_sum(score, "Summing the held-out accuracy"))

    # nothing to hold out (a handful of rows): the least-squares fit, which few rows favour
    count = AUTO_MAX_ITER if len(problems) > 1 else 1
    _ridge_hinge_paths(H, Y, Z, problems, gamma, count, tol, monitor, comm)
    k = len(iterates)
    if scores:
        k = min(k, 1 + max(range(len(scores)), key=lambda i: (scores[i], i)))
    W, b, F, _ = iterates[k - 1]
    Z, _ = _retarget(F, Y, Z, "squared_hinge")
    curve = [J for _, _, _, J in iterates[:k]]
    return HeadFit(W, b, problem.weights, F, Z, curve, k, gamma, alpha)


def _held_out_problem(H, problem, gamma, comm=_SINGLE):
    """The problem on the rows less those :func:`_held_out_rows` holds out, and those rows.

    None when too few rows (or too little weight) fall on either side.
    """
    xp, device = get_namespace_and_device(H)
    is_held = _held_out_rows(H, VALIDATION_FRACTION, problem.weights, comm)
    held = np.flatnonzero(to_numpy(is_held))
    rows = to_namespace(held, xp, device)
    w_held = xp.take(problem.weights, rows, axis=0)
    counts = np.asarray([held.size, H.shape[0], float(xp.sum(w_held))])
    n_held, n, w_held_sum = comm.all_reduce_sum(counts, "Counting the held-out rows")
    if n_held < 1 or n - n_held < 2:
        return None
    w_train = 1.0 - float(w_held_sum)
    if not w_train > 0.0 or not float(w_held_sum) > 0.0:
        return None
    weights = xp.where(is_held, xp.zeros_like(problem.weights), problem.weights) / w_train
    # moments of the training rows = all rows' less the held-out rows' (weights summing to one)
    # the held-out rows' scatter in the features' precision, as the full Gram matrix's blocks
    H_held = xp.take(H, rows, axis=0)
    eye = xp.eye(H.shape[1], dtype=xp.float64, device=device)
    mean, G0 = problem.mean, problem.G - gamma * eye
    sum_held = comm.all_reduce_sum(w_held @ xp.astype(H_held, xp.float64), "Summing held rows")
    mean_train = (mean - sum_held) / w_train
    scatter_held = xp.astype(H_held.T @ (xp.astype(w_held, H.dtype)[:, None] * H_held), xp.float64)
    scatter_held = comm.all_reduce_sum(scatter_held, "Summing the held-out rows' scatter")
    G0_train = (G0 + mean[:, None] * mean[None, :] - scatter_held) / w_train
    G0_train = G0_train - mean_train[:, None] * mean_train[None, :]
    try:
        return _Problem(weights, mean_train, *_penalised(G0_train, gamma, H.dtype)), rows
    except FloatingPointError:  # the difference lost definiteness to rounding: accumulate it
        mean_train, G0_train = weighted_moments(H, weights, comm=_or_none(comm))
        return _Problem(weights, mean_train, *_penalised(G0_train, gamma, H.dtype)), rows


def _held_out_rows(H, fraction, weights=None, comm=None):
    """A boolean mask holding out about ``fraction`` of the rows, by a hash of their values.

    A row is held out when the fractional part of ``1000 h . r / max_i |h_i . r|``
    (``r`` a fixed Gaussian direction; the maximum over the rows of positive
    weight, all rows when ``weights`` is None) is below ``fraction``: equal
    rows fall on the same side, so integer sample weights and repeated rows
    (or zero weights and removed rows) hold out the same data, and the mask
    does not change with the features' scale. (Float32 and float64 copies of
    the same features may differ at the boundary.) With ``comm`` the maximum
    is over every rank's rows: each rank gets its rows of the mask of the
    concatenated rows.
    """
    xp, device = get_namespace_and_device(H)
    direction = np.random.default_rng(0).standard_normal(H.shape[1])
    projection = xp.astype(H @ xp.astype(to_namespace(direction, xp, device), H.dtype), xp.float64)
    size = xp.abs(projection)
    if weights is not None:
        size = xp.where(weights > 0.0, size, xp.zeros_like(size))
    largest = float(xp.max(size)) if size.shape[0] else 0.0
    if comm is not None:
        largest = comm.all_reduce_max(largest, "The held-out hash's scale")
    code = projection * (1000.0 / largest if largest > 0.0 else 1.0)
    return code - xp.floor(code) < fraction


def _base_weights(H, sample_weight, comm=_SINGLE):
    """The base sample weights, normalised to sum one over all ranks (uniform when None)."""
    xp, device = get_namespace_and_device(H)
    n = H.shape[0]
    if sample_weight is None:
        total = comm.all_reduce_sum(n, "Counting the rows")
        return xp.full((n,), 1.0 / total, dtype=xp.float64, device=device)
    base = xp.astype(sample_weight, xp.float64)
    return base / comm.all_reduce_sum(xp.sum(base), "Summing the sample weights")


def _or_none(comm):
    """``comm`` when it spans a process group, else None (the single-process code path)."""
    return comm if comm is not None and comm.distributed else None


def _penalised(G0, gamma, features_dtype=None):
    """``G = G0 + gamma I`` and its Cholesky factor.

    ``G0`` sums products taken in the features' precision: from float32
    features its rounding (about ``1e-7 trace(G0) / p``) can make it
    indefinite beyond a small ``gamma``, so the retry's jitter follows that
    precision.
    """
    xp, device = get_namespace_and_device(G0)
    G = G0 + gamma * xp.eye(G0.shape[0], dtype=xp.float64, device=device)
    jitter = 1e-10
    if features_dtype is not None and features_dtype != xp.float64:
        jitter = 10.0 * float(xp.finfo(features_dtype).eps)
    return G, cholesky(G, jitter=jitter)


def _cross_moment(H, weights, mean, Z, comm=_SINGLE):
    """``C = sum_i a_i (h_i - h) z_i^T`` (p, c) and the targets' weighted mean ``z`` (c,).

    The product runs in the features' precision (no float64 copy of ``H``), the
    centring in float64.
    """
    xp, _ = get_namespace_and_device(H)
    z_mean = comm.all_reduce_sum(weights @ Z, "Summing the targets' mean")
    C = xp.astype(H.T @ xp.astype(weights[:, None] * Z, H.dtype), xp.float64)
    C = comm.all_reduce_sum(C, "Summing the cross-moments")
    return C - mean[:, None] * z_mean[None, :], z_mean


def _weights_step(H, Z, problem, W_prev, settings, comm=_SINGLE):
    """The (W, b) step for fixed targets ``Z``; returns ``W``, ``b`` and the outputs ``H W + b``."""
    xp, _ = get_namespace_and_device(H)
    C, z_mean = _cross_moment(H, problem.weights, problem.mean, Z, comm)
    W = solve_head(settings.head, problem.L, problem.G, C, W_prev, settings.gpi_max_iter)
    b = z_mean - problem.mean @ W
    return W, b, xp.astype(H @ xp.astype(W, H.dtype), xp.float64) + b


def _retarget(F, Y, Z, loss):
    """The retargeting step: new targets ``Z`` and per-sample losses for the outputs ``F``."""
    xp, _ = get_namespace_and_device(F)
    if loss == "squared":  # the targets stay the codes
        return Z, xp.sum((F - Y) ** 2, axis=1)
    # z = y max(1, y f); the residual is then the squared hinge
    margins = Y * F
    return Y * xp.clip(margins, min=1.0), xp.sum(xp.clip(1.0 - margins, min=0.0) ** 2, axis=1)


def _reweight(H, base, losses, k, gamma, block_rows, comm=_SINGLE):
    """Adaptive weights from the losses (:func:`simplex_weights`) and their problem.

    Across ranks the losses are gathered (the simplex weights sort all of
    them) and each rank keeps its rows' weights.
    """
    xp, _ = get_namespace_and_device(H)
    if comm.distributed:
        counts = comm.row_counts(losses.shape[0], "Counting the rows to reweight")
        start = sum(counts[: comm.rank])
        simplex, lam = simplex_weights(comm.all_gather_rows(losses, "Gathering the losses"), k)
        simplex = simplex[start : start + counts[comm.rank]]
    else:
        simplex, lam = simplex_weights(losses, k)
    weights = simplex * base
    weights = weights / comm.all_reduce_sum(xp.sum(weights), "Summing the adaptive weights")
    mean, G0 = weighted_moments(H, weights, block_rows=block_rows, comm=_or_none(comm))
    return _Problem(weights, mean, *_penalised(G0, gamma, H.dtype)), lam


def loo_alpha(H, Y, sample_weight=None, scale=1.0, moments=None, block_rows=None, comm=None):
    """The relative penalty with the lowest exact leave-one-out error of the least-squares fit.

    The candidates are :data:`AUTO_ALPHAS` (``gamma = alpha * scale`` in the
    units of the weighted covariance), from ``10 eps`` up for float32
    features (smaller penalties are below the rounding of their Gram
    matrix); the score is the mean squared
    leave-one-out residual of the ridge fit of ``Y`` (:func:`solvers.ridge.ridge_loo`,
    as scikit-learn's ``RidgeCV``/``RidgeClassifierCV`` score by default), in
    the cheapest exact form:

    - ``n <= LOO_ROWS``: every row, from one ``min(n, p)``-sized ``eigh``;
    - ``p <= PRIMAL_MAX_FEATURES``: the primal form (one ``p x p`` ``eigh``)
      of the fit to all ``n`` rows, scoring ``LOO_ROWS`` of them drawn at
      random (an unbiased estimate of the mean). On MNIST (60000 rows, 3000
      units) it picks ``1e-5``, the penalty tuned by hand before, in 3 s;
    - both larger (an approximation): the dual form on ``m = LOO_ROWS`` rows
      drawn at random, whose best penalty is carried to all ``n`` rows at a
      fixed total (``alpha * m / n``: the penalty of a Gaussian prior on
      ``W``, which the sum of the losses over more rows outweighs more). It
      leans to larger penalties: ``1e-4`` on MNIST.

    The draws use a fixed seed: the choice depends on the data only.

    Parameters
    ----------
    H : array of shape (n, p)
    Y : array of shape (n, c)
    sample_weight : array of shape (n,), default=None
        Non-negative weights (uniform when None), counting repetitions
        (:func:`solvers.ridge.ridge_loo`): the choice with integer weights is
        the one on the data with the rows repeated.
    scale : float, default=1.0
        :func:`relative_scale` of the features' covariance.
    moments : tuple (mean, covariance), default=None
        The features' weighted mean and covariance when already computed.
    block_rows : int, default=None
        Scored rows per block in the primal form. The dual form holds its
        ``m <= LOO_ROWS`` rows in float64 and an ``m x m`` matrix.
    comm : solvers.distributed.Communicator, default=None
        Score the rows of every rank together: the draws are indices into
        their concatenation, the primal scores are summed over the ranks, and
        the dual forms gather their rows (fewer than the features, or
        ``LOO_ROWS``).

    Returns
    -------
    alpha : float
    """
    comm = Communicator() if comm is None else comm
    p = H.shape[1]
    counts = comm.row_counts(H.shape[0], "Counting the leave-one-out rows")
    n, start = sum(counts), sum(counts[: comm.rank])
    xp, device = get_namespace_and_device(H)
    # penalties below the features' rounding (float32: ~1e-7 of the Gram matrix) are noise
    floor = 0.0 if H.dtype == xp.float64 else 10.0 * float(xp.finfo(H.dtype).eps)
    candidates = [a for a in AUTO_ALPHAS if a >= floor]
    gammas = [a * scale for a in candidates]
    subset = None
    if n > LOO_ROWS:
        subset = np.sort(np.random.default_rng(0).choice(n, LOO_ROWS, replace=False))
    if subset is not None and comm.distributed:  # this rank's drawn rows
        subset = subset[(subset >= start) & (subset < start + H.shape[0])] - start
    if p <= PRIMAL_MAX_FEATURES or subset is None:
        scores = ridge_loo(
            H, Y, gammas, sample_weight=sample_weight, rows=subset, moments=moments,
            block_rows=block_rows, comm=_or_none(comm),
        )  # fmt: skip
        return candidates[min(range(len(scores)), key=scores.__getitem__)]
    rows = to_namespace(subset, xp, device)
    gather = comm.all_gather_rows
    if sample_weight is None:
        kept, fraction = None, LOO_ROWS / n
    else:
        kept = gather(xp.take(sample_weight, rows, axis=0), "Gathering the drawn rows' weights")
        total = comm.all_reduce_sum(xp.sum(sample_weight), "Summing the sample weights")
        fraction = float(xp.sum(kept) / total)
    H_m = gather(xp.take(H, rows, axis=0), "Gathering the drawn rows")
    Y_m = gather(xp.take(Y, rows, axis=0), "Gathering the drawn rows' targets")
    scores = ridge_loo(H_m, Y_m, gammas, sample_weight=kept)
    return max(candidates[min(range(len(scores)), key=scores.__getitem__)] * fraction, floor)
