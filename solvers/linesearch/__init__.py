# SPDX-License-Identifier: BSD-3-Clause
"""Stochastic line-search and Polyak steps, shared by the array and torch drivers.

- :mod:`solvers.linesearch.rules`: the step-size rules (:class:`Armijo`,
  :class:`Goldstein`, :class:`Polyak`, :class:`FixedStep`) and their typed
  :class:`SearchOutcome`;
- :mod:`solvers.linesearch.config`: :class:`SearchConfig`, the frozen search
  settings both drivers read (reset, growth, Polyak cap, reasons to skip);
- :mod:`solvers.linesearch.preconditioners`: AdaGrad, AMSGrad, EMA and
  heavy-ball momentum, each on arrays and on lists of tensors;
- :mod:`solvers.linesearch.minimize`: :func:`solvers.minimize`, the
  array-level driver (the torch driver is :mod:`solvers.torch.optim`).
"""

from solvers.linesearch.config import SearchConfig
from solvers.linesearch.preconditioners import (
    AdaGrad,
    AMSGrad,
    EMAMomentum,
    HeavyBall,
    Identity,
    NoMomentum,
)
from solvers.linesearch.rules import Armijo, FixedStep, Goldstein, Polyak, SearchOutcome, StepRule

__all__ = [
    "AMSGrad",
    "AdaGrad",
    "Armijo",
    "EMAMomentum",
    "FixedStep",
    "Goldstein",
    "HeavyBall",
    "Identity",
    "NoMomentum",
    "Polyak",
    "SearchConfig",
    "SearchOutcome",
    "StepRule",
]
