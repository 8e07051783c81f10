# SPDX-License-Identifier: BSD-3-Clause
"""Compatibility shim: pruning moved to :mod:`solvers.torch.sparse`.

Criteria and :func:`prune_at_init` are in :mod:`solvers.torch.sparse.pruning`,
:class:`GradualMagnitudePruning` in :mod:`~solvers.torch.sparse.gradual`,
:class:`LotteryTicket` in :mod:`~solvers.torch.sparse.lottery`, the isometry
restorations in :mod:`~solvers.torch.sparse.isometry`.
"""

from solvers.torch.sparse.gradual import GradualMagnitudePruning
from solvers.torch.sparse.isometry import _as_matrix, approximate_isometry_, orthogonalize_
from solvers.torch.sparse.lottery import LotteryTicket
from solvers.torch.sparse.pruning import (
    CRITERIA,
    _batches,
    _copy_selected,
    _selection,
    grasp_scores,
    magnitude_masks,
    masks_from_scores,
    prune_at_init,
    snip_scores,
    synflow_scores,
)

# Private names kept importable for code written against the previous layout (not in __all__):
# _as_matrix, _batches, _copy_selected, _selection
__all__ = [
    "CRITERIA",
    "GradualMagnitudePruning",
    "LotteryTicket",
    "approximate_isometry_",
    "grasp_scores",
    "magnitude_masks",
    "masks_from_scores",
    "orthogonalize_",
    "prune_at_init",
    "snip_scores",
    "synflow_scores",
]
