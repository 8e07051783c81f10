# SPDX-License-Identifier: BSD-3-Clause
"""Minibatch objectives of generalized linear models, with a cheap line restriction.

``f(w) = 1/b sum_i loss(x_i . w, y_i) + alpha/2 ||w||^2`` over a minibatch
``(X, y)``. Along a search direction ``d`` the margins are affine in the step,
``X (w - eta d) = z - eta u`` with ``z = X w`` (already computed for the
gradient) and ``u = X d``, so once ``u`` is known (one matrix-vector product)
every trial step costs O(b) instead of a full O(b p) forward pass.
"""

from __future__ import annotations

import array_api_compat

from solvers._validation import check_positive
from solvers.backend import get_namespace_and_device

LOSSES = ("logistic", "squared")


class GLMObjective:
    """Mean loss of a linear model on a minibatch, for :func:`solvers.minimize`.

    Parameters
    ----------
    loss : {"logistic", "squared"}
        ``"logistic"``: ``log(1 + exp(-y z))`` with labels ``y`` in {-1, +1};
        ``"squared"``: ``(z - y)^2 / 2``.
    alpha : float, default=0.0
        L2 penalty ``alpha/2 ||w||^2``.

    Notes
    -----
    Called as ``objective(w, X, y) -> (f, g)`` it is an ordinary
    value-and-gradient function; :func:`solvers.minimize` recognises it and
    evaluates trial steps with :meth:`restrict_to_line`.
    """

    def __init__(self, loss="logistic", alpha=0.0):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}.")
        self.loss = loss
        self.alpha = check_positive("alpha", alpha, strict=False)

    def __repr__(self):
        return f"GLMObjective(loss={self.loss!r}, alpha={self.alpha!r})"

    def check_data(self, w, X, y):
        """Raise ``ValueError`` unless ``(w, X, y)`` is a problem this objective can evaluate.

        ``X`` 2-D with one row per label, ``y`` 1-D, ``w`` of length
        ``X.shape[1]``, all finite, and logistic labels in {-1, +1} (labels
        {0, 1} would silently fit another model).
        """
        xp, _ = get_namespace_and_device(X, y, w)  # a sparse X is named there
        if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
            raise ValueError(
                f"GLMObjective needs data (X, y) with X 2-D and y 1-D of as many rows; got "
                f"shapes {tuple(X.shape)} and {tuple(y.shape)}."
            )
        if tuple(w.shape) != (X.shape[1],):
            raise ValueError(
                f"x0 must have shape ({X.shape[1]},) to match X; got {tuple(w.shape)}."
            )
        for name, a in (("X", X), ("y", y)):
            if not bool(xp.all(xp.isfinite(a))):
                raise ValueError(f"{name} holds NaN or infinity.")
        if self.loss == "logistic" and not bool(xp.all(xp.abs(y) == 1)):
            raise ValueError("logistic labels y must be -1 or +1 (map {0, 1} with 2 y - 1).")

    def _mean_loss(self, z, y, xp):
        if self.loss == "logistic":
            return xp.mean(xp.logaddexp(xp.zeros_like(z), -y * z))
        r = z - y
        return 0.5 * xp.mean(r * r)

    def _dloss(self, z, y, xp):
        if self.loss == "logistic":
            # -y * sigmoid(-y z), computed as exp(-log(1 + exp(y z))) without overflow
            return -y * xp.exp(-xp.logaddexp(xp.zeros_like(z), y * z))
        return z - y

    def value_grad_margins(self, w, X, y):
        """``(f, g, z)`` at ``w`` with the margins ``z = X w``."""
        xp = array_api_compat.array_namespace(w, X)
        z = X @ w
        f = self._mean_loss(z, y, xp)
        g = (self._dloss(z, y, xp) @ X) / z.shape[0]
        if self.alpha:
            f = f + 0.5 * self.alpha * xp.vecdot(w, w)
            g = g + self.alpha * w
        return f, g, z

    def __call__(self, w, X, y):
        f, g, _ = self.value_grad_margins(w, X, y)
        return f, g

    def value(self, w, X, y):
        """The loss alone (one matrix-vector product)."""
        return self.value_grad_margins(w, X, y)[0]

    def restrict_to_line(self, w, d, X, y, z):
        """``phi(eta) = f(w - eta d)`` as a function of the step, O(b) per call.

        Costs one product ``u = X d`` up front.
        """
        xp = array_api_compat.array_namespace(w, X)
        u = X @ d
        if self.alpha:
            ww, wd, dd = (float(xp.vecdot(a, b)) for a, b in ((w, w), (w, d), (d, d)))

        def phi(eta):
            f = float(self._mean_loss(z - eta * u, y, xp))
            if self.alpha:
                f += 0.5 * self.alpha * (ww - 2.0 * eta * wd + eta * eta * dd)
            return f

        return phi
