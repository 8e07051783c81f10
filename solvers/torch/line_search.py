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

All three are :class:`LineSearchOptimizer` with different defaults; the maths
(step rules, resets, guards) is :mod:`solvers.step_size`, the preconditioners
and momentum are the formulas of :mod:`solvers.adaptive` written with
``torch._foreach_*`` kernels, and the trial forwards run through
:class:`solvers.torch.trial.TrialEvaluator` (same dropout masks, frozen
BatchNorm buffers, DDP-averaged losses).

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
- A non-finite loss at the current point raises ``ValueError`` with parameters
  and state unchanged; a non-finite gradient skips the step (state unchanged),
  as ``GradScaler`` does.
- Diagnostics: :attr:`LineSearchOptimizer.last_step` (accepted step, forwards,
  backtracks, status) and :attr:`LineSearchOptimizer.totals`.
"""

from __future__ import annotations

import math
import weakref
from functools import lru_cache

import torch
from torch.optim import Optimizer

from solvers.adaptive import PRECONDITIONERS
from solvers.step_size import (
    check_int,
    check_positive,
    check_reset,
    make_step_rule,
    noise_tolerance,
    plan_step,
)
from solvers.torch.trial import TrialEvaluator, average_over_ranks, distributed_group

#: settings of the (single, model-wide) step-size search; equal across groups
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
LINE_SEARCHES = ("armijo", "goldstein", "polyak", "fixed")
MOMENTA = ("ema", "heavy_ball", "none")


@lru_cache(maxsize=64)
def _rule(line_search, c, beta_b, beta_f, max_backtracks):
    return make_step_rule(
        line_search, c=c, beta_b=beta_b, beta_f=beta_f, max_backtracks=max_backtracks
    )


def _check_group(group):
    check_positive("lr", group["lr"], strict=False)
    if group["preconditioner"] not in PRECONDITIONERS:
        raise ValueError(
            f"preconditioner must be one of {PRECONDITIONERS}, got {group['preconditioner']!r}."
        )
    if group["momentum"] not in MOMENTA:
        raise ValueError(f"momentum must be one of {MOMENTA}, got {group['momentum']!r}.")
    if group["line_search"] not in LINE_SEARCHES:
        raise ValueError(
            f"line_search must be one of {LINE_SEARCHES}, got {group['line_search']!r}."
        )
    betas = group["betas"]
    if len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}.")
    check_positive("betas[0]", betas[0], strict=False, upper=1.0)
    check_positive("betas[1]", betas[1], strict=False, upper=1.0)
    check_positive("eps", group["eps"], strict=False)
    check_positive("heavy_ball", group["heavy_ball"], strict=False, upper=1.0)
    if check_positive("gamma", group["gamma"]) < 1.0:
        raise ValueError(f"gamma must be >= 1, got {group['gamma']!r}.")
    check_positive("n_batches_per_epoch", group["n_batches_per_epoch"])
    check_reset(group["reset"])
    check_int("max_backtracks", group["max_backtracks"])
    if not math.isfinite(group["f_star"]):
        raise ValueError(f"f_star must be finite, got {group['f_star']!r}.")
    _rule(
        group["line_search"], group["c"], group["beta_b"], group["beta_f"], group["max_backtracks"]
    )


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
        _check_group(defaults)
        super().__init__(params, defaults)
        self.process_group = process_group
        self.last_step = {}
        self._origins = {}
        self.totals = {"steps": 0, "forwards": 0, "backtracks": 0, "skipped": 0}

    def add_param_group(self, param_group):
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        _check_group(group)
        if group["step_size"] is None:
            group["step_size"] = float(group["lr"])

    def state_dict(self):
        sd = super().state_dict()
        sd["line_search_totals"] = dict(self.totals)
        return sd

    def load_state_dict(self, state_dict):
        totals = state_dict.get("line_search_totals")
        super().load_state_dict({k: v for k, v in state_dict.items() if k != "line_search_totals"})
        if totals is not None:
            self.totals = dict(totals)

    # -- the step ---------------------------------------------------------------------------

    def _search_settings(self):
        first = self.param_groups[0]
        for group in self.param_groups[1:]:
            for key in SEARCH_KEYS:
                if group[key] != first[key]:
                    raise ValueError(
                        f"Parameter groups disagree on {key!r} ({first[key]!r} vs "
                        f"{group[key]!r}); the step size is searched once for the whole "
                        "model, so its settings must be the same in every group."
                    )
        return first

    def _gather(self):
        """Per group: (group, params with grads, grads); the state is not touched."""
        out = []
        for group in self.param_groups:
            params, grads = [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients.")
                params.append(p)
                grads.append(p.grad)
            out.append((group, params, grads))
        return out

    @staticmethod
    def _candidate(group, params, grads, states):
        """The preconditioner update, out of place: ``(steps, new_state, d, denom)``.

        ``d = A^-1 g`` and ``denom = A`` (None for the identity). Nothing is
        written to the optimizer state, so a step found invalid afterwards (a
        non-finite loss or gradient) leaves it untouched; :meth:`_commit`
        stores the new tensors. The sums of squares start at the smallest
        normal number (see :mod:`solvers.adaptive`: keeps ``sqrt`` off
        subnormals).
        """
        steps = [st.get("step", 0) + 1 for st in states]
        kind = group["preconditioner"]
        new = [{} for _ in states]

        def previous(key, fill):
            return [
                st[key] if key in st else torch.full_like(p, fill(p))
                for p, st in zip(params, states, strict=True)
            ]

        def tiny(p):
            return torch.finfo(p.dtype).tiny

        if kind == "identity":
            return steps, new, grads, None
        if kind == "adagrad":
            sum_sq = torch._foreach_addcmul(previous("sum_sq", tiny), grads, grads)
            denom = torch._foreach_sqrt(sum_sq)
            torch._foreach_add_(denom, group["eps"])
            for nw, t in zip(new, sum_sq, strict=True):
                nw["sum_sq"] = t
        else:
            beta2 = group["betas"][1]
            v = torch._foreach_mul(previous("exp_avg_sq", lambda p: 0.0), beta2)
            torch._foreach_addcmul_(v, grads, grads, value=1.0 - beta2)
            vmax = torch._foreach_maximum(previous("max_exp_avg_sq", tiny), v)
            denom = torch._foreach_sqrt(vmax)
            torch._foreach_div_(denom, [math.sqrt(1.0 - beta2**k) for k in steps])
            torch._foreach_add_(denom, group["eps"])
            for nw, a, b in zip(new, v, vmax, strict=True):
                nw["exp_avg_sq"], nw["max_exp_avg_sq"] = a, b
        return steps, new, torch._foreach_div(grads, denom), denom

    def _commit(self, group, params, grads, steps, new):
        """Store the candidate state and update the first moment; the per-param states."""
        states = []
        for p, k, nw in zip(params, steps, new, strict=True):
            st = self.state[p]
            if not st and group["momentum"] == "ema":
                st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            elif not st and group["momentum"] == "heavy_ball":
                st["displacement"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            st["step"] = k
            st.update(nw)
            states.append(st)
        if group["momentum"] == "ema":
            torch._foreach_lerp_([st["exp_avg"] for st in states], grads, 1.0 - group["betas"][0])
        return states

    @staticmethod
    def _inner(a, b):
        """``sum_i <a_i, b_i>`` as a float64 tensor on ``a[0]``'s device.

        Dots of low-precision tensors are taken in float32 (a float16 dot
        overflows at 65504).
        """
        device = a[0].device
        dots = []
        for x, y in zip(a, b, strict=False):
            if x.dtype in (torch.float16, torch.bfloat16):
                x, y = x.float(), y.float()
            dots.append(torch.dot(x.reshape(-1), y.reshape(-1)).to(device, torch.float64))
        return torch.stack(dots).sum()

    def _origin(self, params):
        """Persistent buffers holding the step's starting point ``w`` (one per parameter).

        Trials are set to ``w - eta d`` from it and a failed search restores it
        exactly (moving back and forth along ``d`` would drift by rounding,
        badly so in bfloat16). One parameter-sized buffer, reused every step.
        """
        out = []
        for p in params:
            buf = self._origins.get(p)
            if (
                buf is None
                or buf.shape != p.shape
                or buf.dtype != p.dtype
                or buf.device != p.device
            ):
                buf = self._origins[p] = torch.empty_like(p)
            out.append(buf)
        torch._foreach_copy_(out, params)
        return out

    @staticmethod
    def _move(move, eta):
        """Put ``move``'s parameters at ``w - eta d`` (``w`` itself when ``eta`` is 0)."""
        if eta == move["at"]:
            return
        params, origin = move["params"], move["origin"]
        if move["at"]:
            torch._foreach_copy_(params, origin)
        if eta:
            torch._foreach_add_(params, move["d"], alpha=-eta)
        move["at"] = eta

    def _finish_move(self, group, move, states, eta):
        """Move the parameters from ``w`` (or a trial point) to the step's final point."""
        params, d, denom, momentum = move["params"], move["d"], move["denom"], group["momentum"]
        if momentum == "none":
            self._move(move, eta)
            return
        self._move(move, 0.0)
        if momentum == "ema":
            beta1 = group["betas"][0]
            m = [st["exp_avg"] for st in states]
            scales = [-eta / (1.0 - beta1 ** st["step"]) for st in states]
            if denom is not None:
                torch._foreach_addcdiv_(params, m, denom, scales)
            else:
                torch._foreach_add_(params, torch._foreach_mul(m, scales))
            return
        delta = [st["displacement"] for st in states]
        torch._foreach_mul_(delta, group["heavy_ball"])
        torch._foreach_add_(delta, d, alpha=-eta)
        torch._foreach_add_(params, delta)

    @staticmethod
    def _grad_marks(params):
        """What identifies the current gradients (weak references and in-place versions)."""
        return [
            (weakref.ref(p.grad), p.grad._version) if p.grad is not None else None for p in params
        ]

    @staticmethod
    def _grads_unchanged(params, marks):
        for p, mark in zip(params, marks, strict=True):
            if mark is None or p.grad is None:
                if (mark is None) != (p.grad is None):
                    return False
            elif mark[0]() is not p.grad or mark[1] != p.grad._version:
                return False
        return True

    @torch.no_grad()
    def step(self, closure=None, *, loss=None):
        """One step; returns the loss at the starting point.

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model: ``zero_grad``, forward, ``backward``,
            returns the loss. Needed by line searches (trial forwards). If it
            leaves the gradients untouched (no ``backward``), the optimizer
            calls ``backward`` on the returned loss.
        loss : Tensor, optional
            The loss whose gradient is already in ``.grad``; the closure is
            then only used for trial forwards (they share one forked RNG
            state, which is put back afterwards; their dropout masks differ
            from those of the caller's forward).
        """
        settings = self._search_settings()
        rule = _rule(
            settings["line_search"],
            settings["c"],
            settings["beta_b"],
            settings["beta_f"],
            settings["max_backtracks"],
        )
        if closure is None and (loss is None or rule.needs_trials):
            need = "a closure" if rule.needs_trials else "a closure or loss="
            raise ValueError(
                f"{type(self).__name__} with line_search={settings['line_search']!r} needs "
                f"{need} (step(closure) with a closure that computes and returns the loss)."
            )
        all_params = [p for g in self.param_groups for p in g["params"]]
        group_ddp, world = distributed_group(self.process_group)
        trial = TrialEvaluator(all_params, closure, group_ddp, world) if closure else None
        try:
            if loss is None:
                marks = self._grad_marks(all_params)
                loss = trial.first()
                if loss is None:
                    raise ValueError("The closure returned None; it must return the loss.")
                if (
                    isinstance(loss, torch.Tensor)
                    and loss.requires_grad
                    and self._grads_unchanged(all_params, marks)
                ):
                    # the closure did not run backward: the gradients present (if any) are
                    # a previous step's, so replace them rather than accumulate into them
                    for p in all_params:
                        p.grad = None
                    with torch.enable_grad():
                        loss.backward()
            elif trial is not None:
                trial.begin()
            return self._step(settings, rule, trial, loss, group_ddp, world)
        finally:
            if trial is not None:
                trial.finish()

    def _step(self, settings, rule, trial, loss, group_ddp, world):
        f0_t = torch.as_tensor(loss).detach().to(torch.float64)
        f0_t = average_over_ranks(f0_t, group_ddp, world)
        moves, pps = [], []
        for group, params, grads in self._gather():
            if params:
                states = [self.state.get(p, {}) for p in params]
                steps, new, d, denom = self._candidate(group, params, grads, states)
                moves.append(
                    {
                        "group": group,
                        "params": params,
                        "grads": grads,
                        "steps": steps,
                        "new": new,
                        "d": d,
                        "denom": denom,
                        "origin": None,
                        "at": 0.0,
                    }
                )
                pps.append(self._inner(grads, d).to(f0_t.device))
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
        eps = torch.finfo(loss_dtype).eps if loss_dtype.is_floating_point else 2.0**-52
        if not all(math.isfinite(v) for v in pp_groups):
            return self._record(loss, 0.0, 0, 0, "nonfinite_gradient", skipped=True)

        lr_max = max(g["lr"] for g in self.param_groups)
        n_batches = settings["n_batches_per_epoch"]
        eta0, why = plan_step(
            rule,
            f0=f0,
            pp=math.fsum(pp_groups),
            previous=settings["step_size"],
            eta_max=lr_max,
            reset=settings["reset"],
            growth=settings["gamma"] ** (1.0 / n_batches),
            f_star=settings["f_star"],
            polyak_init=settings["polyak_init"],
            eps=eps,
        )
        if why is not None:
            for mv in moves:
                self._commit(mv["group"], mv["params"], mv["grads"], mv["steps"], mv["new"])
            return self._record(loss, 0.0, 0, 0, why, skipped=True)

        lrs = [mv["group"]["lr"] for mv in moves]
        if rule.needs_trials:
            for mv in moves:
                mv["origin"] = self._origin(mv["params"])

        def evaluate(eta):
            for mv, lr in zip(moves, lrs, strict=False):
                self._move(mv, min(eta, lr))
            return trial().item()

        def decrease(eta):
            return sum(min(eta, lr) * p for lr, p in zip(lrs, pp_groups, strict=False))

        try:
            out = rule.search(
                f0,
                eta0,
                decrease,
                evaluate if rule.needs_trials else None,
                noise_tolerance(f0, eps),
                lr_max,
            )
        except BaseException:
            # a trial raised (the closure, or the user interrupting): back to w, state untouched
            for mv in moves:
                self._move(mv, 0.0)
            raise
        for group in self.param_groups:
            group["step_size"] = out.next_step
        for mv, lr in zip(moves, lrs, strict=False):
            group = mv["group"]
            states = self._commit(group, mv["params"], mv["grads"], mv["steps"], mv["new"])
            if out.step_size > 0.0:
                self._finish_move(group, mv, states, min(out.step_size, lr))
            else:
                self._move(mv, 0.0)
        return self._record(
            loss,
            out.step_size,
            out.n_evals,
            out.n_backtracks,
            out.status,
            skipped=out.step_size == 0.0,
        )

    def _record(self, loss, eta, n_evals, n_backtracks, status, skipped):
        self.last_step = {
            "step_size": eta,
            "forwards": 1 + n_evals,
            "backtracks": n_backtracks,
            "status": status,
        }
        t = self.totals
        t["steps"] += 1
        t["forwards"] += 1 + n_evals
        t["backtracks"] += n_backtracks
        t["skipped"] += int(skipped)
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
            momentum = "ema" if preconditioner == "amsgrad" else "none"
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
