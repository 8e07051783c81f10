# SPDX-License-Identifier: BSD-3-Clause
"""Moved to :mod:`solvers.linesearch.minimize`; this module re-exports it.

>>> from solvers.stochastic import minimize
>>> minimize.__module__
'solvers.linesearch.minimize'
"""

from solvers.glm import GLMObjective
from solvers.linesearch.minimize import *  # noqa: F403
from solvers.linesearch.minimize import _batches, _take, minimize

# Private names kept importable for code written against the previous layout (not in __all__):
# _batches, _take
__all__ = ["GLMObjective", "minimize"]
