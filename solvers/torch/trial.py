# SPDX-License-Identifier: BSD-3-Clause
"""Moved to :mod:`solvers.torch.optim.trial`; this module re-exports it."""

from solvers.torch.optim.trial import *  # noqa: F403
from solvers.torch.optim.trial import (
    _DISABLED,
    TrialEvaluator,
    _backward_disabled,
    _buffers_frozen,
    _noop_backward,
    average_over_ranks,
    distributed_group,
)

# Private names kept importable for code written against the previous layout (not in __all__):
# _DISABLED, _backward_disabled, _buffers_frozen, _noop_backward
__all__ = ["TrialEvaluator", "average_over_ranks", "distributed_group"]
