# SPDX-License-Identifier: BSD-3-Clause
"""Backward targets: what a hidden layer's output should have been.

Layer ``l + 1`` maps ``H_l`` (n x d) to ``H_l W + 1 b^T`` (``W`` d x k). Given a
target ``T`` for that map, the backward step asks for the ``H`` that would have
produced it, ``H W ~ G`` with ``G = T - 1 b^T``, in one of three closed forms:

- ``"pinv"``, the manifold network's "low-rank backward approximation"
  (Zhang, Jiao, Zhang, Li, TPAMI 2023): the minimum-norm least-squares
  solution ``H* = G W^+``, regularised as ``G (W^T W + eps I)^-1 W^T``. Its
  rank is at most ``k``: directly below a c-output head the hidden targets
  collapse to rank ``c`` (measured in the project's notes: accuracy drops).
- ``"proximal"`` (the default): ``H* = argmin ||H W - G||^2 + mu ||H - H_l||^2
  = H_l + (G - H_l W)(W^T W + mu I)^-1 W^T`` (push-through identity), which
  corrects the current representation only in the row space of ``W`` and
  keeps the rest: the activation update of the ADMM trainer of Taylor et al.
  (ICML 2016). ``mu`` is relative, ``mu * ||W||_F^2 / d``.
- ``"adjoint"`` (the authors' code): ``H* = G W^T``, exact only when ``W^T W =
  I``.

The small ``k x k`` system is solved in float64; the ``n x d`` products run in
the features' precision.
"""

from __future__ import annotations

from solvers.backend import get_namespace_and_device
from solvers.linalg import cho_solve, cholesky

__all__ = ["BACKWARD_MODES", "backward_target"]

BACKWARD_MODES = ("proximal", "pinv", "adjoint")

#: Relative regularisation of the pseudo-inverse: ``eps = PINV_EPS * ||W||_F^2 / k``.
PINV_EPS = 1e-8


def backward_target(mode, T, W, b, H, *, mu=1.0):
    """Target for the layer output ``H`` (n x d) from a target ``T`` (n x k) of ``H W + b``.

    Parameters
    ----------
    mode : {"proximal", "pinv", "adjoint"}
    T : array of shape (n, k)
    W : array of shape (d, k), float64
    b : array of shape (k,), float64
    H : array of shape (n, d)
        The current layer output (the proximal centre).
    mu : float
        Relative proximal weight (``"proximal"`` only): ``mu * ||W||_F^2 / d``.

    Returns
    -------
    H_star : array of shape (n, d), in the dtype of ``H``
    """
    if mode not in BACKWARD_MODES:
        raise ValueError(f"backward must be one of {BACKWARD_MODES}; got {mode!r}.")
    xp, device = get_namespace_and_device(H)
    dtype = H.dtype
    d, k = W.shape
    G = xp.astype(T, xp.float64) - b
    Wt = xp.astype(W.T, dtype)
    if mode == "adjoint":
        return xp.astype(G, dtype) @ Wt
    norm2 = float(xp.sum(W * W))
    eye = xp.eye(k, dtype=xp.float64, device=device)
    if mode == "pinv":
        K = W.T @ W + (PINV_EPS * norm2 / k + 1e-300) * eye
        return xp.astype(cho_solve(cholesky(K), G.T).T, dtype) @ Wt
    R = G - xp.astype(H @ xp.astype(W, dtype), xp.float64)
    K = W.T @ W + (mu * norm2 / d + 1e-300) * eye
    return H + xp.astype(cho_solve(cholesky(K), R.T).T, dtype) @ Wt
