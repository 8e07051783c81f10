# SPDX-License-Identifier: BSD-3-Clause
"""Compatibility shim: dynamic sparse training moved to :mod:`solvers.torch.sparse.dynamic`."""

from solvers.torch.sparse.dynamic import GROW, DropSchedule, DynamicSparsity

__all__ = ["GROW", "DropSchedule", "DynamicSparsity"]
