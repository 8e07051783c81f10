# SPDX-License-Identifier: BSD-3-Clause
"""Sparse training, pruning and export, attached to any ``torch.optim`` optimizer.

One concept per module:

- :mod:`~solvers.torch.sparse.layers`: :func:`select_layers`, which weights are sparse;
- :mod:`~solvers.torch.sparse.densities`: :func:`layer_densities`, :func:`erk_densities`;
- :mod:`~solvers.torch.sparse.topk`: exact-count masks (:func:`top_k_mask`, random, global);
- :mod:`~solvers.torch.sparse.controller`: :class:`MaskedTraining` (the step hooks) and
  :class:`StaticSparsity`, with :mod:`~solvers.torch.sparse.amp`,
  :mod:`~solvers.torch.sparse.distributed` (mask broadcast) and
  :mod:`~solvers.torch.sparse.optimizer_state` as its helpers;
- :mod:`~solvers.torch.sparse.dynamic`: :class:`DynamicSparsity` (SET, RigL, momentum);
- :mod:`~solvers.torch.sparse.pruning` (SNIP, GraSP, SynFlow, magnitude),
  :mod:`~solvers.torch.sparse.gradual` (:class:`GradualMagnitudePruning`),
  :mod:`~solvers.torch.sparse.lottery` (:class:`LotteryTicket`),
  :mod:`~solvers.torch.sparse.isometry`;
- :mod:`~solvers.torch.sparse.ssgd`: :class:`SSGD`;
- :mod:`~solvers.torch.sparse.export`: dense, CSR and ``torch.nn.utils.prune`` copies;
- :mod:`~solvers.torch.sparse.seeding`: the ``(seed, step)``-keyed generator.
"""

from solvers.torch.sparse.controller import MaskedTraining, StaticSparsity
from solvers.torch.sparse.densities import erk_densities, layer_densities
from solvers.torch.sparse.dynamic import DropSchedule, DynamicSparsity
from solvers.torch.sparse.export import (
    SparseLinear,
    export_dense,
    export_sparse,
    from_torch_prune,
    to_torch_prune,
)
from solvers.torch.sparse.gradual import GradualMagnitudePruning
from solvers.torch.sparse.isometry import approximate_isometry_, orthogonalize_
from solvers.torch.sparse.layers import select_layers
from solvers.torch.sparse.lottery import LotteryTicket
from solvers.torch.sparse.pruning import magnitude_masks, masks_from_scores, prune_at_init
from solvers.torch.sparse.ssgd import SSGD
from solvers.torch.sparse.topk import top_k_mask

__all__ = [
    "SSGD",
    "DropSchedule",
    "DynamicSparsity",
    "GradualMagnitudePruning",
    "LotteryTicket",
    "MaskedTraining",
    "SparseLinear",
    "StaticSparsity",
    "approximate_isometry_",
    "erk_densities",
    "export_dense",
    "export_sparse",
    "from_torch_prune",
    "layer_densities",
    "magnitude_masks",
    "masks_from_scores",
    "orthogonalize_",
    "prune_at_init",
    "select_layers",
    "to_torch_prune",
    "top_k_mask",
]
