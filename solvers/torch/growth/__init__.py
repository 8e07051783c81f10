# SPDX-License-Identifier: BSD-3-Clause
"""Growing networks: neuron splitting and ExpandNets.

- :mod:`~solvers.torch.growth.splitting`: :class:`NeuronSplitting` (splitting
  steepest descent and signed splitting), over
  :mod:`~solvers.torch.growth.splittable` (which layers),
  :mod:`~solvers.torch.growth.splitting_matrix` (the matrices' terms) and
  :mod:`~solvers.torch.growth.split_eigen` (their extreme eigenpairs);
- :mod:`~solvers.torch.growth.expand`: :func:`expand`, :func:`contract` (ExpandNets).

A grown model has new parameter shapes: build a new optimizer for it.
"""

from solvers.torch.growth.expand import ExpandedConv2d, ExpandedLinear, contract, expand
from solvers.torch.growth.split_eigen import SplitEigen
from solvers.torch.growth.splittable import splittable_layers
from solvers.torch.growth.splitting import NeuronSplitting, SplitPick

__all__ = [
    "ExpandedConv2d",
    "ExpandedLinear",
    "NeuronSplitting",
    "SplitEigen",
    "SplitPick",
    "contract",
    "expand",
    "splittable_layers",
]
