# SPDX-License-Identifier: BSD-3-Clause
"""The EigenPro preconditioner and the step-size rules derived from it.

Ma & Belkin, "Diving into the shallows" (NeurIPS 2017) and "Kernel machines that
adapt to GPUs for effective large batch training" (EigenPro 2.0, SysML 2019).

Gradient descent on the kernel least-squares problem ``K a = Y`` converges along
the i-th eigendirection of the normalized kernel operator ``K / n`` at a rate
proportional to its eigenvalue ``lambda_i``; for smooth kernels these decay
fast, so plain (S)GD fits only the top of the spectrum in reasonable time.
EigenPro replaces the gradient ``g`` by ``P g`` with

    P = I - sum_{i <= k} (1 - (lambda_{k+1} / lambda_i)^damping) e_i e_i^T,

which flattens the top ``k`` eigenvalues to (nearly) ``lambda_{k+1}``: the
largest eigenvalue of the preconditioned operator becomes
``lambda_1^(1 - damping) lambda_{k+1}^damping`` and the step size can grow by
the same factor. The eigenpairs come from a Nyström subsample ``S`` of size
``s``: the eigen-decomposition ``K_SS / s = U diag(lambda) U^T``. In the
coefficients of ``f = sum_j a_j k(., x_j)``, the correction touches only the
subsample's coefficients:

    a_S += (eta / m) V D V^T K_SB g_B,   V = U_k / sqrt(s),
    D = diag((1 - (lambda_{k+1} / lambda_i)^damping) / lambda_i).

Step size and batch size follow from three numbers (EigenPro 2.0, Sec. 3):
``beta = max_i k(x_i, x_i)``, the preconditioned top eigenvalue
``lambda~_1`` and the critical batch size ``m* = beta / lambda~_1``:
``eta = m / beta`` when ``m <= m*`` (linear scaling), and
``eta = 0.99 * 2 m / (beta + (m - 1) lambda~_1)`` beyond (saturation).

Ridge regularisation ``alpha`` (solving ``(K + alpha I) a = Y``) shifts the
operator's spectrum by ``alpha / n`` and the kernel's diagonal by ``alpha``.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

from eigenpro.kernels import check_kernel_diagonal
from solvers._validation import Interval, Options, StrOptions, validate_params
from solvers.backend import get_namespace_and_device
from solvers.linalg import top_eigensystem

__all__ = ["NystromPreconditioner", "step_size_for_batch"]

#: Never flatten more than this fraction of the subsample's spectrum: the
#: Nyström estimates of the eigenvalues degrade towards the tail.
MAX_COMPONENT_FRACTION = 0.25
#: The held-out calibration updates its ``h x h`` matrix in this many row
#: blocks, so that its temporaries stay at a few ``h / CALIBRATION_BLOCKS x h``.
CALIBRATION_BLOCKS = 8


def step_size_for_batch(batch_size, beta, top_eigenvalue):
    """EigenPro 2.0 step size for mini-batches of ``batch_size``.

    Parameters
    ----------
    batch_size : int
    beta : float
        ``max_i k(x_i, x_i)`` (plus the ridge ``alpha``).
    top_eigenvalue : float
        Largest eigenvalue of the (preconditioned) normalized kernel operator.

    Returns
    -------
    float
        ``m / beta`` up to the critical batch size ``beta / top_eigenvalue``,
        ``0.99 * 2 m / (beta + (m - 1) top_eigenvalue)`` beyond it.
    """
    m = float(batch_size)
    if m <= beta / top_eigenvalue:
        return m / beta
    return 0.99 * 2.0 * m / (beta + (m - 1.0) * top_eigenvalue)


class NystromPreconditioner:
    """EigenPro preconditioner built from a Nyström subsample.

    Parameters
    ----------
    n_components : int or "auto", default="auto"
        Number ``k`` of top eigendirections to flatten. ``"auto"`` picks the
        largest ``k <= MAX_COMPONENT_FRACTION * s`` whose critical batch size
        ``beta / lambda~_1(k)`` stays within ``max_batch_size``.
    damping : float, default=0.95
        Exponent in (0, 1]; 1 flattens the top ``k`` eigenvalues exactly onto
        ``lambda_{k+1}``. Below 1 keeps a margin against the subsample's
        estimation error (all EigenPro reference code uses 0.95).

    Attributes
    ----------
    n_components_ : int
        Number of flattened eigendirections ``k``.
    eigenvalues_ : array of shape (k + 1,)
        Top eigenvalues of the normalized operator, ridge shift included.
    beta_ : float
        ``max k(x, x)`` over the subsample, plus ``alpha``.
    top_eigenvalue_ : float
        ``lambda_1`` of the normalized operator.
    preconditioned_eigenvalue_ : float
        ``lambda~_1 = lambda_1^(1 - damping) lambda_{k+1}^damping``.
    critical_batch_size_ : float
        ``beta_ / preconditioned_eigenvalue_``.
    """

    def __init__(self, n_components="auto", damping=0.95):
        self.n_components = n_components
        self.damping = damping

    def fit(self, K_ss, *, n_train, alpha=0.0, max_batch_size=None, dtype=None):
        """Eigen-decompose the subsample block and build the correction.

        Parameters
        ----------
        K_ss : array of shape (s, s)
            Kernel matrix of the subsample.
        n_train : int
            Number of training points ``n`` (for the ridge shift).
        alpha : float, default=0.0
            Ridge regularisation.
        max_batch_size : int, default=None
            Upper bound on the critical batch size for ``n_components="auto"``
            (default ``n_train``).
        dtype : dtype, default=None
            Dtype of the stored correction (default ``K_ss.dtype``).

        Returns
        -------
        self
        """
        xp, _ = get_namespace_and_device(K_ss)
        s = K_ss.shape[0]
        # scikit-learn's Interval refuses an empty range [0, 0]: a 1-point subsample has k = 0
        counts = Interval(Integral, 0, s - 1, closed="both") if s > 1 else Options(Integral, {0})
        validate_params(
            {
                "n_components": [StrOptions({"auto"}), counts],
                "damping": [Interval(Real, 0.0, 1.0, closed="right")],
            },
            {"n_components": self.n_components, "damping": self.damping},
            "NystromPreconditioner",
        )
        dtype = K_ss.dtype if dtype is None else dtype
        diag = xp.linalg.diagonal(K_ss)
        check_kernel_diagonal(diag)
        self.beta_ = float(xp.max(diag)) + alpha
        k_cap = int(MAX_COMPONENT_FRACTION * s)
        if self.n_components != "auto":
            k_cap = int(self.n_components)
        # eigenpairs of K_ss, then scaled: no (s, s) copy of K_ss / s next to the eigensolver's
        values, vectors = top_eigensystem(K_ss, k_cap + 1)
        values = values / s + alpha / n_train
        host = [float(v) for v in values]
        if host[0] <= 0.0:
            raise ValueError(
                "The kernel matrix of the subsample has no positive eigenvalue: the "
                "bandwidth is too small, or the kernel is degenerate (or not positive "
                "semi-definite) for this data."
            )
        floor = host[0] * 1e-12  # guard against a numerically zero tail
        host = [max(v, floor) for v in host]
        if self.n_components == "auto":
            cap = float(max_batch_size or n_train)
            # At least one direction when there is one: a kernel dominated by
            # its top eigenvalue (a huge bandwidth) has a critical batch of
            # ~1 without it, i.e. noisy single-point SGD.
            k = min(1, len(host) - 1)
            for j in range(2, len(host)):
                if self.beta_ / self._tilde(host, j) > cap:
                    break
                k = j
        else:
            k = k_cap
        self.n_components_ = k
        self.eigenvalues_ = values[: k + 1]
        self.top_eigenvalue_ = host[0]
        self.preconditioned_eigenvalue_ = self._tilde(host, k)
        self.critical_batch_size_ = self.beta_ / self.preconditioned_eigenvalue_
        self.subsample_size_ = s
        # Correction factors: V = U_k / sqrt(s), VD = V diag(D).
        lam = xp.where(values[:k] > floor, values[:k], xp.full_like(values[:k], floor))
        tail = host[k]
        scale = (1.0 - (tail / xp.where(lam > tail, lam, tail)) ** self.damping) / lam
        V = vectors[:, :k] / math.sqrt(s)
        self._V = xp.astype(V, dtype)
        self._VD = xp.astype(V * scale[None, :], dtype)
        return self

    def calibrate(self, K_hh, K_hs, *, n_train, alpha=0.0, overwrite=False):
        """Re-estimate ``lambda~_1`` on held-out points; keep the larger estimate.

        The flattened spectrum estimated on the subsample itself is optimistic:
        eigenvalues of ``K_SS / s`` deep in the spectrum underestimate the
        operator's, and with them the step-size rule would sit beyond the
        stability limit (measured: MNIST 10k, s = 2000, k = 500 diverges
        slowly). On ``h`` points not in the subsample, the preconditioned
        operator ``P C_h`` has the eigenvalues of

            (K_hh - K_hS V D V^T K_Sh) / h,

        whose largest is an honest estimate of ``lambda~_1``. The diagonal is
        left out (and the scale is ``h - 1``): it holds ``k(x_i, x_i)``, not
        samples of the operator, and would add up to ``beta / h``.

        Parameters
        ----------
        K_hh : array of shape (h, h)
            Kernel matrix of the held-out points.
        K_hs : array of shape (h, s)
            Kernel between held-out points and the subsample.
        n_train : int
        alpha : float, default=0.0
        overwrite : bool, default=False
            Work in ``K_hh`` itself when it is float64 (its contents are then
            lost): saves the one ``h x h`` copy this method otherwise makes.

        Returns
        -------
        self
        """
        xp, device = get_namespace_and_device(K_hh)
        h = K_hh.shape[0]
        f64 = xp.float64
        M = xp.astype(K_hh, f64, copy=not overwrite)
        if self.n_components_ > 0:
            P = xp.astype(K_hs, f64) @ xp.astype(self._V, f64)
            PD = xp.astype(K_hs, f64) @ xp.astype(self._VD, f64)
        # M = sym(K_hh - PD P^T) without its diagonal, built in row blocks so that
        # no (h, h) temporary exists beside M, only blocks of `step` rows.
        step = -(-h // CALIBRATION_BLOCKS)
        for a in range(0, h, step):
            b = min(a + step, h)
            if self.n_components_ > 0:
                M[a:b, :] = M[a:b, :] - PD[a:b, :] @ P.T
        for a in range(0, h, step):
            b = min(a + step, h)
            # the lower triangle (columns < b) of rows a:b, from the not yet
            # symmetrised upper triangle (rows < b, columns a:b; rows < a untouched)
            lower = (M[a:b, :b] + xp.permute_dims(M[:b, a:b], (1, 0))) * 0.5
            off = xp.arange(b - a, device=device)[:, None] + a != xp.arange(b, device=device)
            M[a:b, :b] = xp.where(off, lower, xp.zeros_like(lower))
        for a in range(0, h, step):  # mirror the lower triangle upwards
            b = min(a + step, h)
            M[:a, a:b] = xp.permute_dims(M[a:b, :a], (1, 0))
        held_out = float(xp.max(xp.linalg.eigvalsh(M))) / max(h - 1, 1) + alpha / n_train
        self.held_out_eigenvalue_ = held_out
        if held_out > self.preconditioned_eigenvalue_:
            self.preconditioned_eigenvalue_ = held_out
            self.critical_batch_size_ = self.beta_ / held_out
        return self

    def _tilde(self, host_values, k):
        return host_values[0] ** (1.0 - self.damping) * host_values[k] ** self.damping

    def correction(self, K_sb_T_g):
        """``V D V^T h`` for ``h = K_SB g`` (shape (s, l)); the a_S update direction."""
        if self.n_components_ == 0:
            return None
        return self._VD @ (self._V.T @ K_sb_T_g)
