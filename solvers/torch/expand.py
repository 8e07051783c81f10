# SPDX-License-Identifier: BSD-3-Clause
"""Compatibility shim: ExpandNets moved to :mod:`solvers.torch.growth.expand`."""

from solvers.torch.growth.expand import (
    ExpandedConv2d,
    ExpandedLinear,
    _expandable_conv,
    contract,
    expand,
)

# Private names kept importable for code written against the previous layout (not in __all__):
# _expandable_conv
__all__ = ["ExpandedConv2d", "ExpandedLinear", "contract", "expand"]
