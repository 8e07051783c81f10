# SPDX-License-Identifier: BSD-3-Clause
"""Which layers of a ``Sequential`` can split their neurons.

Splitting needs a smooth activation (its second derivative enters the
splitting matrix) between a ``Linear`` and the next ``Linear``, or between a
``Conv2d`` (``groups=1``) and the next ``Conv2d`` or ``Flatten -> Linear``,
with only dropout, identities or (for convolutions) average pooling in
between; see :mod:`solvers.torch.growth.splitting`.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["REQUIREMENT", "check_splittable", "second_derivative", "splittable_layers"]


def second_derivative(module):
    """``sigma''(z)`` of an element-wise activation module."""
    if isinstance(module, nn.Tanh):
        return lambda z: -2.0 * torch.tanh(z) * (1.0 - torch.tanh(z) ** 2)
    if isinstance(module, nn.Sigmoid):

        def sig2(z):
            s = torch.sigmoid(z)
            return s * (1.0 - s) * (1.0 - 2.0 * s)

        return sig2
    if isinstance(module, nn.Softplus):
        beta = module.beta

        def softplus2(z):
            s = torch.sigmoid(beta * z)
            return beta * s * (1.0 - s)

        return softplus2
    if isinstance(module, nn.SiLU):

        def silu2(z):
            s = torch.sigmoid(z)
            return s * (1.0 - s) * (2.0 + z * (1.0 - 2.0 * s))

        return silu2
    if isinstance(module, nn.GELU) and module.approximate == "none":

        def gelu2(z):
            pdf = torch.exp(-0.5 * z * z) / (2.0 * torch.pi) ** 0.5
            return pdf * (2.0 - z * z)

        return gelu2
    return None


_PASS_THROUGH = (nn.Dropout, nn.Identity)
#: channel-wise modules allowed between a Conv2d's activation and the next layer
_CHANNEL_PASS_THROUGH = (nn.Dropout2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
_WEIGHTED = (nn.Linear, nn.Conv2d)
REQUIREMENT = (
    "a Linear followed by a smooth activation (Tanh, Sigmoid, Softplus, SiLU, exact GELU) "
    "and then a Linear, or a Conv2d (groups=1) followed by a smooth activation, optional "
    "average pooling, and a Conv2d or Flatten -> Linear; ReLU has a zero second "
    "derivative (use Softplus), max pooling is not smooth (use AvgPool2d), and "
    "BatchNorm may not sit in between"
)


def _next_layer(mods, i):
    """``(activation index, next layer index)`` when ``mods[i]`` is splittable, else None."""
    m = mods[i]
    conv = type(m) is nn.Conv2d
    if not (type(m) is nn.Linear or (conv and m.groups == 1)):
        return None
    j, act, flat = i + 1, None, False
    while j < len(mods) and type(mods[j]) not in _WEIGHTED:
        mj = mods[j]
        if act is None and second_derivative(mj) is not None:
            act = j
        elif isinstance(mj, _PASS_THROUGH):
            pass
        elif not conv or act is None or flat:
            return None
        elif isinstance(mj, nn.Flatten) and mj.start_dim == 1 and mj.end_dim == -1:
            flat = True
        elif not isinstance(mj, _CHANNEL_PASS_THROUGH):
            return None
        j += 1
    if act is None or j == len(mods):
        return None
    nxt = mods[j]
    if not conv:
        ok = type(nxt) is nn.Linear
    elif flat:
        ok = type(nxt) is nn.Linear and nxt.in_features % m.out_channels == 0
    else:
        ok = type(nxt) is nn.Conv2d and nxt.groups == 1 and nxt.in_channels == m.out_channels
    return (act, j) if ok else None


def splittable_layers(model):
    """``{index: (activation index, next layer index)}`` of a ``Sequential``.

    A ``Linear`` is splittable when a smooth activation follows it and the
    next ``Linear`` is reached through ``Dropout`` or ``Identity`` only; a
    ``Conv2d`` (``groups=1``) when a smooth activation follows it and then,
    through dropout or average pooling, a ``Conv2d`` or ``Flatten`` and a
    ``Linear``.
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"neuron splitting needs a torch.nn.Sequential, got {type(model).__name__}")
    mods = list(model)
    out = {}
    for i in range(len(mods)):
        found = _next_layer(mods, i)
        if found is not None:
            out[i] = found
    return out


def check_splittable(model, layers):
    found = splittable_layers(model)
    if layers is None:
        if not found:
            raise ValueError(f"no splittable layer: splitting needs {REQUIREMENT}")
        return found
    out = {}
    for i in layers:
        if i not in found:
            mods = list(model)
            what = type(mods[i]).__name__ if 0 <= i < len(mods) else "out of range"
            raise ValueError(f"layer {i} ({what}) is not splittable: it must be {REQUIREMENT}")
        out[i] = found[i]
    return out
