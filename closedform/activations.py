# SPDX-License-Identifier: BSD-3-Clause
"""Invertible activations for closed-form layers.

A hidden layer is fitted by ridge regression toward a target *pre-activation*
``sigma^-1(H*)``, so its activation must be invertible on its range. Each
activation carries its forward map (in place), its inverse, and its range, into
which a back-projected target is squashed before the inverse:

============  ==============================  ====================  ==========
name          sigma(z)                         sigma^-1(h)           range
============  ==============================  ====================  ==========
sigmoid       1 / (1 + exp(-z))                log(h / (1 - h))      (0, 1)
tanh          tanh(z)                          atanh(h)              (-1, 1)
softplus      log(1 + exp(z))                  log(expm1(h))         (0, inf)
leaky_relu    max(z, 0.01 z)                   min(h, 100 h)         R
identity      z                                h                     R
============  ==============================  ====================  ==========

ReLU is rejected: it maps every negative pre-activation to 0, so a target of 0
has no unique pre-image (and a negative target none).
"""

from __future__ import annotations

import numpy as np

from solvers.backend import get_namespace_and_device, inplace, map_row_chunks_

__all__ = ["ACTIVATIONS", "Activation", "get_activation"]

LEAKY_SLOPE = 0.01


class Activation:
    """An invertible element-wise activation (see the module table).

    Parameters
    ----------
    name : str
    lower, upper : float
        The open range of the activation (``-inf``/``inf`` when unbounded).
    """

    def __init__(self, name, lower, upper):
        self.name = name
        self.lower = lower
        self.upper = upper

    def __repr__(self):
        return f"Activation({self.name!r})"

    def forward_(self, Z):
        """``sigma(Z)``, computed in place where the library allows; returns the result."""
        xp, _ = get_namespace_and_device(Z)
        if self.name == "identity":
            return Z
        if self.name == "leaky_relu":
            return xp.where(Z >= 0, Z, LEAKY_SLOPE * Z)
        if self.name == "tanh":
            return inplace(xp, Z, "tanh")

        def chunk_(U, start, stop):
            if self.name == "sigmoid":  # 1 / (1 + exp(-z)), chained in place
                U = inplace(xp, U, "negative")
                with np.errstate(over="ignore"):  # exp(-z) = inf gives sigma = 0 exactly
                    U = inplace(xp, U, "exp")
                U = inplace(xp, U, "add", 1.0)
                return inplace(xp, U, "reciprocal")
            # softplus: max(z, 0) + log1p(exp(-|z|)), stable for large |z|
            pos = xp.clip(U, min=0.0)
            U = inplace(xp, U, "abs")
            U = inplace(xp, U, "negative")
            U = inplace(xp, U, "exp")
            U = inplace(xp, U, "log1p")
            return inplace(xp, U, "add", pos)

        if isinstance(Z, np.ndarray):
            map_row_chunks_(chunk_, Z)
            return Z
        return chunk_(Z, 0, Z.shape[0])

    def inverse(self, H):
        """``sigma^-1(H)`` for ``H`` strictly inside the range (a new array)."""
        xp, _ = get_namespace_and_device(H)
        if self.name == "identity":
            return H
        if self.name == "leaky_relu":
            return xp.where(H >= 0, H, H / LEAKY_SLOPE)
        if self.name == "tanh":
            return 0.5 * (xp.log1p(H) - xp.log1p(-H))
        if self.name == "sigmoid":
            return xp.log(H) - xp.log1p(-H)
        return H + xp.log(-xp.expm1(-H))  # softplus: log(e^h - 1) = h + log(1 - e^-h)

    def squash(self, H, eps):
        """Clip ``H`` into the closed range shrunk by ``eps`` (times its width when bounded).

        Bounded ranges ``(a, b)`` become ``[a + eps (b - a), b - eps (b - a)]``;
        a half-line ``(a, inf)`` becomes ``[a + eps, inf)``; unbounded ranges
        are left alone.
        """
        xp, _ = get_namespace_and_device(H)
        lo, hi = self.lower, self.upper
        if lo == -float("inf") and hi == float("inf"):
            return H
        if hi == float("inf"):
            return xp.clip(H, min=lo + eps)
        width = hi - lo
        return xp.clip(H, min=lo + eps * width, max=hi - eps * width)


ACTIVATIONS = {
    "sigmoid": Activation("sigmoid", 0.0, 1.0),
    "tanh": Activation("tanh", -1.0, 1.0),
    "softplus": Activation("softplus", 0.0, float("inf")),
    "leaky_relu": Activation("leaky_relu", -float("inf"), float("inf")),
    "identity": Activation("identity", -float("inf"), float("inf")),
}


def get_activation(name):
    """The :class:`Activation` called ``name``, with a clear error for non-invertible ones."""
    if isinstance(name, Activation):
        return name
    if name == "relu":
        raise ValueError(
            "activation='relu' is not invertible: every negative pre-activation maps to 0, "
            "so a hidden target cannot be pulled back through it. Use 'leaky_relu' "
            "(exactly invertible), 'softplus' (a smooth ReLU), 'sigmoid' or 'tanh'."
        )
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}; got {name!r}.")
    return ACTIVATIONS[name]
