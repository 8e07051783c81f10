# SPDX-License-Identifier: BSD-3-Clause
"""Dynamical isometry of pruned weights.

- :func:`approximate_isometry_`: under a fixed mask, minimise
  ``||W_m W_m^T - gain^2 I||_F^2`` (Lee et al. 2020, "A signal propagation
  perspective for pruning neural networks at initialization", §5);
- :func:`orthogonalize_`: after structured pruning, the orthogonal factor of
  each weight's own QR (Wang et al. 2021, "Dynamical isometry: the missing
  ingredient for neural network pruning").
"""

from __future__ import annotations

import math

import torch

from solvers._validation import check_int
from solvers.torch.sparse.layers import select_layers

__all__ = ["approximate_isometry_", "orthogonalize_"]


def _as_matrix(w):
    return w.reshape(w.shape[0], -1)


def approximate_isometry_(model, masks, *, iterations=1000, lr=1e-3, gain=1.0):
    """Make the kept weights approximately orthogonal under a fixed mask, in place.

    Minimises ``||W_m W_m^T - gain^2 I||_F^2`` per layer (``W_m^T W_m`` when
    the layer has more rows than columns), ``W_m = M * W``, with Adam (Lee et
    al. 2020, §5).

    Parameters
    ----------
    model : torch.nn.Module
    masks : dict of str to bool Tensor
        Per weight (any of its names, tied weights included), its mask; the
        masked entries stay zero.
    iterations : int, default 1000
        Adam steps per layer.
    lr : float, default 1e-3
        Adam's learning rate.
    gain : float, default 1.0
        The target singular value.

    Returns
    -------
    dict of str to float
        The final residual ``||W_m W_m^T - gain^2 I||_F`` per layer.
    """
    n = check_int("iterations", iterations)
    params = dict(model.named_parameters(remove_duplicate=False))
    out = {}
    for k, m in masks.items():
        w = params[k]
        mask = m.to(w.dtype)
        x = (w.detach() * mask).clone().requires_grad_(True)
        opt = torch.optim.Adam([x], lr=lr)
        rows, cols = _as_matrix(x).shape
        eye = torch.eye(min(rows, cols), dtype=w.dtype, device=w.device) * gain**2
        for _ in range(n):
            opt.zero_grad()
            a = _as_matrix(x * mask)
            gram = a @ a.T if rows <= cols else a.T @ a
            loss = ((gram - eye) ** 2).sum()
            loss.backward()
            opt.step()
        with torch.no_grad():
            w.copy_(x * mask)
        out[k] = math.sqrt(float(loss.detach()))
    return out


def orthogonalize_(model, names=None, gain=1.0):
    """Replace dense weights by the orthogonal factor of their own QR, in place.

    For weights after *structured* pruning (rows or channels removed): per
    layer ``W = QR`` of the matrix (transposed when it is wide), ``Q diag(sign
    diag R)`` scaled by ``gain`` (Wang et al. 2021's "exact isometry based on
    existing weights"). It fills zeros, so do not use it on masked weights;
    :func:`approximate_isometry_` keeps a mask.
    """
    params = dict(model.named_parameters(remove_duplicate=False))
    targets = names if names is not None else list(select_layers(model))
    with torch.no_grad():  # a block, not a decorator: mutation testing reaches the function
        for k in targets:
            w = params[k]
            a = _as_matrix(w).double()
            wide = a.shape[0] < a.shape[1]
            q, r = torch.linalg.qr(a.T if wide else a)
            q = q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, 1.0)
            w.copy_((q.T if wide else q).reshape(w.shape).to(w.dtype) * gain)
