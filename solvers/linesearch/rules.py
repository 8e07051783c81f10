# SPDX-License-Identifier: BSD-3-Clause
"""Step-size rules for stochastic first-order steps: fixed, Armijo, Goldstein, Polyak.

Scalar logic only, shared by the array-level :func:`solvers.minimize` and the
torch optimizers in :mod:`solvers.torch.optim` (both through
:class:`solvers.linesearch.config.SearchConfig`, which adds the reset of the
first trial and the reasons to take no step). A step moves the parameters along a
direction ``d`` computed once (``d = A^-1 g`` for a diagonal preconditioner
``A``), with ``pp = <g, d> = ||g||^2_{A^-1}``. A rule gets the minibatch loss
``f0`` at the current point, a function ``decrease(eta)`` giving the
first-order decrease of a step ``eta`` (``eta * pp``, or a sum over parameter
groups whose steps are capped differently), and ``evaluate(eta)``, which moves
the parameters to ``w - eta d`` and returns the minibatch loss there (one
forward pass). Sources:

- Armijo: ``f(w - eta d) <= f(w) - c eta <g, d>`` with backtracking
  ``eta <- beta_b eta`` (Vaswani et al. 2019, "Painless stochastic gradient",
  Alg. 1; with ``d = A^-1 g``: Vaswani et al. 2020, "Adaptive gradient methods
  converge faster with over-parameterization (but you should do a line-search)",
  Alg. 1).
- Goldstein: Armijo plus the curvature bound
  ``f(w - eta d) >= f(w) - (1 - c) eta <g, d>``; grow by ``beta_f`` when only
  Armijo holds, shrink by ``beta_b`` when only the bound holds (Vaswani et al.
  2019, App.; ``c < 1/2``).
- Polyak (SPS_max): ``eta = min(eta_B, (f(w) - f*) / (c <g, d>))`` (Loizou et
  al. 2021, "Stochastic Polyak step-size for SGD"; Vaswani et al. 2020, Alg. 3).
- Reset of the first trial from the previous step ``eta_{k-1}`` (Vaswani et al.
  2020, Alg. 2): ``"conservative"`` (``eta_{k-1}``), ``"grow"``
  (``eta_{k-1} gamma^(b/n)``, ``gamma^(1/n_batches)`` per step, so at most
  ``gamma`` times per epoch) or ``"max"`` (``eta_max`` every step); always
  capped by ``eta_max``.

Two guards not in the reference code:

- *Float noise.* Every comparison allows ``tol = 8 eps |f(w)|`` (``eps`` of the
  loss's floating type): once a minibatch is fitted, the required decrease
  drops below the rounding of the loss and an exact test fails at random (the
  reference code then spends up to 100 forwards per step and collapses ``eta``
  to 1e-6).
- *Polyak-initialised first trial* (as in PoNoS, Galli et al. 2023): the first
  Armijo trial is ``min(reset, (f(w) - f*) / (c <g, d>))``. For a loss bounded
  below by ``f*`` no larger step can satisfy Armijo (``f* <= f(w - eta d) <=
  f(w) - c eta <g, d>``), so the cap never excludes an acceptable step; it saves
  the backtracks from ``eta_max`` and lets ``eta`` recover at once after a
  collapse.

*Bounded backtracking.* After ``max_backtracks`` rejected trials the search
gives up: the step is **not taken** (the parameters return to ``w``) and the
next step starts from the last, smallest trial. The reference code instead
takes a 1e-6 step and needs ~13 epochs of growth to recover.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from numbers import Real

from solvers._validation import check_int, check_open_unit, check_options, check_positive

__all__ = [
    "NO_SEARCH",
    "RESETS",
    "RULES",
    "Armijo",
    "FixedStep",
    "Goldstein",
    "Polyak",
    "SearchOutcome",
    "StepRule",
    "check_reset",
    "initial_step",
    "make_step_rule",
    "noise_tolerance",
]

RESETS = ("conservative", "grow", "max")

#: statuses of a step decided before any search (see :meth:`SearchConfig.first_trial`)
NO_SEARCH = ("nonfinite_gradient", "small_gradient", "zero_lr", "at_lower_bound")


@dataclass
class SearchOutcome:
    """Result of one step-size search.

    Attributes
    ----------
    step_size : float
        Accepted step (0.0 when no step is taken).
    n_evals : int
        Loss evaluations at trial points (forward passes beyond the first).
    n_backtracks : int
        Trial steps rejected.
    status : str
        ``"accepted"``, ``"max_backtracks"`` (no step taken), ``"fixed"`` /
        ``"polyak"`` (rules without trials), ``"small_gradient"`` (``<g, d>``
        not positive: no step), ``"at_lower_bound"`` (``f(w) <= f*``: no step),
        ``"nonfinite_gradient"`` (no step, state untouched), ``"zero_lr"``
        (``eta_max`` is 0, e.g. at the start of a warm-up: no step, the
        previous step size is kept).
    next_step : float
        The ``eta_{k-1}`` the next step's reset starts from.
    """

    step_size: float
    n_evals: int
    n_backtracks: int
    status: str
    next_step: float

    @property
    def searched(self):
        """Whether a rule ran (``False`` for the statuses in :data:`NO_SEARCH`)."""
        return self.status not in NO_SEARCH


def check_reset(reset):
    """``reset`` if it is one of :data:`RESETS`, else :class:`InvalidParameterError`."""
    return check_options("reset", reset, RESETS)


def initial_step(reset, previous, eta_max, growth):
    """First trial step from the previous accepted one (Vaswani et al. 2020, Alg. 2).

    A previous step that is not positive (none yet, or an ``eta_max`` of 0
    during a warm-up) restarts from ``eta_max``.
    """
    if not previous > 0.0:
        eta = eta_max
    elif reset == "conservative":
        eta = previous
    elif reset == "grow":
        eta = previous * growth
    else:
        eta = eta_max
    return min(eta, eta_max)


def noise_tolerance(f0, eps):
    """Absolute slack of the loss comparisons: ``8 eps |f0|``."""
    return 8.0 * eps * abs(f0)


class StepRule:
    """Base class: ``search(f0, eta0, decrease, evaluate, tol, eta_max)``."""

    #: whether the rule evaluates the loss at trial points
    needs_trials = True

    def search(self, f0, eta0, decrease, evaluate, tol, eta_max):  # pragma: no cover
        raise NotImplementedError

    def polyak_cap(self, f0, f_star, pp):
        return (f0 - f_star) / (self.c * pp)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class FixedStep(StepRule):
    """A constant step ``eta_max`` (scaled by LR schedulers), no trials."""

    needs_trials = False
    c = 1.0

    def search(self, f0, eta0, decrease, evaluate, tol, eta_max):
        return SearchOutcome(eta_max, 0, 0, "fixed", eta_max)


class Armijo(StepRule):
    """Backtracking Armijo search: accept ``f(w - eta d) <= f(w) - c eta <g, d> + tol``.

    Parameters
    ----------
    c : float in (0, 1)
        Sufficient-decrease constant (the paper: 0.5 for convex problems, 0.1
        for deep networks).
    beta_b : float in (0, 1)
        Backtracking factor.
    max_backtracks : int
        Rejected trials after which the step is abandoned (see the module
        docstring).
    """

    def __init__(self, c=0.5, beta_b=0.9, max_backtracks=100):
        self.c = check_open_unit("c", c)
        self.beta_b = check_open_unit("beta_b", beta_b)
        self.max_backtracks = check_int("max_backtracks", max_backtracks)

    def search(self, f0, eta0, decrease, evaluate, tol, eta_max):
        eta = eta0
        for i in range(self.max_backtracks + 1):
            f = evaluate(eta)
            if f <= f0 - self.c * decrease(eta) + tol:
                return SearchOutcome(eta, i + 1, i, "accepted", eta)
            if i < self.max_backtracks:
                eta *= self.beta_b
        return SearchOutcome(
            0.0,
            self.max_backtracks + 1,
            self.max_backtracks + 1,
            "max_backtracks",
            eta * self.beta_b,
        )


class Goldstein(StepRule):
    """Goldstein search: Armijo and ``f(w - eta d) >= f(w) - (1 - c) eta <g, d> - tol``.

    Grows the step by ``beta_f`` (up to ``eta_max``) while only the Armijo part
    holds, shrinks by ``beta_b`` while it fails. After ``max_backtracks`` trials
    without both conditions, the largest trial that satisfied Armijo is taken,
    or no step if none did.
    """

    def __init__(self, c=0.1, beta_b=0.9, beta_f=2.0, max_backtracks=100):
        self.c = check_open_unit("c", c, upper=0.5)
        self.beta_b = check_open_unit("beta_b", beta_b)
        self.beta_f = check_positive("beta_f", beta_f)
        if self.beta_f <= 1.0:
            raise ValueError(f"beta_f must be > 1, got {beta_f!r}.")
        self.max_backtracks = check_int("max_backtracks", max_backtracks)

    def search(self, f0, eta0, decrease, evaluate, tol, eta_max):
        eta, best, rejected = eta0, None, 0
        for i in range(self.max_backtracks + 1):
            f = evaluate(eta)
            dec = decrease(eta)
            armijo = f <= f0 - self.c * dec + tol
            curvature = f >= f0 - (1.0 - self.c) * dec - tol
            if armijo and (curvature or eta >= eta_max):
                return SearchOutcome(eta, i + 1, rejected, "accepted", eta)
            rejected += 1
            if armijo:
                best = eta if best is None else max(best, eta)
                eta = min(eta * self.beta_f, eta_max)
            else:
                eta *= self.beta_b
        n = self.max_backtracks + 1
        if best is not None:
            evaluate(best)
            return SearchOutcome(best, n + 1, rejected, "accepted", best)
        return SearchOutcome(0.0, n, rejected, "max_backtracks", eta)


class Polyak(StepRule):
    """Stochastic Polyak step ``min(eta_B, (f(w) - f*) / (c <g, d>))``: no trials.

    ``eta_B`` is the reset rule's first trial (``"grow"`` gives the paper's
    ``smooth_iter``, ``"max"`` gives SPS_max with cap ``eta_max``).
    """

    needs_trials = False

    def __init__(self, c=0.2):
        self.c = check_open_unit("c", c, upper=math.inf)

    def search(self, f0, eta0, decrease, evaluate, tol, eta_max):
        return SearchOutcome(eta0, 0, 0, "polyak", eta0)


#: the rules by name, as the ``line_search`` settings spell them
RULES = {"armijo": Armijo, "goldstein": Goldstein, "polyak": Polyak, "fixed": FixedStep}


def make_step_rule(rule, **kwargs):
    """A :class:`StepRule` from a name in :data:`RULES` (or the object itself).

    Settings the rule does not take (``beta_f`` for Armijo, ``c`` for the
    fixed step...) are ignored, but a NaN or infinite one is still refused:
    it is a mistake whichever rule reads it.
    """
    if isinstance(rule, StepRule):
        return rule
    if rule not in RULES:
        raise ValueError(f"step rule must be one of {tuple(RULES)} or a StepRule, got {rule!r}.")
    cls = RULES[rule]
    accepted = inspect.signature(cls.__init__).parameters
    for name, value in kwargs.items():
        if name not in accepted and isinstance(value, Real) and not math.isfinite(value):
            raise ValueError(
                f"The {name!r} setting must be a finite number; got {value!r} (the {rule!r} "
                "rule does not use it, but a NaN or infinite setting is a mistake)."
            )
    return cls(**{k: v for k, v in kwargs.items() if k in accepted})
