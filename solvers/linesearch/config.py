# SPDX-License-Identifier: BSD-3-Clause
"""The settings of the step-size search, read by both drivers.

One frozen :class:`SearchConfig` describes how a step size is chosen; the
array-level :func:`solvers.minimize` and the torch optimizers of
:mod:`solvers.torch.optim` both build one from their keywords (the same
names in both) and call :meth:`SearchConfig.search` once per step. A step
then:

1. decides whether to search at all (:meth:`SearchConfig.first_trial`): no
   step for a non-finite or non-positive ``<g, A^-1 g>``, an ``eta_max`` of 0
   or, for the Polyak rule, a loss at or below ``f*``;
2. starts from the reset of the previous step (Vaswani et al. 2020, Alg. 2),
   capped by the Polyak step when ``polyak_init`` (PoNoS, Galli et al. 2023);
3. runs the rule (:mod:`solvers.linesearch.rules`) with the float-noise slack
   ``8 eps |f(w)|``.

Names
-----
``line_search`` is the choice of rule (``"armijo"``, ``"goldstein"``,
``"polyak"``, ``"fixed"``) in both drivers (``minimize`` used to call it
``step_rule``, still accepted with a :class:`DeprecationWarning`); ``gamma``
is always the step *growth* factor of ``reset="grow"`` (the heavy-ball
coefficient is ``heavy_ball``, see :mod:`solvers.linesearch.preconditioners`).

Defaults that differ on purpose
-------------------------------
``c`` is 0.5 in :func:`solvers.minimize` (convex GLMs: the paper's setting for
convex problems) and 0.1 in :class:`solvers.torch.AdaSLS`/``SLS`` (deep
networks: the paper's setting there), 0.2 in ``SPS`` (Loizou et al. 2021).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

from solvers._validation import Real, StrOptions, interval, validate_params
from solvers.linesearch.rules import (
    RESETS,
    RULES,
    Armijo,
    FixedStep,
    Goldstein,
    Polyak,
    SearchOutcome,
    StepRule,
    initial_step,
    make_step_rule,
    noise_tolerance,
)

__all__ = ["SEARCH_CONSTRAINTS", "SearchConfig", "plan_step", "resolve_line_search"]

#: constraints of the settings every rule shares (each rule checks its own ``c``, ``beta_b``...)
SEARCH_CONSTRAINTS = {
    "line_search": [StrOptions(set(RULES)), StepRule],
    "reset": [StrOptions(set(RESETS))],
    "gamma": [interval(Real, 1.0, None, closed="left")],
    "n_batches_per_epoch": [interval(Real, 0.0, None, closed="neither")],
    "polyak_init": ["boolean"],
    "f_star": [interval(Real, None, None, closed="neither")],
}


def resolve_line_search(line_search, step_rule, owner="minimize", default="armijo"):
    """The rule choice from ``line_search``, or from the deprecated ``step_rule`` keyword."""
    if step_rule is None:
        return line_search
    if line_search != default:
        raise TypeError(
            f"{owner} got both line_search and its deprecated name step_rule; pass line_search."
        )
    warnings.warn(
        f"{owner}(step_rule=...) is deprecated; use line_search=... (the name the torch "
        "optimizers use).",
        DeprecationWarning,
        stacklevel=3,
    )
    return step_rule


@dataclass(frozen=True)
class SearchConfig:
    """How one step size is chosen: the rule, the reset and the Polyak cap.

    Parameters
    ----------
    rule : StepRule
        :class:`~solvers.linesearch.rules.Armijo`, ``Goldstein``, ``Polyak``
        or ``FixedStep`` (it holds ``c``, ``beta_b``, ``beta_f`` and
        ``max_backtracks``).
    reset : {"grow", "conservative", "max"}, default="grow"
        First trial from the previous step ``eta_{k-1}``: ``eta_{k-1}
        gamma^(1/n_batches_per_epoch)``, ``eta_{k-1}`` or ``eta_max``.
    gamma : float >= 1, default=2.0
        Growth factor per epoch of ``reset="grow"`` (at most ``gamma`` times
        per epoch).
    n_batches_per_epoch : float > 0, default=1
        Steps per epoch, for ``reset="grow"``.
    polyak_init : bool, default=True
        Cap the first trial at the Polyak step ``(f - f_star) / (c <g, d>)``
        (never excludes an acceptable Armijo step when ``f >= f_star``).
    f_star : float, default=0.0
        Lower bound of the minibatch losses.
    """

    rule: StepRule
    reset: str = "grow"
    gamma: float = 2.0
    n_batches_per_epoch: float = 1
    polyak_init: bool = True
    f_star: float = 0.0

    @classmethod
    def from_settings(cls, line_search="armijo", *, owner="SearchConfig", **settings):
        """Validate the keywords both drivers take and build the config.

        ``settings`` are ``c``, ``beta_b``, ``beta_f``, ``max_backtracks``
        (passed to the rule, which checks them) and the fields of this class.
        """
        fields = ("reset", "gamma", "n_batches_per_epoch", "polyak_init", "f_star")
        own = {k: settings.pop(k) for k in fields if k in settings}
        validate_params(SEARCH_CONSTRAINTS, {"line_search": line_search, **own}, owner)
        rule = make_step_rule(line_search, **settings)
        own = {k: float(v) if k in ("gamma", "f_star") else v for k, v in own.items()}
        return cls(rule, **own)

    @property
    def needs_trials(self):
        """Whether the rule evaluates the loss at trial points (a closure is needed)."""
        return self.rule.needs_trials

    @property
    def growth(self):
        """Growth of the first trial per step: ``gamma ** (1 / n_batches_per_epoch)``."""
        return self.gamma ** (1.0 / self.n_batches_per_epoch)

    def first_trial(self, f0, pp, previous, eta_max, eps):
        """The first trial step, or a reason to take no step.

        Returns ``(eta0, status)`` where ``status`` is None when a search should
        run, else one of :data:`~solvers.linesearch.rules.NO_SEARCH`. The Polyak
        cap of a line search's first trial applies only while ``f(w) > f*`` (a
        loss below the declared bound, e.g. a negative loss with ``f_star=0``,
        just searches from the reset); the Polyak rule itself takes no step
        there.
        """
        rule = self.rule
        if not math.isfinite(pp):
            return 0.0, "nonfinite_gradient"
        if not pp > 0.0:
            return 0.0, "small_gradient"
        if not eta_max > 0.0:
            return 0.0, "zero_lr"
        eta0 = initial_step(self.reset, previous, eta_max, self.growth)
        if isinstance(rule, FixedStep):
            return eta_max, None
        above = f0 - self.f_star > noise_tolerance(f0, eps)
        if isinstance(rule, Polyak):
            if not above:
                return 0.0, "at_lower_bound"
            eta0 = min(eta0, rule.polyak_cap(f0, self.f_star, pp))
        elif self.polyak_init and above and isinstance(rule, (Armijo, Goldstein)):
            eta0 = min(eta0, rule.polyak_cap(f0, self.f_star, pp))
        return eta0, None

    def search(self, f0, pp, *, previous, eta_max, eps, decrease, evaluate):
        """One step size: :meth:`first_trial`, then the rule from there.

        Parameters
        ----------
        f0 : float
            Loss at the current point ``w``.
        pp : float
            ``<g, A^-1 g>`` (NaN or inf when a gradient entry is not finite).
        previous : float
            The previous step's :attr:`SearchOutcome.next_step`.
        eta_max : float
            The largest step (``lr``).
        eps : float
            Machine epsilon of the loss's type (the float-noise slack).
        decrease : callable
            ``eta -> eta <g, A^-1 g>`` (summed over groups with capped steps).
        evaluate : callable or None
            ``eta -> f(w - eta d)``; called only by rules with trials.

        Returns
        -------
        SearchOutcome
            With ``next_step == previous`` when no search ran.
        """
        eta0, status = self.first_trial(f0, pp, previous, eta_max, eps)
        if status is not None:
            return SearchOutcome(0.0, 0, 0, status, previous)
        trials = evaluate if self.rule.needs_trials else None
        return self.rule.search(f0, eta0, decrease, trials, noise_tolerance(f0, eps), eta_max)


def plan_step(rule, *, f0, pp, previous, eta_max, reset, growth, f_star, polyak_init, eps):
    """``SearchConfig(rule, ...).first_trial(...)`` with the growth per step given directly.

    Kept for code that imported it from :mod:`solvers.step_size`.
    """
    config = SearchConfig(rule, reset, growth, 1, polyak_init, f_star)
    return config.first_trial(f0, pp, previous, eta_max, eps)
