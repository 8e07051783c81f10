# SPDX-License-Identifier: BSD-3-Clause
"""Shared numeric core of convergent.

- :mod:`solvers.backend`: array namespace and device resolution (NumPy, CuPy,
  torch; CPU or GPU) through ``array-api-compat``, moving arrays, dtypes, memory
  budgets and block sizes, in-place element-wise helpers.
- :mod:`solvers.linalg`: linear algebra shared by the solvers (top eigensystem
  of a symmetric PSD matrix, blocked matrix products).

CuPy and torch are imported lazily: importing :mod:`solvers` needs neither.
"""

from solvers.backend import (
    available_memory,
    get_namespace_and_device,
    resolve_memory_budget,
    rows_per_block,
    to_namespace,
    to_numpy,
)
from solvers.linalg import blocked_matmul, top_eigensystem

__all__ = [
    "available_memory",
    "blocked_matmul",
    "get_namespace_and_device",
    "resolve_memory_budget",
    "rows_per_block",
    "to_namespace",
    "to_numpy",
    "top_eigensystem",
]
