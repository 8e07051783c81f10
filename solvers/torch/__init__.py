# SPDX-License-Identifier: BSD-3-Clause
"""Torch adapter of :mod:`solvers`: ``torch.optim`` optimizers.

- :class:`AdaSLS`, :class:`SLS`, :class:`SPS` (:mod:`solvers.torch.line_search`):
  AMSGrad/AdaGrad/SGD with a stochastic Armijo or Goldstein line search, and
  the stochastic Polyak step, as ``torch.optim.Optimizer`` subclasses.
- :class:`TrialEvaluator` (:mod:`solvers.torch.trial`): side-effect-free trial
  forwards of a training closure (same RNG draws, frozen module buffers,
  DDP-averaged losses).

Deep sparse methods, each attached to any ``torch.optim`` optimizer through its
step hooks (the training loop is unchanged):

- :class:`DynamicSparsity` (:mod:`solvers.torch.dynamic_sparsity`): SET, RigL
  and momentum growth with the in-time over-parameterization rate;
- :class:`StaticSparsity`, :func:`select_layers`, :func:`layer_densities`
  (:mod:`solvers.torch.masks`): fixed masks, layer selection, ERK;
- :func:`prune_at_init` (SNIP, GraSP, SynFlow), :func:`magnitude_masks`,
  :class:`GradualMagnitudePruning`, :class:`LotteryTicket`,
  :func:`approximate_isometry_`, :func:`orthogonalize_`
  (:mod:`solvers.torch.pruning`);
- :class:`SSGD` (:mod:`solvers.torch.ssgd`): the sparsity-promoting gradient
  transform;
- :func:`export_dense`, :func:`export_sparse`, :func:`to_torch_prune`,
  :func:`from_torch_prune` (:mod:`solvers.torch.export`);
- :class:`NeuronSplitting` (:mod:`solvers.torch.splitting`): splitting
  steepest descent and signed splitting;
- :func:`expand`, :func:`contract` (:mod:`solvers.torch.expand`): ExpandNets.

Importing this package imports torch.
"""

from solvers.torch.dynamic_sparsity import DropSchedule, DynamicSparsity
from solvers.torch.expand import ExpandedConv2d, ExpandedLinear, contract, expand
from solvers.torch.export import (
    SparseLinear,
    export_dense,
    export_sparse,
    from_torch_prune,
    to_torch_prune,
)
from solvers.torch.line_search import SLS, SPS, AdaSLS, LineSearchOptimizer
from solvers.torch.masks import (
    MaskedTraining,
    StaticSparsity,
    erk_densities,
    layer_densities,
    select_layers,
)
from solvers.torch.pruning import (
    GradualMagnitudePruning,
    LotteryTicket,
    approximate_isometry_,
    magnitude_masks,
    masks_from_scores,
    orthogonalize_,
    prune_at_init,
)
from solvers.torch.splitting import NeuronSplitting, SplitEigen, splittable_layers
from solvers.torch.ssgd import SSGD
from solvers.torch.trial import TrialEvaluator

__all__ = [
    "SLS",
    "SPS",
    "SSGD",
    "AdaSLS",
    "DropSchedule",
    "DynamicSparsity",
    "ExpandedConv2d",
    "ExpandedLinear",
    "GradualMagnitudePruning",
    "LineSearchOptimizer",
    "LotteryTicket",
    "MaskedTraining",
    "NeuronSplitting",
    "SparseLinear",
    "SplitEigen",
    "StaticSparsity",
    "TrialEvaluator",
    "approximate_isometry_",
    "contract",
    "erk_densities",
    "expand",
    "export_dense",
    "export_sparse",
    "from_torch_prune",
    "layer_densities",
    "magnitude_masks",
    "masks_from_scores",
    "orthogonalize_",
    "prune_at_init",
    "select_layers",
    "splittable_layers",
    "to_torch_prune",
]
