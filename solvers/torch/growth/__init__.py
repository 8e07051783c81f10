# SPDX-License-Identifier: BSD-3-Clause
"""Growing networks: neuron splitting and ExpandNets.

- :mod:`~solvers.torch.growth.splitting`: :class:`NeuronSplitting` (splitting
  steepest descent and signed splitting), over
  :mod:`~solvers.torch.growth.splittable` (which layers),
  :mod:`~solvers.torch.growth.splitting_matrix` (the matrices' terms) and
  :mod:`~solvers.torch.growth.split_eigen` (their extreme eigenpairs) and
  :mod:`~solvers.torch.growth.rayleigh` (the same by Rayleigh-quotient steps);
  under a cost budget with :mod:`~solvers.torch.growth.neuron_cost` (FLOPs or
  parameters per neuron) and :mod:`~solvers.torch.growth.budget_selection`
  (the energy-aware linear program);
- :mod:`~solvers.torch.growth.firefly`: :class:`FireflyGrowth` (candidate
  splits and new neurons scored by a first-order Taylor estimate);
- :mod:`~solvers.torch.growth.expand`: :func:`expand`, :func:`contract` (ExpandNets).

A grown model has new parameter shapes: build a new optimizer for it.
"""

from solvers.torch.growth.expand import ExpandedConv2d, ExpandedLinear, contract, expand
from solvers.torch.growth.firefly import FireflyGrowth, FireflyPick
from solvers.torch.growth.neuron_cost import model_flops, neuron_costs
from solvers.torch.growth.split_eigen import SplitEigen
from solvers.torch.growth.splittable import splittable_layers
from solvers.torch.growth.splitting import NeuronSplitting, SplitPick

__all__ = [
    "ExpandedConv2d",
    "ExpandedLinear",
    "FireflyGrowth",
    "FireflyPick",
    "NeuronSplitting",
    "SplitEigen",
    "SplitPick",
    "contract",
    "expand",
    "model_flops",
    "neuron_costs",
    "splittable_layers",
]
