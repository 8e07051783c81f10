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
    converges to the L2-SVM optimum (a convex problem).

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

from solvers.backend import get_namespace_and_device
from solvers.linalg import (
    cho_solve,
    cholesky,
    generalized_procrustes,
    stiefel_quadratic,
    weighted_moments,
)
from solvers.ridge import ridge_gcv

__all__ = ["AUTO_ALPHAS", "HEADS", "fit_svm_head", "simplex_weights"]

HEADS = ("stiefel", "gpi", "ridge")


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


def _solve(head, L, G, C, W_prev, gpi_max_iter):
    if head == "ridge":
        return cho_solve(L, C)
    if head == "stiefel":
        return generalized_procrustes(L, C)
    return stiefel_quadratic(G, C, W_prev, max_iter=gpi_max_iter, tol=1e-12)[0]


def fit_svm_head(
    H,
    Y,
    sample_weight=None,
    *,
    head="stiefel",
    alpha=1e-5,
    max_iter=10,
    tol=1e-4,
    adaptive_weights=False,
    keep_ratio=1.0,
    gpi_max_iter=100,
    loss="squared_hinge",
    targets=None,
    block_rows=None,
    callback=None,
):
    """Fit the decision layer by alternating its closed-form steps (module docstring).

    Parameters
    ----------
    H : array of shape (n, p)
        Features (float32 or float64; statistics are accumulated in float64).
    Y : array of shape (n, c)
        One-vs-rest codes in {-1, +1}.
    sample_weight : array of shape (n,), default=None
        Non-negative base weights (normalised to sum one); uniform when None.
        Adaptive weights multiply them.
    head : {"stiefel", "gpi", "ridge"}
    alpha : float or "auto"
        Relative ridge penalty: ``gamma = alpha * trace(G_0) / p``. ``"auto"``
        picks it from :data:`AUTO_ALPHAS` by generalised cross-validation of the
        least-squares fit to ``Y``, all from one eigendecomposition of ``G_0``
        (:func:`solvers.ridge.ridge_gcv`).
    max_iter : int
        Retargeting iterations (each one (W, b) solve).
    tol : float
        Stop when ``J`` decreases by less than ``tol * J``.
    adaptive_weights : bool
    keep_ratio : float in (0, 1]
        Fraction ``rho`` of samples kept by the adaptive weights:
        ``k = clip(round(rho n) - 1, 1, n - 1)``.
    gpi_max_iter : int
        GPI iterations per (W, b) step for ``head="gpi"``.
    loss : {"squared_hinge", "squared"}
        ``"squared"`` keeps the targets ``Z = Y`` (ridge regression onto real
        targets; iterations only update adaptive weights).
    targets : array of shape (n, c), default=None
        Warm start for the retargeted codes ``Z`` (default ``Y``): the previous
        fit's targets when the features have changed a little.
    block_rows : int, default=None
        Rows per block when accumulating the Gram matrix.
    callback : callable, default=None
        ``callback(info)`` after every iteration with ``info`` a dict
        (``iteration``, ``objective``); raising ``StopIteration`` stops.

    Returns
    -------
    dict
        ``W`` (p, c) and ``b`` (c,) in float64, ``weights`` (n,), ``outputs``
        (n, c): ``H W + b`` of the last iteration, float64,
        ``targets`` (n, c): the retargeted ``Z`` after the last iteration,
        ``objective_curve`` (list of float: ``J`` after each retargeting,
        plus ``lambda ||a||^2`` with adaptive weights), ``n_iter``, ``gamma``,
        ``alpha`` (the relative penalty used).
    """
    xp, device = get_namespace_and_device(H)
    n, p = H.shape
    f64 = xp.float64
    Y64 = xp.astype(Y, f64)
    if sample_weight is None:
        base = xp.full((n,), 1.0 / n, dtype=f64, device=device)
    else:
        base = xp.astype(sample_weight, f64)
        base = base / xp.sum(base)
    k = min(max(round(keep_ratio * n) - 1, 1), n - 1) if n > 1 else 1

    weights = base
    mean, G0 = weighted_moments(
        H, None if sample_weight is None else weights, block_rows=block_rows
    )
    scale = float(xp.sum(xp.linalg.diagonal(G0))) / p
    scale = scale if scale > 0.0 else 1.0
    if isinstance(alpha, str):  # "auto": GCV of the least-squares fit, one eigh for all
        alpha = _gcv_alpha(H, Y64, weights, mean, G0, scale)
    gamma = alpha * scale
    eye = xp.eye(p, dtype=f64, device=device)
    G = G0 + gamma * eye
    L = cholesky(G)
    squared = loss == "squared"
    if squared and not adaptive_weights:
        max_iter = 1
    Z = Y64 if targets is None else xp.astype(targets, f64)
    W, curve, lam, losses = None, [], 0.0, None
    n_iter = 0
    for it in range(max_iter):
        if it > 0 and adaptive_weights and n > 1:
            alpha_w, lam = simplex_weights(losses, k)  # the previous pass's losses
            weights = alpha_w * base
            weights = weights / xp.sum(weights)
            mean, G0 = weighted_moments(H, weights, block_rows=block_rows)
            G = G0 + gamma * eye
            L = cholesky(G)
        z_mean = weights @ Z
        # C = sum_i a_i h_i z_i^T - h z^T, the product in the features' precision (no
        # float64 copy of H), the centring in float64
        C = xp.astype(H.T @ xp.astype(weights[:, None] * Z, H.dtype), f64)
        C = C - mean[:, None] * z_mean[None, :]
        W = _solve(head, L, G, C, W, gpi_max_iter)
        b = z_mean - mean @ W
        F = xp.astype(H @ xp.astype(W, H.dtype), f64) + b
        if squared:
            losses = xp.sum((F - Y64) ** 2, axis=1)
        else:  # retarget: z = y max(1, y f); the residual is then the squared hinge
            margins = Y64 * F
            Z = Y64 * xp.clip(margins, min=1.0)
            losses = xp.sum(xp.clip(1.0 - margins, min=0.0) ** 2, axis=1)
        J = float(weights @ losses) + gamma * float(xp.sum(W * W))
        if adaptive_weights:
            J += lam * float(xp.sum(weights * weights))
        if not math.isfinite(J):
            raise FloatingPointError(
                "The SVM head's objective is not finite; check the features for NaN/inf."
            )
        curve.append(J)
        n_iter = it + 1
        if callback is not None:
            try:
                callback({"iteration": n_iter, "objective": J})
            except StopIteration:
                break
        if len(curve) > 1 and curve[-2] - J <= tol * abs(curve[-2]):
            break
    return {
        "W": W,
        "b": b,
        "weights": weights,
        "outputs": F,
        "targets": Z,
        "objective_curve": curve,
        "n_iter": n_iter,
        "gamma": gamma,
        "alpha": alpha,
    }


#: Relative penalties ``alpha="auto"`` chooses from: 1e-8 ... 1, half a decade apart.
AUTO_ALPHAS = tuple(10.0 ** (e / 2) for e in range(-16, 1))


def _gcv_alpha(H, Y, weights, mean, G0, scale):
    """The relative penalty in :data:`AUTO_ALPHAS` with the lowest GCV score."""
    xp, _ = get_namespace_and_device(H)
    n = H.shape[0]
    y_mean = weights @ Y
    C = xp.astype(H.T @ xp.astype(weights[:, None] * Y, H.dtype), xp.float64)
    C = C - mean[:, None] * y_mean[None, :]
    t = weights @ ((Y - y_mean) ** 2)
    # the statistics are weighted means; GCV wants sums over the n samples
    scores, _ = ridge_gcv(n * G0, n * C, n * t, n, [n * a * scale for a in AUTO_ALPHAS])
    return AUTO_ALPHAS[min(range(len(scores)), key=scores.__getitem__)]
