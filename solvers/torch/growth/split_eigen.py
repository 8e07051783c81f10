# SPDX-License-Identifier: BSD-3-Clause
"""Extreme eigenpairs of the splitting matrices ``S_j = X^T diag(C_j) X / n``.

Exact (``eigh`` of each ``d x d`` matrix) for small ``d``, or a batched
Lanczos iteration with full reorthogonalisation over all neurons at once,
whose matrix-vector products ``S v = X^T (c * (X v)) / n`` never form ``S``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["SplitEigen", "eigen_of", "exact_eigen", "lanczos_eigen"]


@dataclass
class SplitEigen:
    """Extreme eigenpairs of one layer's splitting matrices (one row per neuron)."""

    lambda_min: torch.Tensor
    v_min: torch.Tensor
    lambda_max: torch.Tensor
    v_max: torch.Tensor


def eigen_of(S):
    """Extreme eigenpairs of a stack of symmetric matrices (finite, else ValueError)."""
    _check_finite(S)
    vals, vecs = torch.linalg.eigh(0.5 * (S + S.transpose(1, 2)))
    return SplitEigen(vals[:, 0], vecs[:, :, 0], vals[:, -1], vecs[:, :, -1])


def exact_eigen(X, C, n):
    m, d = C.shape[1], X.shape[1]
    S = torch.empty(m, d, d, dtype=X.dtype, device=X.device)
    for j in range(m):
        S[j] = (X * C[:, j : j + 1]).T @ X / n
    return eigen_of(S)


def lanczos_eigen(X, C, n, steps, seed):
    """Extreme eigenpairs of ``S_j = X^T diag(C_j) X / n`` for all ``j`` at once."""
    m, d = C.shape[1], X.shape[1]
    k = min(steps, d)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    q = torch.randn(m, d, generator=gen, dtype=X.dtype).to(X.device)
    q = q / q.norm(dim=1, keepdim=True)
    Q = torch.zeros(k, m, d, dtype=X.dtype, device=X.device)
    alpha = torch.zeros(m, k, dtype=X.dtype, device=X.device)
    beta = torch.zeros(m, k, dtype=X.dtype, device=X.device)
    for i in range(k):
        Q[i] = q
        w = ((X @ q.T) * C).T @ X / n
        alpha[:, i] = (w * q).sum(1)
        for _ in range(2):  # full reorthogonalisation, twice is enough
            coef = torch.einsum("kmd,md->km", Q[: i + 1], w)
            w = w - torch.einsum("km,kmd->md", coef, Q[: i + 1])
        b = w.norm(dim=1)
        beta[:, i] = b
        if i + 1 < k:
            tiny = b <= 1e-12 * alpha[:, : i + 1].abs().amax(1).clamp_min(1e-300)
            fresh = torch.randn(m, d, generator=gen, dtype=X.dtype).to(X.device)
            for _ in range(2):
                coef = torch.einsum("kmd,md->km", Q[: i + 1], fresh)
                fresh = fresh - torch.einsum("km,kmd->md", coef, Q[: i + 1])
            w = torch.where(tiny[:, None], fresh, w)
            beta[:, i] = torch.where(tiny, torch.zeros_like(b), b)
            q = w / w.norm(dim=1, keepdim=True)
    T = (
        torch.diag_embed(alpha)
        + torch.diag_embed(beta[:, :-1], 1)
        + torch.diag_embed(beta[:, :-1], -1)
    )
    _check_finite(T)
    vals, vecs = torch.linalg.eigh(T)
    ritz = torch.einsum("kmd,mkj->mjd", Q, vecs)
    v_min = ritz[:, 0] / ritz[:, 0].norm(dim=1, keepdim=True)
    v_max = ritz[:, -1] / ritz[:, -1].norm(dim=1, keepdim=True)
    return SplitEigen(vals[:, 0], v_min, vals[:, -1], v_max)


def _check_finite(S):
    """``eigh`` of a matrix with NaN/inf fails with a LAPACK error that names no cause."""
    if not torch.isfinite(S).all():
        raise ValueError(
            "the splitting matrices hold NaN or inf (non-finite data or gradients, or an "
            "overflow of X^T diag(C) X): their eigenpairs are undefined"
        )
