# SPDX-License-Identifier: BSD-3-Clause
"""``torch.optim`` optimizers with stochastic line-search and Polyak step sizes.

- :mod:`solvers.torch.optim.line_search`: :class:`AdaSLS`, :class:`SLS`,
  :class:`SPS` (short classes over :class:`LineSearchOptimizer`);
- :mod:`solvers.torch.optim._functional`: the step over lists of tensors;
- :mod:`solvers.torch.optim.trial`: :class:`TrialEvaluator`, side-effect-free
  trial forwards of a training closure;
- :mod:`solvers.torch.optim.proximal`: :class:`Proximal`, the small-batch
  proximal regulariser on any optimizer's step hooks.

Importing this package imports torch.
"""

from solvers.torch.optim.line_search import SLS, SPS, AdaSLS, LineSearchOptimizer
from solvers.torch.optim.proximal import Proximal
from solvers.torch.optim.trial import TrialEvaluator

__all__ = ["SLS", "SPS", "AdaSLS", "LineSearchOptimizer", "Proximal", "TrialEvaluator"]
