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
convex piecewise quadratic in ``s``, minimised exactly from one sort of its
breakpoints (:func:`exact_line_search`; Keerthi & DeCoste, JMLR 2005, use the
same exact line search for the L2-SVM).

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
from typing import NamedTuple

from solvers.backend import get_namespace_and_device
from solvers.distributed import Communicator
from solvers.linalg import cho_solve

__all__ = ["HingeProblem", "exact_line_search", "squared_hinge_cg"]


def exact_line_search(F, dF, Y, weights, gamma, WD, DD, comm=None):
    """The exact minimiser ``s >= 0`` of ``J`` along a search direction.

    ``phi(s) = sum_i a_i ||(1 - y_i (f_i + s df_i))_+||^2 + gamma ||W + s D||^2``
    is convex and piecewise quadratic, so ``phi'`` is continuous,
    non-decreasing and piecewise linear: each entry ``(i, k)`` with slack
    ``m = 1 - y f`` and ``q = y df`` contributes ``-2 a_i (m - s q) q`` while
    ``m - s q > 0``. Entries switch off (``q > 0``) or on (``q < 0``) at
    ``s = m / q``; sorting these breakpoints once gives ``phi'`` on every
    piece by cumulative sums, and the root lies on the first piece whose end
    has ``phi' >= 0``: one sort of at most ``n c`` values instead of an
    iterative search (Newton steps on ``phi'`` needed about 25 evaluations
    over all entries on MNIST, each as costly as the sort).

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
    comm : solvers.distributed.Communicator, default=None
        The rows are spread over its ranks: their relevant entries (at most
        ``n c`` of ``(m, q, a)``) are gathered in rank order, so every rank
        finds the step of the concatenation.

    Returns
    -------
    float
        The step ``s >= 0``; 0 when ``D`` is not a descent direction.
    """
    xp, _ = get_namespace_and_device(F)
    m = xp.reshape(1.0 - Y * F, (-1,))
    q = xp.reshape(Y * dF, (-1,))
    on = ((m > 0.0) & (q != 0.0)) | ((m == 0.0) & (q < 0.0))  # active just after s = 0
    relevant = on | ((m < 0.0) & (q < 0.0))  # the others stay inactive for every s >= 0
    a = xp.reshape(xp.broadcast_to(weights[:, None], F.shape), (-1,))[relevant]
    m, q, on = m[relevant], q[relevant], on[relevant]
    if comm is not None and comm.distributed:
        entries = xp.stack([m, q, a, xp.astype(on, m.dtype)], axis=1)
        entries = comm.all_gather_rows(entries, "Gathering the line search's breakpoints")
        m, q, a, on = entries[:, 0], entries[:, 1], entries[:, 2], entries[:, 3] > 0.5
    A, B = -2.0 * a * m * q, 2.0 * a * q * q  # an active entry adds A + B s to phi'
    A0 = float(xp.sum(A[on])) + 2.0 * gamma * WD
    B0 = float(xp.sum(B[on])) + 2.0 * gamma * DD
    if not A0 < 0.0:  # phi'(0) >= 0: no descent along D
        return 0.0
    # breakpoints at s > 0: q > 0, m > 0 switch off; q < 0, m < 0 switch on
    off = on & (q > 0.0)
    events = off | ~on
    t = (m / q)[events]
    ones = xp.ones_like(A)
    sign = xp.where(off, -ones, ones)[events]
    order = xp.argsort(t)
    t = xp.take(t, order)
    dA = xp.take(sign * A[events], order)
    dB = xp.take(sign * B[events], order)
    # coefficients of phi' on the piece ending at each breakpoint, and phi' there
    A_piece = A0 + xp.cumulative_sum(dA) - dA
    B_piece = B0 + xp.cumulative_sum(dB) - dB
    ends = A_piece + B_piece * t
    reached = xp.nonzero(ends >= 0.0)[0]
    if reached.shape[0] > 0:
        k = int(reached[0])
        A_root, B_root = float(A_piece[k]), float(B_piece[k])
        floor, ceiling = (float(t[k - 1]) if k else 0.0), float(t[k])
    else:  # beyond the last breakpoint
        A_root = A0 + float(xp.sum(dA))
        B_root = B0 + float(xp.sum(dB))
        floor, ceiling = (float(t[-1]) if t.shape[0] else 0.0), math.inf
    if not B_root > 0.0:  # a flat piece: phi' is 0 from its start
        return floor
    return min(max(-A_root / B_root, floor), ceiling)


class HingeProblem(NamedTuple):
    """One weighting of the rows: ``weights`` (n,) on the simplex, their ``mean`` of the
    features (p,), and the lower Cholesky factor ``L`` of ``G`` (the preconditioner)."""

    weights: object
    mean: object
    L: object


def squared_hinge_cg(H, Y, problems, gamma, starts, *, max_iter, tol, callback=None, comm=None):
    """Minimise the squared-hinge objective (module docstring) of each problem from its start.

    The problems share the features: each pass over ``H`` (the outputs of the
    search directions, the gradients' ``H^T (a y r)``) serves all of them at
    once, as one product with ``c`` columns per problem, which costs little
    more than one problem's since the products are bound by reading ``H``.

    Parameters
    ----------
    H : array of shape (n, p)
        Features (float32 or float64; the products run in their precision,
        the rest in float64).
    Y : array of shape (n, c)
        Codes in {-1, +1}, float64.
    problems : sequence of HingeProblem
    gamma : float
        The absolute penalty.
    starts : sequence of (W, c)
        One starting point per problem, float64, ``W`` (p, c) and ``c`` (c,)
        in the centred parametrisation ``f = W^T (h_i - h) + c``.
    max_iter : int
        Iterations (each: one search direction, one exact line search).
    tol : float
        A problem stops when its ``J`` decreases by less than ``tol * J``.
    callback : callable, default=None
        ``callback(j, iteration, J, W, c, F)`` for problem ``j`` at its start
        (iteration 0) and after each of its iterations; raising
        ``StopIteration`` stops that problem.
    comm : solvers.distributed.Communicator, default=None
        The rows are spread over its ranks (each passes its own ``H``, ``Y``
        and weights): the gradients' sums and the objective are summed over
        the ranks and the line searches see every rank's breakpoints, so all
        ranks follow the iterates of the concatenated rows.

    Returns
    -------
    list of (W, c, F, curve)
        Per problem: the last iterate, its outputs ``F`` (n, c) in float64 and
        ``J`` at the start and after each iteration.
    """
    xp, _ = get_namespace_and_device(H)
    k, n_out = len(problems), Y.shape[1]
    comm = Communicator() if comm is None else comm

    def split(A):
        return [A[:, j * n_out : (j + 1) * n_out] for j in range(A.shape[1] // n_out)]

    def outputs(live, D_W, D_c):  # one pass: H @ [D_1 ... D_m]
        HD = split(xp.astype(H @ xp.astype(xp.concat(D_W, axis=1), H.dtype), xp.float64))
        return [HD[i] - (problems[j].mean @ D_W[i])[None, :] + D_c[i] for i, j in enumerate(live)]

    def residuals(j, F):
        return problems[j].weights[:, None] * (Y * xp.clip(1.0 - Y * F, min=0.0))

    def objective(j, F, W):
        hinge = xp.clip(1.0 - Y * F, min=0.0)
        loss = float(problems[j].weights @ xp.sum(hinge * hinge, axis=1))
        loss = comm.all_reduce_sum(loss, "Summing the squared-hinge objective")
        return loss + gamma * float(xp.sum(W * W))

    W = [xp.asarray(w) for w, _ in starts]
    c = [xp.asarray(v) for _, v in starts]
    F = outputs(list(range(k)), W, c)
    curves, previous, steps, live = [[] for _ in range(k)], [None] * k, [1.0] * k, []

    def record(j, iteration):
        J = objective(j, F[j], W[j])
        if not math.isfinite(J):
            raise FloatingPointError(
                "The SVM head's objective is not finite; check the features for NaN/inf."
            )
        curves[j].append(J)
        if callback is not None:
            try:
                callback(j, iteration, J, W[j], c[j], F[j])
            except StopIteration:
                return False
        return True

    live = [j for j in range(k) if record(j, 0)]
    for it in range(max_iter):
        if not live:
            break
        R = [residuals(j, F[j]) for j in live]
        S = xp.astype(H.T @ xp.astype(xp.concat(R, axis=1), H.dtype), xp.float64)
        S = split(comm.all_reduce_sum(S, "Summing the squared-hinge gradients"))
        r_sums = xp.stack([xp.sum(R[i], axis=0) for i in range(len(live))])
        r_sums = comm.all_reduce_sum(r_sums, "Summing the intercepts' gradients")
        D_W, D_c = [], []
        for i, j in enumerate(live):
            r_sum = r_sums[i, :]
            g_W = gamma * W[j] - (S[i] - problems[j].mean[:, None] * r_sum[None, :])
            d_W, d_c, previous[j] = _search_direction(xp, problems[j].L, g_W, -r_sum, previous[j])
            D_W.append(d_W)
            D_c.append(d_c)
        dF = outputs(live, D_W, D_c)
        still = []
        for i, j in enumerate(live):
            WD, DD = float(xp.sum(W[j] * D_W[i])), float(xp.sum(D_W[i] * D_W[i]))
            steps[j] = exact_line_search(
                F[j], dF[i], Y, problems[j].weights, gamma, WD, DD, comm=comm
            )
            W[j], c[j] = W[j] + steps[j] * D_W[i], c[j] + steps[j] * D_c[i]
            F[j] = F[j] + steps[j] * dF[i]
            going = record(j, it + 1)
            last, before = curves[j][-1], curves[j][-2]
            if going and steps[j] > 0.0 and before - last > tol * abs(before):
                still.append(j)
        live = still
    return [(W[j], c[j], F[j], curves[j]) for j in range(k)]


def _search_direction(xp, L, g_W, g_c, previous):
    """The preconditioned PR+ direction for the half gradient ``(g_W, g_c)``, and the new memory.

    ``z = P g`` with ``P = blockdiag(G^-1, 1)`` (``G = L L^T``); ``beta = <g, z -
    z_old> / <g_old, z_old>`` clipped at 0, and a restart along ``-z`` when the
    result is not a descent direction. ``previous`` is None on the first
    iteration.
    """
    z_W, z_c = cho_solve(L, g_W), g_c  # the preconditioned gradient
    gz = float(xp.sum(g_W * z_W)) + float(xp.sum(g_c * z_c))
    d_W, d_c = -z_W, -z_c
    if previous is not None:
        z_old_W, z_old_c, gz_old, d_old_W, d_old_c = previous
        beta = gz - float(xp.sum(g_W * z_old_W)) - float(xp.sum(g_c * z_old_c))
        beta = max(beta / gz_old, 0.0) if gz_old > 0.0 else 0.0
        d_W, d_c = -z_W + beta * d_old_W, -z_c + beta * d_old_c
        if float(xp.sum(g_W * d_W)) + float(xp.sum(g_c * d_c)) >= 0.0:
            d_W, d_c = -z_W, -z_c  # not a descent direction: restart
    return d_W, d_c, (z_W, z_c, gz, d_W, d_c)
