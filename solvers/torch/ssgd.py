# SPDX-License-Identifier: BSD-3-Clause
"""Compatibility shim: SSGD moved to :mod:`solvers.torch.sparse.ssgd`."""

from solvers.torch.sparse.ssgd import SSGD

__all__ = ["SSGD"]
