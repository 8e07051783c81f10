# SPDX-License-Identifier: BSD-3-Clause
"""Linear algebra shared by the solvers, written once against the Array API."""

from __future__ import annotations

import contextlib
import logging
import math

from solvers.backend import (
    get_namespace_and_device,
    namespace_kind,
    to_namespace,
    to_numpy,
)

logger = logging.getLogger("solvers")

#: Largest order a NumPy/SciPy Cholesky factorisation runs on several BLAS threads
#: (see :func:`cholesky_threads`).
THREADED_CHOLESKY_MAX = 12000

__all__ = [
    "blocked_matmul",
    "check_squares_summable",
    "cho_solve",
    "cholesky",
    "cholesky_threads",
    "generalized_procrustes",
    "polar",
    "solve_triangular",
    "stiefel_quadratic",
    "top_eigensystem",
    "weighted_moments",
]


def check_squares_summable(A, name, terms, remedy="scale them"):
    """Raise a ValueError naming ``name`` when a sum of ``terms`` squares of its entries overflows.

    Gram matrices, squared distances and mean squared errors sum products of
    entries: ``max |a| <= sqrt(max_float / terms)`` keeps them finite (about
    ``1e154 / sqrt(terms)`` in float64). Finite values beyond it would fail
    later as a NaN kernel or a non-positive-definite matrix, which says
    nothing about the cause. The extremes are two reductions (no ``|A|``
    temporary).
    """
    xp, _ = get_namespace_and_device(A)
    if A.shape[0] == 0 or (A.ndim > 1 and A.shape[1] == 0):
        return
    largest = max(float(xp.max(A)), -float(xp.min(A)))
    limit = math.sqrt(float(xp.finfo(A.dtype).max) / max(terms, 1))
    if largest > limit:
        raise ValueError(
            f"{name} holds values too large: max |{name}| = {largest:.3g}, above {limit:.3g}, "
            f"where a sum of {terms} squares overflows {A.dtype}; {remedy}."
        )


def top_eigensystem(A, n_components=None):
    """Top eigenpairs of a symmetric positive semi-definite matrix.

    The full spectrum is computed by a dense symmetric eigensolver in float64
    (LAPACK/cuSOLVER ``syevd`` through ``xp.linalg.eigh``), then the largest
    ``n_components`` eigenpairs are returned in descending order. A dense
    divide-and-conquer ``eigh`` is both faster and more reliable here than
    iterative solvers: on a 2000 x 2000 Gaussian Nyström block it takes about
    1.5 s on two CPU cores, while ``torch.lobpcg`` for the top third of the
    spectrum does not finish in minutes and ``scipy.linalg.eigh`` restricted to a
    subset (``syevr``) takes 20 s (measurements in the project's EigenPro notes).
    Float64 matters because the spectra of smooth kernels decay over many orders
    of magnitude (lambda_min / lambda_1 ~ 1e-5 on MNIST); in float32 the tail
    comes back negative or wrong.

    Parameters
    ----------
    A : array of shape (n, n)
        Symmetric positive semi-definite matrix, any array-API namespace.
        Only its lower triangle's symmetric part ``(A + A.T) / 2`` is used.
    n_components : int, default=None
        Number of leading eigenpairs to return; all when None.

    Returns
    -------
    eigenvalues : array of shape (n_components,)
        Descending, clipped at zero (rounding makes the tail of a PSD matrix
        slightly negative), float64 (float32 on devices without float64).
    eigenvectors : array of shape (n, n_components)
        Orthonormal columns matching ``eigenvalues``.
    """
    xp, device = get_namespace_and_device(A)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"top_eigensystem needs a square matrix; got shape {tuple(A.shape)}.")
    n = A.shape[0]
    k = n if n_components is None else int(n_components)
    if not 0 <= k <= n:
        raise ValueError(f"n_components must be in [0, {n}]; got {n_components}.")
    dtype = xp.float64
    # Apple GPUs only: not run (so not mutated) on the test machines
    if namespace_kind(xp) == "torch" and getattr(device, "type", "") == "mps":  # pragma: no mutate
        dtype = xp.float32  # pragma: no cover, no mutate - no float64 on Apple GPUs
    A64 = xp.astype(A, dtype)
    A64 = (A64 + A64.T) * 0.5
    if not _all_finite(xp, A64):
        raise FloatingPointError(
            "top_eigensystem: the matrix has NaN or infinite entries (for a kernel "
            "matrix: check the kernel function and the data)."
        )
    values, vectors = xp.linalg.eigh(A64)  # ascending
    if not (_all_finite(xp, values) and _all_finite(xp, vectors)):
        # A LAPACK divide-and-conquer run that failed without an error (seen
        # rarely with threaded OpenBLAS): redo it with SciPy's QR-based driver.
        import scipy.linalg

        logger.warning("eigh returned non-finite values; retrying with scipy driver 'ev'")
        host_values, host_vectors = scipy.linalg.eigh(to_numpy(A64), driver="ev")
        values = to_namespace(host_values, xp, device)
        vectors = to_namespace(host_vectors, xp, device)
        if not (_all_finite(xp, values) and _all_finite(xp, vectors)):
            raise FloatingPointError("top_eigensystem: the eigensolver returned non-finite values.")
    values = xp.flip(values)[:k]
    vectors = xp.flip(vectors, axis=1)[:, :k]
    values = xp.where(values > 0, values, xp.zeros_like(values))
    return values, vectors


def _all_finite(xp, a):
    return bool(xp.all(xp.isfinite(a)))


def blocked_matmul(row_block, n_rows, V, block_rows, out=None):
    """``M @ V`` where the rows of ``M`` are produced block by block.

    Only one block of rows of ``M`` exists at a time, so the product of an
    implicit matrix (a kernel matrix, say) with ``V`` needs memory for
    ``block_rows`` rows of ``M`` and for the result, never for ``M``.

    Parameters
    ----------
    row_block : callable
        ``row_block(start, stop)`` returns rows ``start:stop`` of ``M`` as an
        array of shape ``(stop - start, V.shape[0])``.
    n_rows : int
        Number of rows of ``M``.
    V : array of shape (n_cols,) or (n_cols, k)
    block_rows : int
        Rows of ``M`` per block.
    out : array of shape (n_rows, k), default=None
        Where to write the result.

    Returns
    -------
    array of shape (n_rows,) or (n_rows, k)
    """
    xp, device = get_namespace_and_device(V)
    vector = V.ndim == 1
    V2 = V[:, None] if vector else V
    if out is None:
        out = xp.empty((n_rows, V2.shape[1]), dtype=V.dtype, device=device)
    block_rows = max(int(block_rows), 1)
    for start in range(0, n_rows, block_rows):
        stop = min(start + block_rows, n_rows)
        block = to_namespace(row_block(start, stop), xp, device)
        out[start:stop, :] = block @ V2
    return out[:, 0] if vector else out


# --------------------------------------------------------------------------- #
# ridge solves and Stiefel-manifold steps (closed-form layers and heads)
# --------------------------------------------------------------------------- #
def solve_triangular(L, B, *, lower=True, transpose=False):
    """Solve ``L X = B`` (or ``L^T X = B`` with ``transpose``) for triangular ``L``.

    The Array API has no triangular solve; this uses LAPACK ``trtrs`` through
    SciPy for NumPy, ``torch.linalg.solve_triangular`` and
    ``cupyx.scipy.linalg.solve_triangular``, and a general solve elsewhere.
    """
    xp, _ = get_namespace_and_device(L)
    kind = namespace_kind(xp)
    if kind == "numpy":
        import scipy.linalg

        return scipy.linalg.solve_triangular(
            L, B, lower=lower, trans=1 if transpose else 0, check_finite=False
        )
    if kind == "torch":
        import torch

        A = L.mT if transpose else L
        return torch.linalg.solve_triangular(A, B, upper=lower == transpose)
    if kind == "cupy":  # pragma: no cover, no mutate block - needs a GPU
        import cupyx.scipy.linalg

        return cupyx.scipy.linalg.solve_triangular(L, B, lower=lower, trans=1 if transpose else 0)
    return xp.linalg.solve(L.T if transpose else L, B)


@contextlib.contextmanager
def cholesky_threads(xp, p):
    """BLAS threads for a Cholesky factorisation of order ``p`` in namespace ``xp``.

    OpenBLAS's threaded ``dpotrf`` crashes the process (a segfault) from
    ``p`` ~ 16000 on two threads, in the builds NumPy and SciPy bundle (seen
    2026-12 on an x86-64 Linux machine); on one thread it is safe. Above
    :data:`THREADED_CHOLESKY_MAX` the block runs with one BLAS thread
    (``threadpoolctl``, which scikit-learn depends on); smaller orders, torch
    and CuPy are left as they are.
    """
    if namespace_kind(xp) != "numpy" or p <= THREADED_CHOLESKY_MAX:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def cholesky(G, *, jitter=1e-10):
    """Lower Cholesky factor of a symmetric positive definite matrix, with a clear error.

    On failure the factorisation is retried once with ``jitter * trace(G) / p``
    added to the diagonal (rounding can make a PSD Gram matrix indefinite).
    """
    xp, device = get_namespace_and_device(G)
    p = G.shape[0]
    try:
        with cholesky_threads(xp, p):
            L = xp.linalg.cholesky(G)
        if _all_finite(xp, L):
            return L
    except Exception:  # LAPACK errors differ across libraries
        pass
    shift = jitter * float(xp.sum(xp.linalg.diagonal(G))) / max(p, 1)
    try:
        with cholesky_threads(xp, p):
            L = xp.linalg.cholesky(G + shift * xp.eye(p, dtype=G.dtype, device=device))
        if _all_finite(xp, L):
            return L
    except Exception:
        pass
    raise FloatingPointError(
        "The Gram matrix is not positive definite (NaN/inf in the data, or a ridge "
        "penalty of 0 on rank-deficient features); use a positive alpha."
    )


def cho_solve(L, B):
    """``G^-1 B`` from the lower Cholesky factor ``L`` of ``G``."""
    return solve_triangular(L, solve_triangular(L, B, lower=True), lower=True, transpose=True)


def polar(A):
    """Orthonormal polar factor ``U V^T`` of ``A = U S V^T`` (thin SVD), shape of ``A``.

    The closest matrix with orthonormal columns to ``A`` in Frobenius norm
    (the orthogonal Procrustes solution, Schönemann 1966); needs
    ``A.shape[0] >= A.shape[1]``.
    """
    xp, _ = get_namespace_and_device(A)
    U, _, Vt = xp.linalg.svd(A, full_matrices=False)
    return U @ Vt


def generalized_procrustes(L, C):
    """``argmax tr(W^T C)`` subject to ``W^T G W = I`` with ``G = L L^T``.

    With ``Q = L^T W`` the constraint becomes ``Q^T Q = I`` and the objective
    ``tr(Q^T L^-1 C)``, maximised by the polar factor of ``L^-1 C``; so
    ``W = L^-T polar(L^-1 C)``. Minimises ``tr(W^T G W) - 2 tr(W^T C)`` on the
    generalised ("flexible") Stiefel manifold, since the first term is
    constant there (Zhang, Jiao, Zhang, Li, TPAMI 2023: the decision layer of
    the manifold neural network).
    """
    if L.shape[0] < C.shape[1]:
        raise ValueError(
            f"The Stiefel constraint W^T G W = I needs at least as many features as outputs; "
            f"got {L.shape[0]} features for {C.shape[1]} outputs."
        )
    return solve_triangular(L, polar(solve_triangular(L, C, lower=True)), transpose=True)


def stiefel_quadratic(A, B, W0=None, *, max_iter=200, tol=1e-10, eta=None):
    """Minimise ``tr(W^T A W) - 2 tr(W^T B)`` over ``W^T W = I`` by generalized power iteration.

    GPI (Nie, Zhang, Li 2017, "A generalized power iteration method for
    solving quadratic problem on the Stiefel manifold"): with
    ``eta >= lambda_max(A)`` and ``Ã = eta I - A`` (PSD), iterate
    ``W <- polar(2 Ã W + 2 B)``. Each step maximises the linearisation of the
    concave ``tr(W^T Ã W) + 2 tr(W^T B)``, so the objective never increases.

    Parameters
    ----------
    A : array of shape (p, p)
        Symmetric.
    B : array of shape (p, c), ``p >= c``
    W0 : array of shape (p, c), default=None
        Start (default: ``polar(B)``).
    max_iter : int
    tol : float
        Stop when the objective decreases by less than ``tol`` times its scale.
    eta : float, default=None
        Upper bound on ``lambda_max(A)``; default from ``eigvalsh``.

    Returns
    -------
    W : array of shape (p, c)
    objectives : list of float
        Objective after each iteration (non-increasing up to rounding).
    """
    xp, device = get_namespace_and_device(A)
    p, c = B.shape
    if p < c:
        raise ValueError(f"W^T W = I needs p >= c; got B of shape {tuple(B.shape)}.")
    if eta is None:
        eta = float(xp.max(xp.linalg.eigvalsh(A)))
    eta = max(eta, 0.0) * (1.0 + 1e-12) + 1e-300
    A_tilde = eta * xp.eye(p, dtype=A.dtype, device=device) - A
    W = polar(B) if W0 is None else W0

    def objective(W):
        return float(xp.sum(W * (A @ W)) - 2.0 * xp.sum(W * B))

    objectives = [objective(W)]
    scale = abs(eta) * c + float(xp.sum(xp.abs(B)))
    for _ in range(int(max_iter)):
        W = polar(2.0 * (A_tilde @ W) + 2.0 * B)
        objectives.append(objective(W))
        if objectives[-2] - objectives[-1] <= tol * scale:
            break
    return W, objectives[1:]


def weighted_moments(H, weights, *, block_rows=None, comm=None):
    """Weighted mean and centred Gram matrix of the rows of ``H``, in float64.

    ``mean = sum_i w_i h_i`` and ``G = sum_i w_i (h_i - mean)(h_i - mean)^T /
    sum_i w_i``, accumulated block by block of ``block_rows`` rows by
    :class:`solvers.ridge.GramStatistics` (each block centred in float64, its
    product in the features' precision, the sum in float64).

    Parameters
    ----------
    H : array of shape (n, p)
    weights : array of shape (n,) or None
        Non-negative, with a positive sum; uniform when None.
    block_rows : int, default=None
        Rows per block (default: all).
    comm : solvers.distributed.Communicator, default=None
        The moments of every rank's rows together
        (:meth:`solvers.ridge.GramStatistics.all_reduce`); ``weights`` are
        then this rank's share of weights that may sum to one over all ranks.

    Returns
    -------
    mean : array of shape (p,), float64
    G : array of shape (p, p), float64
    """
    from solvers.ridge import GramStatistics

    stats = GramStatistics().update(H, sample_weight=weights, block_rows=block_rows)
    if comm is not None:
        stats = stats.all_reduce(comm)
    return stats.mean, stats.covariance()
