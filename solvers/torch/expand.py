# SPDX-License-Identifier: BSD-3-Clause
"""Compatibility shim: ExpandNets moved to :mod:`solvers.torch.growth.expand`."""

from solvers.torch.growth.expand import (
    ExpandedConv2d,
    ExpandedLinear,
    _expandable_conv,
    contract,
    expand,
)

__all__ = ["ExpandedConv2d", "ExpandedLinear", "_expandable_conv", "contract", "expand"]
