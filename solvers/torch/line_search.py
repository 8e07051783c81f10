# SPDX-License-Identifier: BSD-3-Clause
"""Moved to :mod:`solvers.torch.optim.line_search`; this module re-exports it.

>>> from solvers.torch.line_search import AdaSLS
>>> AdaSLS.__module__
'solvers.torch.optim.line_search'
"""

from solvers.linesearch.preconditioners import MOMENTA
from solvers.torch.optim.line_search import *  # noqa: F403
from solvers.torch.optim.line_search import (
    LINE_SEARCHES,
    SEARCH_KEYS,
    SLS,
    SPS,
    AdaSLS,
    LineSearchOptimizer,
    _check_group,
    _rule,
)

__all__ = [
    "LINE_SEARCHES",
    "MOMENTA",
    "SEARCH_KEYS",
    "SLS",
    "SPS",
    "AdaSLS",
    "LineSearchOptimizer",
    "_check_group",
    "_rule",
]
