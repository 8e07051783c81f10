# SPDX-License-Identifier: BSD-3-Clause
"""Ensembles drawn from the distribution of the weights late in training.

- :mod:`solvers.torch.ensemble.moments`: :class:`RunningMoments`, the
  per-weight running mean and variance (Welford) and the last ``K``
  deviations from the mean, updated with ``_foreach`` kernels;
- :mod:`solvers.torch.ensemble.parameter_ensemble`:
  :class:`ParameterEnsemble`, which collects them on a ``torch.optim``
  optimizer's step hooks, draws members (SWAG-diagonal or SWAG with its
  low-rank part) and predicts with the averaged class probabilities.

Importing this package imports torch.
"""

from solvers.torch.ensemble.moments import RunningMoments
from solvers.torch.ensemble.parameter_ensemble import ParameterEnsemble

__all__ = ["ParameterEnsemble", "RunningMoments"]
