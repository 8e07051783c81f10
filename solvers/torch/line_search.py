# SPDX-License-Identifier: BSD-3-Clause
"""Moved to :mod:`solvers.torch.optim.line_search`; this module re-exports it.

>>> from solvers.torch.line_search import AdaSLS
>>> AdaSLS.__module__
'solvers.torch.optim.line_search'
"""

from solvers.linesearch.preconditioners import MOMENTA, PRECONDITIONERS
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
from solvers.torch.optim.trial import TrialEvaluator, average_over_ranks, distributed_group

# Private names kept importable for code written against the previous layout (not in __all__):
# _check_group, _rule
__all__ = [
    "LINE_SEARCHES",
    "MOMENTA",
    "PRECONDITIONERS",
    "SEARCH_KEYS",
    "SLS",
    "SPS",
    "AdaSLS",
    "LineSearchOptimizer",
    "TrialEvaluator",
    "average_over_ranks",
    "distributed_group",
]
