# SPDX-License-Identifier: BSD-3-Clause
"""Compatibility shim: the mask core moved to :mod:`solvers.torch.sparse`.

Layer selection is in :mod:`solvers.torch.sparse.layers`, densities in
:mod:`~solvers.torch.sparse.densities`, exact-count masks in
:mod:`~solvers.torch.sparse.topk`, the controller in
:mod:`~solvers.torch.sparse.controller` (with :mod:`~solvers.torch.sparse.amp`,
:mod:`~solvers.torch.sparse.distributed` and
:mod:`~solvers.torch.sparse.optimizer_state`).
"""

from solvers.torch.sparse.amp import amp_grad_scale, amp_step_skipped
from solvers.torch.sparse.controller import MaskedTraining, StaticSparsity
from solvers.torch.sparse.densities import (
    active_count,
    check_density,
    erk_densities,
    layer_densities,
)
from solvers.torch.sparse.distributed import SYNC_CHUNK as _SYNC_CHUNK
from solvers.torch.sparse.layers import DEFAULT_LAYER_TYPES, select_layers
from solvers.torch.sparse.layers import NEVER_SPARSE as _NEVER
from solvers.torch.sparse.optimizer_state import ZERO_PRESERVING, zero_optimizer_state_
from solvers.torch.sparse.seeding import step_generator as _generator
from solvers.torch.sparse.topk import (
    bottom_k_mask,
    global_top_k_masks,
    layer_top_k_masks,
    random_masks,
    top_k_mask,
)

# Private names kept importable for code written against the previous layout (not in __all__):
# _NEVER, _SYNC_CHUNK, _generator
__all__ = [
    "DEFAULT_LAYER_TYPES",
    "ZERO_PRESERVING",
    "MaskedTraining",
    "StaticSparsity",
    "active_count",
    "amp_grad_scale",
    "amp_step_skipped",
    "bottom_k_mask",
    "check_density",
    "erk_densities",
    "global_top_k_masks",
    "layer_densities",
    "layer_top_k_masks",
    "random_masks",
    "select_layers",
    "top_k_mask",
    "zero_optimizer_state_",
]
