# SPDX-License-Identifier: BSD-3-Clause
"""``torch.optim`` optimizers with stochastic line-search and Polyak step sizes.

- :class:`AdaSLS`: AMSGrad (default) or AdaGrad preconditioning with a
  stochastic Armijo line search (Vaswani et al. 2020, "Adaptive gradient
  methods converge faster with over-parameterization (but you should do a
  line-search)", Alg. 1; the paper's recommended AMSGrad + Armijo setting).
- :class:`SLS`: SGD with an Armijo or Goldstein line search (Vaswani et al.
  2019, "Painless stochastic gradient").
- :class:`SPS`: the stochastic Polyak step (Loizou et al. 2021), one forward
  per step; with ``preconditioner="amsgrad"`` the paper's "Armijo SPS".

All three are :class:`LineSearchOptimizer` with different defaults. The class
keeps the closure protocol and the ``torch.optim`` bookkeeping; the step is
the functional core :mod:`solvers.torch.optim._functional`; the search
settings are one :class:`solvers.linesearch.config.SearchConfig` (the one
:func:`solvers.minimize` reads); the preconditioners and momentum are the
``_foreach`` halves of :mod:`solvers.linesearch.preconditioners`; the trial
forwards run through :class:`solvers.torch.optim.trial.TrialEvaluator` (same
dropout masks, frozen BatchNorm buffers, DDP-averaged losses).

Conventions
-----------
- ``step(closure)`` takes the usual closure (``zero_grad``, loss,
  ``backward``, ``return loss``) and returns its loss. A closure that only
  returns the loss is also accepted (the optimizer then calls ``backward``).
- ``step(closure, loss=loss)`` when the gradient is already in ``.grad`` (for
  example after ``scaler.scale(loss).backward(); scaler.unscale_(opt)`` with
  AMP): the closure is then used for trial forwards only. Rules without trials
  (:class:`SPS`, ``line_search="fixed"``) can take ``step(loss=loss)`` alone,
  so ``GradScaler.step(opt, loss=loss)`` works for them.
- ``lr`` is the maximum step ``eta_max`` of each group (the initial step too);
  LR schedulers scale it. A single step size is searched for the whole model
  (one loss); a group's step is ``min(eta, lr)``. The search settings
  (``line_search``, ``c``, ``beta_b``, ``beta_f``, ``max_backtracks``,
  ``reset``, ``gamma``, ``n_batches_per_epoch``, ``polyak_init``,
  ``f_star``) must therefore agree across groups; preconditioner settings may
  differ per group. An ``lr`` of 0 everywhere (a warm-up from 0) skips the
  step and keeps the searched step size.
- Memory: the preconditioner state plus one parameter-sized buffer holding
  the step's starting point, from which trials are set and to which a failed
  search (or a closure raising inside a trial) restores the parameters
  exactly.
- Host synchronisations: one per step (the loss and ``<g, A^-1 g>``, which
  also serve as the finite checks) and one per trial forward.
- Cost per step: the closure's forward and backward, one forward per trial,
  and about 12 elementwise passes over the parameters (Adam: 7): the
  preconditioner, ``d = A^-1 g``, ``<g, d>``, saving ``w``, the trial point,
  the momentum, and the final point written from ``w``. Once the step size
  has settled, the first trial (the grown previous step, capped by the
  Polyak step) is accepted on about 98 % of steps (1.01-1.03 trials per step
  on the MNIST MLPs). Every accepted step is checked by a forward: no bound
  that avoids it holds for a general network (the Polyak cap can only prove
  a trial *fails*), so on a model whose forward is a third of an Adam step
  (a 784-1000-10 MLP at batch 128 on CPU) a step costs about 1.5 x Adam's
  (``benchmarks/README.md``, ``optimizers``).
- A non-finite loss at the current point raises ``ValueError`` with parameters
  and state unchanged; a non-finite gradient skips the step (state unchanged),
  as ``GradScaler`` does.
- Diagnostics: :attr:`LineSearchOptimizer.last_step` (accepted step, forwards,
  backtracks, status) and :attr:`LineSearchOptimizer.totals` (saved in the
  ``state_dict`` under ``line_search_totals``).
- Names: ``line_search`` is the rule and ``gamma`` the step growth factor, as
  in :func:`solvers.minimize`; the heavy-ball coefficient is ``heavy_ball``.
  ``c`` defaults to 0.1 (deep networks) where :func:`solvers.minimize` uses
  0.5 (convex GLMs); both are the paper's settings for their problems.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch.optim import Optimizer

from solvers._validation import Real, StrOptions, check_positive, interval, validate_params
from solvers.linesearch.config import SEARCH_CONSTRAINTS, SearchConfig
from solvers.linesearch.preconditioners import MOMENTA, PRECONDITIONERS, default_momentum
from solvers.linesearch.rules import RULES
from solvers.torch.optim import _functional as F
from solvers.torch.optim.trial import (
    TrialEvaluator,
    average_over_ranks,
    check_loss,
    distributed_group,
)

__all__ = ["SLS", "SPS", "AdaSLS", "LineSearchOptimizer"]

#: settings of the (single, model-wide) step-size search; equal across groups
#: the group settings that choose the algorithm: a state_dict must agree on them to be loaded
ALGORITHM_KEYS = ("line_search", "preconditioner", "momentum")

SEARCH_KEYS = (
    "line_search",
    "c",
    "beta_b",
    "beta_f",
    "max_backtracks",
    "reset",
    "gamma",
    "n_batches_per_epoch",
    "polyak_init",
    "f_star",
)
LINE_SEARCHES = tuple(RULES)

#: constraints of a parameter group (the rule checks ``c``, ``beta_b``, ``beta_f``, ...)
GROUP_CONSTRAINTS = {
    **SEARCH_CONSTRAINTS,
    "line_search": [StrOptions(set(LINE_SEARCHES))],
    "lr": [interval(Real, 0.0, None, closed="left")],
    "preconditioner": [StrOptions(set(PRECONDITIONERS))],
    "momentum": [StrOptions(set(MOMENTA))],
    "eps": [interval(Real, 0.0, None, closed="left")],
    "heavy_ball": [interval(Real, 0.0, 1.0, closed="left")],
}


def _config_of(*settings):
    """The :class:`SearchConfig` of the values of :data:`SEARCH_KEYS`."""
    kwargs = dict(zip(SEARCH_KEYS, settings, strict=True))
    return SearchConfig.from_settings(owner="LineSearchOptimizer", **kwargs)


# validated once per settings; cached by a call, not a decorator, so that mutation testing
# (mutmut 3 leaves decorated functions alone) reaches the function
_config = lru_cache(maxsize=64)(_config_of)


def _rule(line_search, c, beta_b, beta_f, max_backtracks):
    """The step rule of these settings (kept for old imports)."""
    return _config(line_search, c, beta_b, beta_f, max_backtracks, "grow", 2.0, 1, True, 0.0).rule


def _check_group(group, owner="LineSearchOptimizer"):
    validate_params(GROUP_CONSTRAINTS, {k: group[k] for k in GROUP_CONSTRAINTS}, owner)
    betas = group["betas"]
    if len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}.")
    check_positive("betas[0]", betas[0], strict=False, upper=1.0, owner=owner)
    check_positive("betas[1]", betas[1], strict=False, upper=1.0, owner=owner)
    _config(*(group[k] for k in SEARCH_KEYS))


class LineSearchOptimizer(Optimizer):
    """Preconditioned stochastic steps with a line-search or Polyak step size.

    Parameters
    ----------
    params : iterable of Tensor or dict
        Parameters or parameter groups.
    lr : float, default=100.0
        Maximum (and initial) step ``eta_max``.
    preconditioner : {"amsgrad", "adagrad", "identity"}, default="amsgrad"
    momentum : {"ema", "heavy_ball", "none"}, default="ema"
        ``"ema"``: AMSGrad's first moment with ``betas[0]``; ``"heavy_ball"``:
        ``w_{k+1} = w_k - eta A^-1 g + heavy_ball (w_k - w_{k-1})``.
    betas : (float, float), default=(0.9, 0.99)
        First-moment and second-moment averaging constants.
    eps : float, default=1e-8
        Added to ``sqrt(v)`` in the preconditioner.
    heavy_ball : float, default=0.25
        Heavy-ball coefficient (``momentum="heavy_ball"``).
    line_search : {"armijo", "goldstein", "polyak", "fixed"}, default="armijo"
    c : float, default=0.1
        Armijo / Goldstein / Polyak constant (paper: 0.1 deep nets, 0.5
        convex, 0.2 for SPS).
    beta_b : float, default=0.9
        Backtracking factor.
    beta_f : float, default=2.0
        Goldstein growth factor.
    max_backtracks : int, default=100
        After this many rejected trials no step is taken and the next step
        starts from the last trial.
    reset : {"grow", "conservative", "max"}, default="grow"
    gamma : float, default=2.0
        ``"grow"`` multiplies the step by ``gamma ** (1 / n_batches_per_epoch)``
        per step.
    n_batches_per_epoch : float, default=500
        Steps per epoch (``len(loader)``), used by ``"grow"``.
    polyak_init : bool, default=True
        Cap the first trial at the Polyak step ``(f - f_star) / (c <g, d>)``
        (never excludes an acceptable Armijo step when ``f >= f_star``).
    f_star : float, default=0.0
        Lower bound of the minibatch losses.
    process_group : ProcessGroup, optional
        Group over which losses are averaged when ``torch.distributed`` is
        initialised (default: the world).

    Notes
    -----
    The search settings are those of
    :class:`solvers.linesearch.config.SearchConfig`, with the names
    :func:`solvers.minimize` uses.
    """

    def __init__(
        self,
        params,
        lr=100.0,
        *,
        preconditioner="amsgrad",
        momentum="ema",
        betas=(0.9, 0.99),
        eps=1e-8,
        heavy_ball=0.25,
        line_search="armijo",
        c=0.1,
        beta_b=0.9,
        beta_f=2.0,
        max_backtracks=100,
        reset="grow",
        gamma=2.0,
        n_batches_per_epoch=500,
        polyak_init=True,
        f_star=0.0,
        process_group=None,
    ):
        defaults = dict(
            lr=lr,
            preconditioner=preconditioner,
            momentum=momentum,
            betas=tuple(betas),
            eps=eps,
            heavy_ball=heavy_ball,
            line_search=line_search,
            c=c,
            beta_b=beta_b,
            beta_f=beta_f,
            max_backtracks=max_backtracks,
            reset=reset,
            gamma=gamma,
            n_batches_per_epoch=n_batches_per_epoch,
            polyak_init=polyak_init,
            f_star=f_star,
            step_size=None,
        )
        _check_group(defaults, type(self).__name__)
        super().__init__(params, defaults)
        self.process_group = process_group
        self.last_step = {}
        self._origins = {}
        self.totals = {"steps": 0, "forwards": 0, "backtracks": 0, "skipped": 0}

    def add_param_group(self, param_group):
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        _check_group(group, type(self).__name__)
        if group["step_size"] is None:
            group["step_size"] = float(group["lr"])

    def state_dict(self):
        sd = super().state_dict()
        sd["line_search_totals"] = dict(self.totals)
        return sd

    def load_state_dict(self, state_dict):
        """``torch.optim``'s load, after checking the state is one this optimizer can resume.

        A state from another optimizer (``torch.optim.Adam``...) or from a
        line-search optimizer with another algorithm (``line_search``,
        ``preconditioner`` or ``momentum``) raises ``ValueError`` and
        changes nothing, instead of failing at the next step or silently
        switching algorithm.
        """
        if not isinstance(state_dict, dict):
            raise TypeError(
                f"state_dict must be the dict of {type(self).__name__}.state_dict(); got a "
                f"{type(state_dict).__name__}."
            )
        self._check_loadable(state_dict)
        totals = state_dict.get("line_search_totals")
        super().load_state_dict({k: v for k, v in state_dict.items() if k != "line_search_totals"})
        if totals is not None:
            self.totals = dict(totals)

    def _check_loadable(self, state_dict):
        groups = state_dict.get("param_groups") if isinstance(state_dict, dict) else None
        if not isinstance(groups, list) or len(groups) != len(self.param_groups):
            return  # torch.optim's own load reports these
        owner = type(self).__name__
        for saved, group in zip(groups, self.param_groups, strict=True):
            missing = [k for k in (*GROUP_CONSTRAINTS, *SEARCH_KEYS, "betas") if k not in saved]
            if missing:
                raise ValueError(
                    f"state_dict is not from a line-search optimizer: its param_groups lack "
                    f"{missing}; {owner} can only resume a {owner}.state_dict()."
                )
            for key in ALGORITHM_KEYS:
                if saved[key] != group[key]:
                    raise ValueError(
                        f"state_dict is from an optimizer with {key}={saved[key]!r}, this one has "
                        f"{key}={group[key]!r}: build the optimizer as the saved one was."
                    )
            _check_group(saved, owner)

    def _search_config(self):
        """The model-wide :class:`SearchConfig`; every group must agree on it.

        Also checks each group's ``lr`` (a scheduler or a user may have set it
        since construction): a NaN would otherwise skip every step silently.
        """
        for i, group in enumerate(self.param_groups):
            lr = group["lr"]
            if isinstance(lr, bool) or not isinstance(lr, Real) or not 0.0 <= lr < math.inf:
                owner = f"{type(self).__name__}.param_groups[{i}]"
                validate_params({"lr": GROUP_CONSTRAINTS["lr"]}, {"lr": lr}, owner)
        first = self.param_groups[0]
        for group in self.param_groups[1:]:
            for key in SEARCH_KEYS:
                if group[key] != first[key]:
                    raise ValueError(
                        f"Parameter groups disagree on {key!r} ({first[key]!r} vs "
                        f"{group[key]!r}); the step size is searched once for the whole "
                        "model, so its settings must be the same in every group."
                    )
        return _config(*(first[k] for k in SEARCH_KEYS))

    def step(self, closure=None, *, loss=None):
        """One step; returns the loss at the starting point.

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model: ``zero_grad``, forward, ``backward``,
            returns the loss. Needed by line searches (trial forwards). If it
            runs no ``backward`` (whether or not it zeroes the gradients, to
            None or in place), the optimizer clears ``.grad`` and calls
            ``backward`` on the returned loss
            (:func:`~solvers.torch.optim.trial.call_with_gradients`).
        loss : Tensor, optional
            The loss whose gradient is already in ``.grad``; the closure is
            then only used for trial forwards (they share one forked RNG
            state, which is put back afterwards; their dropout masks differ
            from those of the caller's forward).
        """
        config = self._search_config()
        if closure is None and (loss is None or config.needs_trials):
            need = "a closure" if config.needs_trials else "a closure or loss="
            raise ValueError(
                f"{type(self).__name__} with line_search={self.param_groups[0]['line_search']!r} "
                f"needs {need} (step(closure) with a closure that computes and returns the loss)."
            )
        if loss is not None:
            check_loss(loss, "step(loss=...) got")
        all_params = [p for g in self.param_groups for p in g["params"]]
        group_ddp, world = distributed_group(self.process_group)
        # torch.optim's @torch.no_grad() as a block, so that mutation testing reaches step
        with torch.no_grad():
            trial = TrialEvaluator(all_params, closure, group_ddp, world) if closure else None
            try:
                if loss is None:
                    loss = trial.first()
                elif trial is not None:
                    trial.begin()
                return self._step(config, trial, loss, group_ddp, world)
            finally:
                if trial is not None:
                    trial.finish()

    def _step(self, config, trial, loss, group_ddp, world):
        f0_t = torch.as_tensor(loss).detach().to(torch.float64)
        f0_t = average_over_ranks(f0_t, group_ddp, world)
        gathered = F.gather(self.param_groups, type(self).__name__)
        parts = [F.prepare_group(g, ps, gs, self.state) for g, ps, gs in gathered if ps]
        pps = [F.inner(part.grads, part.d).to(f0_t.device) for part in parts]
        # the step's one host synchronisation before the trials: f(w) and <g, A^-1 g> per
        # group (non-finite exactly when some gradient entry is)
        f0, *pp_groups = torch.stack([f0_t, *pps]).tolist()
        if not math.isfinite(f0):
            raise ValueError(
                f"The loss at the current point is not finite ({f0}); no step was taken and "
                "the parameters and optimizer state are unchanged. Check the data and the "
                "model for NaN/inf (or lower the maximum step lr)."
            )
        loss_dtype = loss.dtype if isinstance(loss, torch.Tensor) else torch.float64
        out = F.search_step(
            config,
            parts,
            f0=f0,
            pp_groups=pp_groups,
            previous=self.param_groups[0]["step_size"],
            eps=torch.finfo(loss_dtype).eps if loss_dtype.is_floating_point else 2.0**-52,
            eta_max=max(g["lr"] for g in self.param_groups),
            trial=trial,
            origins=self._origins,
            state=self.state,
        )
        if out.searched:
            for group in self.param_groups:
                group["step_size"] = out.next_step
        return self._record(loss, out)

    def _record(self, loss, out):
        self.last_step = {
            "step_size": out.step_size,
            "forwards": 1 + out.n_evals,
            "backtracks": out.n_backtracks,
            "status": out.status,
        }
        t = self.totals
        t["steps"] += 1
        t["forwards"] += 1 + out.n_evals
        t["backtracks"] += out.n_backtracks
        t["skipped"] += int(out.step_size == 0.0)
        return loss


class AdaSLS(LineSearchOptimizer):
    """AMSGrad (or AdaGrad) with a stochastic Armijo line search.

    The paper's recommended setting (Vaswani et al. 2020): AMSGrad
    preconditioner with ``betas=(0.9, 0.99)`` momentum, Armijo with ``c=0.1``
    for deep networks (0.5 for convex problems), backtracking 0.9, initial and
    maximum step 100, step grown by ``2 ** (1 / n_batches_per_epoch)`` per
    step. ``preconditioner="adagrad"`` gives AdaGrad + Armijo (without
    momentum by default, as in the paper). See :class:`LineSearchOptimizer`
    for every parameter.

    Examples
    --------
    >>> import torch
    >>> from solvers.torch import AdaSLS
    >>> _ = torch.manual_seed(0)
    >>> X, y = torch.randn(256, 10), torch.randint(0, 3, (256,))
    >>> model = torch.nn.Sequential(torch.nn.Linear(10, 64), torch.nn.Tanh(),
    ...                             torch.nn.Linear(64, 3))
    >>> opt = AdaSLS(model.parameters(), n_batches_per_epoch=8)
    >>> for epoch in range(20):
    ...     for i in range(0, 256, 32):
    ...         def closure():
    ...             opt.zero_grad()
    ...             loss = torch.nn.functional.cross_entropy(model(X[i:i + 32]), y[i:i + 32])
    ...             loss.backward()
    ...             return loss
    ...         loss = opt.step(closure)
    >>> float(torch.nn.functional.cross_entropy(model(X), y).detach()) < 0.5
    True
    >>> sorted(opt.last_step)
    ['backtracks', 'forwards', 'status', 'step_size']
    """

    def __init__(
        self, params, lr=100.0, *, preconditioner="amsgrad", momentum=None, c=0.1, **kwargs
    ):
        if momentum is None:
            momentum = default_momentum(preconditioner)
        super().__init__(
            params,
            lr,
            preconditioner=preconditioner,
            momentum=momentum,
            c=c,
            line_search=kwargs.pop("line_search", "armijo"),
            **kwargs,
        )


class SLS(LineSearchOptimizer):
    """SGD with a stochastic Armijo (or Goldstein) line search (Vaswani et al. 2019).

    ``line_search="goldstein"`` needs ``c < 1/2``. See
    :class:`LineSearchOptimizer` for every parameter.

    Without a preconditioner the searched step is that of plain SGD: on
    attention models it settles where plain SGD trains slowly (a one-layer
    transformer on digits: 70 % test accuracy against Adam's 94 %, ``python -m
    benchmarks torch-defaults``); use :class:`AdaSLS` there.
    """

    def __init__(self, params, lr=100.0, *, c=0.1, line_search="armijo", **kwargs):
        kwargs.setdefault("momentum", "none")
        super().__init__(
            params,
            lr,
            preconditioner=kwargs.pop("preconditioner", "identity"),
            c=c,
            line_search=line_search,
            **kwargs,
        )


class SPS(LineSearchOptimizer):
    """Stochastic Polyak step ``min(eta_B, (f - f_star) / (c ||g||^2))``: one forward per step.

    Loizou et al. 2021 with the paper's smoothing (``reset="grow"``:
    ``eta_B = eta_{k-1} 2^(1/n_batches)``), ``c=0.2``; ``lr`` caps the step
    and is the first ``eta_B`` (1, the reference's initial step: on the MNIST
    MLP a first ``eta_B`` of 10 gave 0.180 training loss after one epoch
    instead of 0.142, and 100 gave 0.568, from oversized early Polyak steps).
    Works with ``step(closure)`` or, after the backward pass,
    ``step(loss=loss)``. ``preconditioner="amsgrad"`` gives the
    "Armijo SPS" of Vaswani et al. 2020. See :class:`LineSearchOptimizer`.
    """

    def __init__(self, params, lr=1.0, *, c=0.2, **kwargs):
        kwargs.setdefault("momentum", "none")
        super().__init__(
            params,
            lr,
            preconditioner=kwargs.pop("preconditioner", "identity"),
            c=c,
            line_search="polyak",
            **kwargs,
        )
