# SPDX-License-Identifier: BSD-3-Clause
"""The data-driven defaults of the EigenPro estimators: bandwidth and ridge penalty.

``bandwidth="auto"`` and ``alpha="auto"`` are chosen together by the exact
leave-one-out error of kernel ridge regression ``(K + alpha I) a = Y`` on a
subsample of at most :data:`LOO_SUBSAMPLE` training rows
(:func:`solvers.ridge.kernel_ridge_loo`: one ``eigh`` of the subsample's
kernel matrix per bandwidth serves every penalty):

- bandwidths: the kernel's rule of thumb (a multiple of the root-mean-square
  distance between rows, :meth:`eigenpro.kernels.RadialKernel.default_bandwidth`)
  times :data:`BANDWIDTH_FACTORS`. The rule was calibrated on MNIST pixels,
  where it is close to the best; on a few standardised features it is too
  narrow (issue 20: R^2 0.29 against 0.49 on diabetes);
- penalties: :data:`RELATIVE_ALPHAS` times the mean of ``k(x, x)`` (1 for
  the radial kernels). ``(K + alpha I)`` is in the units of sums over the
  samples, which is the penalty of a fixed Gaussian-process prior: the one
  chosen on ``m`` rows carries to all ``n`` unchanged. The smallest candidate
  keeps the leverages away from 1, where the leave-one-out residual of an
  interpolating fit is numerically meaningless; EigenPro's own regulariser on
  large data, the finite number of epochs, is what the penalty replaces.

The subsample is drawn with a fixed seed: the choice depends on the data only.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from eigenpro.kernels import check_kernel_diagonal
from solvers.backend import get_namespace_and_device, to_namespace
from solvers.ridge import kernel_ridge_loo

__all__ = [
    "BANDWIDTH_FACTORS",
    "LOO_SUBSAMPLE",
    "RELATIVE_ALPHAS",
    "KernelChoice",
    "choose_kernel",
]

#: Rows of the subsample whose leave-one-out error picks the bandwidth and penalty.
LOO_SUBSAMPLE = 500

#: Multiples of the kernel's rule-of-thumb bandwidth tried by ``bandwidth="auto"``.
BANDWIDTH_FACTORS = tuple(2.0 ** (k / 2) for k in range(-2, 4))

#: Multiples of the mean ``k(x, x)`` tried by ``alpha="auto"``: 1e-3 ... 100.
RELATIVE_ALPHAS = tuple(10.0**e for e in range(-3, 3))


class KernelChoice(NamedTuple):
    """What :func:`choose_kernel` picked: the kernel (with its bandwidth) and ``alpha``.

    ``scores`` maps each ``(bandwidth, alpha)`` tried to its mean squared
    leave-one-out residual on the subsample (``bandwidth`` None for a kernel
    without one).
    """

    kernel: object
    alpha: float
    scores: dict


def choose_kernel(kernel, X, Y, *, search_bandwidth=True, alpha="auto", max_bytes=None):
    """The bandwidth and ridge penalty with the lowest leave-one-out error (module docstring).

    Parameters
    ----------
    kernel : eigenpro.kernels.Kernel
        The kernel; with ``search_bandwidth`` its bandwidth is the rule of
        thumb's multiples (it is kept as it is otherwise, or when it has none).
    X : array of shape (n, d)
    Y : array of shape (n, c)
        The targets the solver fits (one-hot codes for a classifier).
    search_bandwidth : bool, default=True
    alpha : "auto" or float, default="auto"
        A float is kept as it is.
    max_bytes : int, default=None
        Memory for the subsample's matrices (six ``m x m`` float64 arrays: the
        kernel matrix, the eigensolver's copies, workspace and eigenvectors):
        fewer rows than :data:`LOO_SUBSAMPLE` when it is small.

    Returns
    -------
    KernelChoice
    """
    xp, device = get_namespace_and_device(X)
    n = X.shape[0]
    m = min(n, LOO_SUBSAMPLE)
    if max_bytes is not None:
        m = min(m, max(int(math.sqrt(max_bytes / 48)), 50))
    rows = np.arange(n) if m == n else np.sort(np.random.default_rng(0).choice(n, m, replace=False))
    index = to_namespace(rows, xp, device)
    X_m, Y_m = xp.take(X, index, axis=0), xp.take(Y, index, axis=0)
    scores, best = {}, None
    for candidate in _candidate_kernels(kernel, X, search_bandwidth):
        K = candidate(X_m)
        check_kernel_diagonal(xp.linalg.diagonal(K))
        diagonal = float(xp.mean(xp.astype(xp.linalg.diagonal(K), xp.float64)))
        if isinstance(alpha, str):
            alphas = [a * (diagonal if diagonal > 0.0 else 1.0) for a in RELATIVE_ALPHAS]
        else:
            alphas = [float(alpha)]
        for a, score in zip(alphas, kernel_ridge_loo(K, Y_m, alphas), strict=True):
            scores[(getattr(candidate, "bandwidth", None), a)] = score
            if best is None or score < best[0]:
                best = (score, candidate, a)
    return KernelChoice(best[1], best[2], scores)


def _candidate_kernels(kernel, X, search_bandwidth):
    """The kernels to try: the given one, or the rule of thumb's multiples."""
    rule = kernel.default_bandwidth(X) if search_bandwidth else None
    if rule is None:  # kept as given, or a kernel without a bandwidth
        return [kernel]
    if not (math.isfinite(rule) and rule > 0.0):
        raise ValueError(
            f"bandwidth='auto' cannot be derived from X: the root-mean-square distance "
            f"between its rows is {rule!r} (values too large, or all rows equal). Scale X "
            "or pass a bandwidth."
        )
    return [kernel.with_bandwidth(rule * f) for f in BANDWIDTH_FACTORS]
