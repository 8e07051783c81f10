# SPDX-License-Identifier: BSD-3-Clause
"""Shared numeric core of convergent.

- :mod:`solvers.backend`: array namespace and device resolution (NumPy, CuPy,
  torch; CPU or GPU) through ``array-api-compat``, moving arrays, dtypes, memory
  budgets and block sizes, in-place element-wise helpers.
- :mod:`solvers.linalg`: linear algebra shared by the solvers (top eigensystem
  of a symmetric PSD matrix, blocked matrix products).
- :mod:`solvers.linesearch`: step-size rules (fixed, Armijo, Goldstein,
  Polyak), the search settings, diagonal preconditioners (AdaGrad, AMSGrad)
  and momentum, and :func:`minimize` for stochastic objectives on arrays
  (the old modules ``step_size``, ``adaptive``, ``stochastic`` re-export them);
  :mod:`solvers.glm`: GLM minibatch objectives with a cheap line restriction.
- :mod:`solvers.torch`: the same optimizers as ``torch.optim`` optimizers
  (:mod:`solvers.torch.optim`).

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
from solvers.glm import GLMObjective
from solvers.linalg import blocked_matmul, top_eigensystem
from solvers.linesearch.minimize import minimize

__all__ = [
    "GLMObjective",
    "available_memory",
    "blocked_matmul",
    "get_namespace_and_device",
    "minimize",
    "resolve_memory_budget",
    "rows_per_block",
    "to_namespace",
    "to_numpy",
    "top_eigensystem",
]
