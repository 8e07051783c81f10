# SPDX-License-Identifier: BSD-3-Clause
"""Torch adapter of :mod:`solvers`: ``torch.optim`` optimizers.

- :class:`AdaSLS`, :class:`SLS`, :class:`SPS` (:mod:`solvers.torch.line_search`):
  AMSGrad/AdaGrad/SGD with a stochastic Armijo or Goldstein line search, and
  the stochastic Polyak step, as ``torch.optim.Optimizer`` subclasses.
- :class:`TrialEvaluator` (:mod:`solvers.torch.trial`): side-effect-free trial
  forwards of a training closure (same RNG draws, frozen module buffers,
  DDP-averaged losses).

Importing this package imports torch.
"""

from solvers.torch.line_search import SLS, SPS, AdaSLS, LineSearchOptimizer
from solvers.torch.trial import TrialEvaluator

__all__ = ["SLS", "SPS", "AdaSLS", "LineSearchOptimizer", "TrialEvaluator"]
