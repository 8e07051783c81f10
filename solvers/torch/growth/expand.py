# SPDX-License-Identifier: BSD-3-Clause
"""ExpandNets: train linear layers as products of linear layers, contract exactly.

Guo, Alvarez & Salzmann (2020), "ExpandNets: linear over-parameterization to
train compact convolutional networks", §3:

- ``Linear(m, n)`` -> ``Linear(m, r m) . Linear(r m, r n) . Linear(r n, n)``
  (ExpandNet-FC), contracted by ``W = W3 W2 W1``,
  ``b = W3 (W2 b1 + b2) + b3``;
- ``Conv2d(m, n, k, stride s, padding p)`` -> ``1x1(m, r m, padding p)``,
  ``k x k(r m, r n, stride s, padding 0)``, ``1x1(r n, n)`` (ExpandNet-CL),
  contracted by ``W[o, i] = sum_{a, b} W3[o, b] W2[b, a] W1[a, i]`` and
  ``b = W3 (sum_{a,u,v} W2[:, a, u, v] b1[a] + b2) + b3`` (exact at the
  borders too: padded zeros pass the first 1x1 conv as ``b1``).

There is no nonlinearity inside an expanded block, so an expanded network
and its contraction compute the same function; the expansion only changes
the training dynamics. :func:`expand` builds freshly initialised blocks (it
is for training from scratch: a trained layer's weights are not kept, and
weight ties are not preserved). Grouped, dilated and non-zero-padding-mode convolutions
and ``k = 1`` kernels are left as they are.
"""

from __future__ import annotations

import torch
from torch import nn

from solvers._validation import check_int

__all__ = ["ExpandedConv2d", "ExpandedLinear", "contract", "expand"]


class ExpandedLinear(nn.Sequential):
    """Three ``Linear`` layers standing for one ``Linear(in_features, out_features)``."""

    def __init__(self, in_features, out_features, ratio=4, bias=True, device=None, dtype=None):
        kw = dict(device=device, dtype=dtype)
        super().__init__(
            nn.Linear(in_features, ratio * in_features, bias=bias, **kw),
            nn.Linear(ratio * in_features, ratio * out_features, bias=bias, **kw),
            nn.Linear(ratio * out_features, out_features, bias=bias, **kw),
        )
        self.in_features, self.out_features, self.ratio = in_features, out_features, ratio

    @torch.no_grad()
    def contract(self):
        """The equivalent ``Linear``."""
        l1, l2, l3 = self
        W = l3.weight @ l2.weight @ l1.weight
        out = nn.Linear(
            self.in_features,
            self.out_features,
            bias=l1.bias is not None,
            device=W.device,
            dtype=W.dtype,
        )
        out.weight.copy_(W)
        if l1.bias is not None:
            out.bias.copy_(l3.weight @ (l2.weight @ l1.bias + l2.bias) + l3.bias)
        return out


class ExpandedConv2d(nn.Sequential):
    """1x1, k x k, 1x1 convolutions standing for one ``Conv2d`` (ExpandNet-CL)."""

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        bias=True,
        ratio=4,
        device=None,
        dtype=None,
    ):
        kw = dict(device=device, dtype=dtype)
        super().__init__(
            nn.Conv2d(in_channels, ratio * in_channels, 1, padding=padding, bias=bias, **kw),
            nn.Conv2d(
                ratio * in_channels,
                ratio * out_channels,
                kernel_size,
                stride=stride,
                bias=bias,
                **kw,
            ),
            nn.Conv2d(ratio * out_channels, out_channels, 1, bias=bias, **kw),
        )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ratio = ratio

    @torch.no_grad()
    def contract(self):
        """The equivalent ``Conv2d``."""
        c1, c2, c3 = self
        W1 = c1.weight[:, :, 0, 0]  # (r m, m)
        W3 = c3.weight[:, :, 0, 0]  # (n, r n)
        W = torch.einsum("ob,bauv,ai->oiuv", W3, c2.weight, W1)
        out = nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            bias=c1.bias is not None,
            device=W.device,
            dtype=W.dtype,
        )
        out.weight.copy_(W)
        if c1.bias is not None:
            inner = torch.einsum("bauv,a->b", c2.weight, c1.bias) + c2.bias
            out.bias.copy_(W3 @ inner + c3.bias)
        return out


def _expandable_conv(m):
    return (
        type(m) is nn.Conv2d
        and m.groups == 1
        and m.dilation == (1, 1)
        and m.padding_mode == "zeros"
        and m.kernel_size != (1, 1)
        and isinstance(m.padding, tuple)
    )


def expand(model, ratio=4, *, linear=True, conv=True):
    """Replace ``Linear`` and ``Conv2d`` layers by expanded blocks, in place.

    Parameters
    ----------
    model : torch.nn.Module
    ratio : int, default 4
        The expansion ``r``.
    linear, conv : bool, default True
        Which layer types to expand.

    Returns
    -------
    torch.nn.Module
        ``model``, or the block itself when ``model`` is a single layer.
    """
    ratio = check_int("ratio", ratio)

    def convert(m):
        if linear and type(m) is nn.Linear:
            return ExpandedLinear(
                m.in_features,
                m.out_features,
                ratio,
                m.bias is not None,
                device=m.weight.device,
                dtype=m.weight.dtype,
            )
        if conv and _expandable_conv(m):
            return ExpandedConv2d(
                m.in_channels,
                m.out_channels,
                m.kernel_size,
                m.stride,
                m.padding,
                m.bias is not None,
                ratio,
                device=m.weight.device,
                dtype=m.weight.dtype,
            )
        return None

    top = convert(model)
    if top is not None:
        return top
    for name, child in list(model.named_children()):
        block = convert(child)
        if block is not None:
            setattr(model, name, block)
        elif not isinstance(child, ExpandedLinear | ExpandedConv2d):
            expand(child, ratio, linear=linear, conv=conv)
    return model


def contract(model):
    """Fold every expanded block back into one layer, in place; returns the model."""
    if isinstance(model, ExpandedLinear | ExpandedConv2d):
        return model.contract()
    for name, child in list(model.named_children()):
        if isinstance(child, ExpandedLinear | ExpandedConv2d):
            setattr(model, name, child.contract())
        else:
            contract(child)
    return model
