# SPDX-License-Identifier: BSD-3-Clause
"""Ridge regression from streamed sufficient statistics, and its GCV path.

For features ``H`` (n x p), targets ``T`` (n x c) and sample weights ``w`` the
ridge problem with an unpenalised intercept,

    min_{W, b} sum_i w_i ||W^T h_i + b - t_i||^2 + gamma ||W||_F^2,

has the solution ``W = (S + gamma I)^-1 C``, ``b = t - W^T h`` from the
weighted means ``h``, ``t``, the centred scatter ``S = sum_i w_i (h_i - h)
(h_i - h)^T`` and the centred cross-moment ``C = sum_i w_i (h_i - h)(t_i -
t)^T``. These are sums over samples, so they are accumulated block by block
and batch by batch (:class:`GramStatistics`): data larger than memory streams
through them, and ``partial_fit`` equals ``fit``.

One eigendecomposition ``S = V diag(l) V^T`` gives the solution for every
``gamma``, and with it the generalised cross-validation score (Golub, Heath &
Wahba 1979) ``GCV(gamma) = n RSS(gamma) / (n - df(gamma))^2`` with
``df = 1 + sum_k l_k / (l_k + gamma)`` and, for ``Q = V^T C``,

    RSS(gamma) = tr(C_tt) - sum_k (2 / (l_k + gamma) - l_k / (l_k + gamma)^2) ||q_k||^2

(:func:`ridge_gcv`), the trick scikit-learn's ``RidgeCV`` uses.

When the rows themselves are at hand, the exact leave-one-out residuals are
as cheap (:func:`ridge_loo`, :func:`kernel_ridge_loo`): for a linear smoother
``F = A(gamma) T`` the residual of row ``i`` left out is ``(t_i - f_i) / (1 -
A_ii)`` (Allen 1974; Hastie, Tibshirani & Friedman, *Elements of Statistical
Learning*, eq. 7.52), and one eigendecomposition gives ``F`` and ``diag(A)``
for every ``gamma``. GCV replaces every ``A_ii`` by their mean; that is exact
only when the leverages are equal, and far from it when ``p`` nears or exceeds
``n`` (the interpolating regime of wide random features, where GCV picks
penalties orders of magnitude too small).
"""

from __future__ import annotations

import math

import numpy as np

from solvers.backend import get_namespace_and_device, inplace
from solvers.linalg import weighted_moments

__all__ = ["GramStatistics", "kernel_ridge_loo", "ridge_gcv", "ridge_loo"]


class GramStatistics:
    """Streaming weighted means, centred scatter and cross-moments (float64).

    The rows are shifted by a reference point ``r`` (the first block's mean)
    before their products, and the sums ``A = sum_i w_i (h_i - r)(h_i - r)^T``
    are corrected once at the end: ``S = A - s (h - r)(h - r)^T`` with ``h``
    the mean. Since ``r`` is close to ``h`` the correction is small, so the
    subtraction loses nothing to cancellation (the shifted-data algorithm,
    Chan, Golub & LeVeque 1983), while each block's product runs in the
    features' precision (a float32 SYRK is twice as fast as float64) and is
    accumulated in float64.

    Attributes
    ----------
    weight_sum : float
        Sum of the sample weights seen (the sample count when unweighted).
    n_samples : int
    """

    def __init__(self):
        self.weight_sum = 0.0
        self.n_samples = 0
        self._has_targets = None
        self._shift = self._target_shift = None
        self._sum = self._outer = None
        self._target_sum = self._cross = self._target_squares = None
        self._widths = None  # zero-row slices of the first H and T: their widths and kind

    def update(self, H, T=None, sample_weight=None, *, block_rows=None):
        """Add the rows of ``H`` (and targets ``T``) with weights ``sample_weight``.

        Parameters
        ----------
        H : array of shape (n, p)
        T : array of shape (n, c), default=None
            Required on every call if given on the first one.
        sample_weight : array of shape (n,), default=None
            Non-negative; ones when None.
        block_rows : int, default=None
            Rows per block (bounds the temporaries to ``block_rows x p``);
            all rows at once when None.

        Returns
        -------
        self
        """
        xp, device = get_namespace_and_device(H)
        n = H.shape[0]
        if self._has_targets is None:
            self._has_targets = T is not None
            self._widths = (H[:0, :], None if T is None else T[:0, :])
        elif self._has_targets != (T is not None):
            raise ValueError("Targets must be given on every update or on none.")
        f64 = xp.float64
        block = n if block_rows is None else max(int(block_rows), 1)
        for start in range(0, n, block):
            stop = min(start + block, n)
            Hb, Tb = H[start:stop, :], None if T is None else T[start:stop, :]
            w = None if sample_weight is None else xp.astype(sample_weight[start:stop], f64)
            s_b = float(stop - start) if w is None else float(xp.sum(w))
            if self._shift is None:
                if s_b <= 0.0:
                    self.n_samples += stop - start
                    continue
                self._start(xp, device, Hb, Tb, w, s_b)
            Hc = Hb - xp.astype(self._shift, Hb.dtype)
            if w is not None:
                Hc = Hc * xp.astype(xp.sqrt(w), Hb.dtype)[:, None]
                self._sum = self._sum + xp.astype(xp.sqrt(w), Hc.dtype) @ Hc
            else:
                self._sum = self._sum + xp.sum(Hc, axis=0, dtype=f64)
            # the product in the features' precision (a SYRK for NumPy), summed in float64
            self._outer = inplace(xp, self._outer, "add", Hc.T @ Hc)
            if Tb is not None:
                Tc = xp.astype(Tb, f64) - self._target_shift
                if w is not None:
                    self._target_sum = self._target_sum + w @ Tc
                    Tc = Tc * xp.sqrt(w)[:, None]
                else:
                    self._target_sum = self._target_sum + xp.sum(Tc, axis=0)
                self._cross = inplace(xp, self._cross, "add", Hc.T @ xp.astype(Tc, Hc.dtype))
                self._target_squares = self._target_squares + xp.sum(Tc * Tc, axis=0)
            self.weight_sum += s_b
            self.n_samples += stop - start
        return self

    def _start(self, xp, device, Hb, Tb, w, s_b):
        f64 = xp.float64
        Hb64 = xp.astype(Hb, f64)
        shift = (xp.sum(Hb64, axis=0) if w is None else w @ Hb64) / s_b
        # rounded to the features' precision, so that ``h - shift`` is exact there
        self._shift = xp.astype(xp.astype(shift, Hb.dtype), f64)
        p = Hb.shape[1]
        self._sum = xp.zeros((p,), dtype=f64, device=device)
        self._outer = xp.zeros((p, p), dtype=f64, device=device)
        if Tb is not None:
            Tb64 = xp.astype(Tb, f64)
            self._target_shift = (xp.sum(Tb64, axis=0) if w is None else w @ Tb64) / s_b
            c = Tb.shape[1]
            self._target_sum = xp.zeros((c,), dtype=f64, device=device)
            self._cross = xp.zeros((p, c), dtype=f64, device=device)
            self._target_squares = xp.zeros((c,), dtype=f64, device=device)

    def _check(self):
        if self._shift is None:
            raise ValueError("No samples with positive weight have been added.")

    @property
    def mean(self):
        """Weighted mean of the rows, shape (p,)."""
        self._check()
        return self._shift + self._sum / self.weight_sum

    @property
    def scatter(self):
        """``sum_i w_i (h_i - mean)(h_i - mean)^T``, shape (p, p), symmetric."""
        self._check()
        d = self._sum / self.weight_sum
        S = self._outer - self.weight_sum * (d[:, None] * d[None, :])
        return (S + S.T) * 0.5

    @property
    def target_mean(self):
        """Weighted mean of the targets, shape (c,)."""
        self._check()
        return self._target_shift + self._target_sum / self.weight_sum

    @property
    def cross(self):
        """``sum_i w_i (h_i - mean)(t_i - target_mean)^T``, shape (p, c)."""
        self._check()
        d, e = self._sum / self.weight_sum, self._target_sum / self.weight_sum
        return self._cross - self.weight_sum * (d[:, None] * e[None, :])

    @property
    def target_scatter(self):
        """``sum_i w_i (t_i - target_mean)^2`` per target, shape (c,)."""
        self._check()
        e = self._target_sum / self.weight_sum
        return self._target_squares - self.weight_sum * e * e

    def covariance(self):
        """``scatter / weight_sum``."""
        return self.scatter / self.weight_sum

    def all_reduce(self, comm):
        """The statistics of every rank's rows together, as a new object (``self`` is kept).

        Each rank's centred sums are moved to the global means before they
        are summed (the pairwise update of Chan, Golub & LeVeque 1983):
        ``S = sum_r (S_r + s_r (h_r - h)(h_r - h)^T)`` with ``h = sum_r s_r
        h_r / s``, likewise the cross-moments and the targets' scatter, so no
        sum of raw squares cancels. Two all-reduces: the weight sums and
        weighted means (``p + c + 2`` floats), then the corrected sums
        (``p^2 + p c + c`` floats), after a one-integer check that every
        rank has called :meth:`update` (else a ValueError on every rank). A
        rank whose rows all have zero weight takes part with zeros; when the
        weights of all ranks sum to zero, the result has no statistics
        (``weight_sum`` 0) on every rank.

        Parameters
        ----------
        comm : solvers.distributed.Communicator
            All ranks call this with statistics of the same widths.

        Returns
        -------
        GramStatistics
            ``self`` for a single process; otherwise the totals (updating
            them further is allowed, but adds to all ranks' rows at once).
        """
        if not comm.distributed:
            return self
        missing = comm.all_reduce_sum(int(self._widths is None), "Checking the Gram statistics")
        if missing:
            raise ValueError(
                f"{missing} rank(s) of the process group have added no rows to their "
                "statistics; every rank needs at least one."
            )
        H0, T0 = self._widths
        xp, device = get_namespace_and_device(H0)
        f64 = xp.float64
        p, c = H0.shape[1], 0 if T0 is None else T0.shape[1]
        s = self.weight_sum
        if self._shift is None:  # only rows of zero weight here: zeros of the right widths
            mean, scatter = xp.zeros((p,), dtype=f64, device=device), 0.0
            t_mean, cross, t_scatter = xp.zeros((c,), dtype=f64, device=device), 0.0, 0.0
        else:
            mean, scatter = self.mean, self.scatter
            if self._has_targets:
                t_mean, cross, t_scatter = self.target_mean, self.cross, self.target_scatter
        parts = [xp.asarray([s, float(self.n_samples)], dtype=f64, device=device), s * mean]
        if self._has_targets:
            parts.append(s * t_mean)
        firsts = comm.all_reduce_sum(xp.concat(parts), "Summing the Gram statistics' means")
        total, n_total = float(firsts[0]), round(float(firsts[1]))
        out = GramStatistics()
        out.weight_sum, out.n_samples, out._has_targets = total, n_total, self._has_targets
        out._widths = self._widths
        if not total > 0.0:  # no weight anywhere: no statistics, on every rank
            out.weight_sum = 0.0
            return out
        g_mean = firsts[2 : 2 + p] / total
        d = mean - g_mean
        parts = [xp.reshape(scatter + s * (d[:, None] * d[None, :]), (-1,))]
        if self._has_targets:
            g_t_mean = firsts[2 + p :] / total
            e = t_mean - g_t_mean
            parts.append(xp.reshape(cross + s * (d[:, None] * e[None, :]), (-1,)))
            parts.append(t_scatter + s * e * e)
        sums = comm.all_reduce_sum(xp.concat(parts), "Summing the Gram statistics")
        out._shift, out._sum = g_mean, xp.zeros((p,), dtype=f64, device=device)
        out._outer = xp.reshape(sums[: p * p], (p, p))
        if self._has_targets:
            c = g_t_mean.shape[0]
            out._target_shift = g_t_mean
            out._target_sum = xp.zeros((c,), dtype=f64, device=device)
            out._cross = xp.reshape(sums[p * p : p * p + p * c], (p, c))
            out._target_squares = sums[p * p + p * c :]
        return out


def ridge_gcv(scatter, cross, target_scatter, n_samples, gammas):
    """GCV scores of ridge regression for every penalty in ``gammas`` from one ``eigh``.

    Parameters
    ----------
    scatter : array of shape (p, p)
        Centred scatter ``S`` of the features (sums, not means).
    cross : array of shape (p, c)
        Centred cross-moment ``C``.
    target_scatter : array of shape (c,)
        Centred sum of squares of each target.
    n_samples : int or float
        The effective number of samples (``n`` unweighted).
    gammas : sequence of float
        Absolute penalties, in the units of ``scatter``.

    Returns
    -------
    scores : list of float
        ``n RSS / (n - df)^2`` per ``gamma`` (lower is better; ``inf`` where
        ``df >= n``).
    eig : tuple (eigenvalues, eigenvectors)
        Reusable to solve ``W = V (l + gamma)^-1 V^T C``.
    """
    xp, _ = get_namespace_and_device(scatter)
    lam, V = xp.linalg.eigh((scatter + scatter.T) * 0.5)
    lam = xp.clip(lam, min=0.0)
    q2 = xp.sum((V.T @ cross) ** 2, axis=1)
    total = float(xp.sum(target_scatter))
    scores = []
    for g in gammas:
        inv = 1.0 / (lam + g)
        rss = total - float(xp.sum((2.0 * inv - lam * inv * inv) * q2))
        df = 1.0 + float(xp.sum(lam * inv))
        ok = df < n_samples
        scores.append(n_samples * max(rss, 0.0) / (n_samples - df) ** 2 if ok else math.inf)
    return scores, (lam, V)


def _loo_scores(U, lam, UtT, T, leverage0, weights, gammas, copies=None):
    """Mean squared leave-one-out residuals for every ``gamma`` of a spectral smoother.

    The smoother is ``F = U diag(lam / (lam + gamma)) U^T T`` on the rows of
    ``U`` (orthonormal columns), plus a fixed leverage ``leverage0`` per row
    (the intercept's); ``UtT = U^T T`` over all rows (which may be more than
    the rows of ``U`` scored here). ``weights`` (per scored row) weigh the
    squared residuals. A row standing for ``copies >= 1`` repeated rows
    (integer sample weights) is left out one copy at a time: its leverage is
    shared by the copies, so the residual is ``r / (1 - A_ii / copies)``.
    """
    xp, _ = get_namespace_and_device(U)
    U2 = U * U
    scores = []
    for g in gammas:
        shrink = lam / (lam + g)
        R = T - U @ (shrink[:, None] * UtT)
        leverage = U2 @ shrink + leverage0
        if copies is not None:
            leverage = leverage / copies
        # a row with leverage 1 is interpolated whatever it holds: no estimate
        slack = xp.clip(1.0 - leverage, min=1e-12)
        loo = xp.sum(R * R, axis=1) / (slack * slack)
        scores.append(float(weights @ loo))
    return scores


def ridge_loo(
    H, T, gammas, *, sample_weight=None, rows=None, moments=None, block_rows=None, comm=None
):
    """Exact leave-one-out errors of ridge regression with an intercept, for every penalty.

    For ``min sum_i w_i ||W^T h_i + b - t_i||^2 + gamma ||W||^2`` (weights
    ``w`` normalised to sum one, so ``gamma`` is in the units of the weighted
    covariance ``S = sum_i w_i (h_i - h)(h_i - h)^T``), the residual of row
    ``i`` left out is ``r_i / (1 - A_ii)`` with ``A_ii = w_i (1 + (h_i - h)^T
    (S + gamma I)^-1 (h_i - h))`` (module docstring). One ``eigh`` serves all
    penalties, in the cheaper of two forms:

    - ``p <= n``: ``S = V diag(l) V^T`` (p x p); a row's leverage and fit need
      only its own ``(h_i - h)^T V``, so ``rows`` may score a subset;
    - ``p > n``: the Gram matrix of the weighted, centred rows (n x n), the
      same non-zero spectrum (the dual, "kernel" form).

    Parameters
    ----------
    H : array of shape (n, p)
    T : array of shape (n, c)
    gammas : sequence of float
        Penalties in the units of the weighted covariance.
    sample_weight : array of shape (n,), default=None
        Non-negative; uniform when None. They count repetitions, as in
        scikit-learn: a row of weight ``w >= 1`` is left out one copy at a time
        (the scores equal those of the data with the row repeated ``w``
        times), a row of weight ``w <= 1`` whole.
    rows : array of int, default=None
        Rows whose leave-one-out residuals are scored (the primal form only;
        all rows when None): an unbiased estimate of the mean at a fraction of
        the cost (``len(rows) p^2`` instead of ``n p^2``).
    moments : tuple (mean, covariance), default=None
        The features' weighted mean (p,) and covariance (p, p) (the primal
        form; computed when None, by :func:`solvers.linalg.weighted_moments`).
        Given, the primal form holds no more than ``block_rows`` scored rows
        in float64 at a time.
    block_rows : int, default=None
        Bounds the primal form's temporaries to about ``block_rows x p``
        float64 entries (all scored rows at once when None).
    comm : solvers.distributed.Communicator, default=None
        Score the rows of every rank together (``rows`` and ``moments``:
        this rank's scored rows and the global moments). The primal form sums
        ``Q`` and the scores over the ranks; the dual form (``p`` above the
        total row count) gathers the rows, at most ``n x p < p^2`` floats.

    Returns
    -------
    scores : list of float
        The weighted mean squared leave-one-out residual (summed over the
        targets) per penalty; lower is better.
    """
    xp, device = get_namespace_and_device(H)
    f64 = xp.float64
    n, p = H.shape
    if comm is not None and comm.distributed:
        n_all = comm.all_reduce_sum(n, "Counting the rows of the leave-one-out scores")
        if p > n_all:  # the dual needs every row: gather them (fewer than p of them)
            gather = comm.all_gather_rows
            H, T = gather(H), gather(T)
            sample_weight = None if sample_weight is None else gather(sample_weight)
            return ridge_loo(H, T, gammas, sample_weight=sample_weight)
    else:
        comm, n_all = None, n
    copies = None
    if sample_weight is None:
        w = xp.full((n,), 1.0 / n_all, dtype=f64, device=device)
    else:
        w = xp.astype(sample_weight, f64)
        copies = xp.clip(w, min=1.0)
        w = w / (
            xp.sum(w)
            if comm is None
            else comm.all_reduce_sum(xp.sum(w), "Summing the leave-one-out weights")
        )
    T64 = xp.astype(T, f64)
    Tc = T64 - (
        w @ T64
        if comm is None
        else comm.all_reduce_sum(w @ T64, "Summing the targets' weighted mean")
    )
    if p > n_all:  # the dual: U spans the weighted rows, U^T T over all of them
        H64 = xp.astype(H, f64)
        Xw = xp.sqrt(w)[:, None] * (H64 - w @ H64)
        lam, U = xp.linalg.eigh(_symmetric(Xw @ Xw.T))
        Tw = xp.sqrt(w)[:, None] * Tc
        return _loo_scores(U, xp.clip(lam, min=0.0), U.T @ Tw, Tw, w, xp.ones_like(w), gammas,
                           copies)  # fmt: skip
    if moments is None:
        moments = weighted_moments(H, None if sample_weight is None else w, comm=comm)
    mean, S = moments
    lam, V = xp.linalg.eigh(S)  # reads one triangle
    lam = xp.clip(lam, min=0.0)
    # C = sum_i w_i (h_i - h)(t_i - t)^T = H^T (w * Tc): the weighted Tc sum to zero
    C = xp.astype(H.T @ xp.astype(w[:, None] * Tc, H.dtype), f64)
    Q = V.T @ (C if comm is None else comm.all_reduce_sum(C, "Summing the cross-moments"))
    if rows is None:
        rows = xp.arange(n, device=device)
    else:  # only the scored rows' weights and targets are kept
        rows = xp.asarray(rows, device=device)
        Tc, w = xp.take(Tc, rows, axis=0), xp.take(w, rows, axis=0)
        copies = None if copies is None else xp.take(copies, rows, axis=0)
    # the primal smoother in the spectral form: U = sqrt(w) Hc V / sqrt(l) on the scored
    # rows, a block of rows at a time; each row's squared residual carries its weight w_i
    scaled = xp.where(lam > 0.0, 1.0 / xp.sqrt(xp.where(lam > 0.0, lam, 1.0)), 0.0)
    QV, total = Q * scaled[:, None], float(xp.sum(w))
    if comm is not None:
        total = comm.all_reduce_sum(total, "Summing the scored rows' weights")
    m = rows.shape[0]
    # a block holds about four (rows x p) float64 arrays
    step = m if block_rows is None else max(int(block_rows) // 4, 1)
    scores = [0.0] * len(gammas)
    for a in range(0, m, step):
        b = min(a + step, m)
        root = xp.sqrt(w[a:b])[:, None]
        U = xp.astype(xp.take(H, rows[a:b], axis=0), f64) - mean
        U = (root * (U @ V)) * scaled[None, :]
        per_row = xp.full((b - a,), 1.0 / total, dtype=f64, device=device)
        part = _loo_scores(U, lam, QV, root * Tc[a:b, :], w[a:b], per_row, gammas,
                           None if copies is None else copies[a:b])  # fmt: skip
        scores = [x + y for x, y in zip(scores, part, strict=True)]
    if comm is not None:
        scores = comm.all_reduce_sum(np.asarray(scores), "Summing the leave-one-out scores")
        scores = [float(x) for x in scores]
    return scores


def kernel_ridge_loo(K, T, alphas):
    """Exact leave-one-out errors of kernel ridge regression ``(K + alpha I) a = T``.

    With ``K = U diag(l) U^T`` the fit is ``F = U diag(l / (l + alpha)) U^T T``
    and row ``i`` left out has the residual ``(t_i - f_i) / (1 - A_ii)``,
    ``A_ii = sum_k U_ik^2 l_k / (l_k + alpha)``: one ``eigh`` for every
    ``alpha`` (no intercept, as EigenPro's model has none).

    Parameters
    ----------
    K : array of shape (n, n)
        Symmetric positive semi-definite kernel matrix.
    T : array of shape (n, c)
    alphas : sequence of float
        Absolute penalties (the ``alpha`` of ``(K + alpha I) a = T``).

    Returns
    -------
    scores : list of float
        The mean squared leave-one-out residual (summed over targets) per ``alpha``.
    """
    xp, device = get_namespace_and_device(K)
    f64 = xp.float64
    lam, U = xp.linalg.eigh(_symmetric(xp.astype(K, f64)))
    lam = xp.clip(lam, min=0.0)
    T64 = xp.astype(T, f64)
    n = K.shape[0]
    uniform = xp.full((n,), 1.0 / n, dtype=f64, device=device)
    zero = xp.zeros((n,), dtype=f64, device=device)
    return _loo_scores(U, lam, U.T @ T64, T64, zero, uniform, alphas)


def _symmetric(A):
    return (A + A.T) * 0.5
