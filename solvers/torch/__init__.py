# SPDX-License-Identifier: BSD-3-Clause
"""Torch adapter of :mod:`solvers`: three subpackages, one product each.

- :mod:`solvers.torch.optim`: ``torch.optim`` optimizers with no step size to
  tune: :class:`AdaSLS`, :class:`SLS`, :class:`SPS` (AMSGrad/AdaGrad/SGD with a
  stochastic Armijo or Goldstein line search, and the stochastic Polyak step),
  short classes over a functional core, and :class:`TrialEvaluator`
  (side-effect-free trial forwards of a training closure); :class:`Proximal`
  (the small-batch proximal regulariser, on any optimizer's step hooks).
- :mod:`solvers.torch.sparse`: sparse training attached to any ``torch.optim``
  optimizer through its step hooks (the training loop is unchanged):
  :class:`DynamicSparsity` (SET, RigL, momentum growth, in-time
  over-parameterization), :class:`StaticSparsity`, :func:`select_layers`,
  :func:`layer_densities` (ERK); pruning (:func:`prune_at_init` with SNIP,
  GraSP, SynFlow; :func:`magnitude_masks`, :class:`GradualMagnitudePruning`,
  :class:`LotteryTicket`, :func:`approximate_isometry_`,
  :func:`orthogonalize_`); :class:`SSGD`; export (:func:`export_dense`,
  :func:`export_sparse`, :func:`to_torch_prune`, :func:`from_torch_prune`).
- :mod:`solvers.torch.growth`: :class:`NeuronSplitting` (splitting steepest
  descent and signed splitting, under a count or a FLOPs budget),
  :class:`FireflyGrowth` (Firefly descent) and ExpandNets (:func:`expand`,
  :func:`contract`).
- :mod:`solvers.torch.ensemble`: :class:`ParameterEnsemble`, ensembles drawn
  from the distribution of the weights late in training (SWAG-diagonal and
  SWAG), collected on any optimizer's step hooks.

The modules of the previous layout (``solvers.torch.line_search``,
``masks``, ``dynamic_sparsity``, ``pruning``, ``ssgd``, ``export``,
``splitting``, ``expand``, ``trial``) stay importable as re-exports.
Importing this package imports torch.
"""

from solvers.torch.ensemble import ParameterEnsemble
from solvers.torch.growth import (
    ExpandedConv2d,
    ExpandedLinear,
    FireflyGrowth,
    NeuronSplitting,
    SplitEigen,
    contract,
    expand,
    splittable_layers,
)
from solvers.torch.optim import SLS, SPS, AdaSLS, LineSearchOptimizer, Proximal, TrialEvaluator
from solvers.torch.sparse import (
    SSGD,
    DropSchedule,
    DynamicSparsity,
    GradualMagnitudePruning,
    LotteryTicket,
    MaskedTraining,
    SparseLinear,
    StaticSparsity,
    approximate_isometry_,
    erk_densities,
    export_dense,
    export_sparse,
    from_torch_prune,
    layer_densities,
    magnitude_masks,
    masks_from_scores,
    orthogonalize_,
    prune_at_init,
    select_layers,
    to_torch_prune,
)

__all__ = [
    "SLS",
    "SPS",
    "SSGD",
    "AdaSLS",
    "DropSchedule",
    "DynamicSparsity",
    "ExpandedConv2d",
    "ExpandedLinear",
    "FireflyGrowth",
    "GradualMagnitudePruning",
    "LineSearchOptimizer",
    "LotteryTicket",
    "MaskedTraining",
    "NeuronSplitting",
    "ParameterEnsemble",
    "Proximal",
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
