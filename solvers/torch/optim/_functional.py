# SPDX-License-Identifier: BSD-3-Clause
"""Functional core of the line-search optimizers (as ``torch/optim/adam.py``'s ``adam()``).

:class:`solvers.torch.optim.LineSearchOptimizer` keeps the closure protocol
and the ``torch.optim`` bookkeeping; the step itself is here, over lists of
tensors:

- :func:`gather` collects each group's parameters with gradients;
- :func:`prepare_group` runs the preconditioner update out of place
  (:meth:`update_foreach` of :mod:`solvers.linesearch.preconditioners`) and
  returns a :class:`GroupStep`, which knows how to put its parameters at
  ``w - eta d``;
- :func:`commit` stores a group's new state once the step is known to be valid;
- :func:`search_step` runs the model-wide search of
  :class:`~solvers.linesearch.config.SearchConfig` over the groups and moves
  every group to its final point.

Nothing is written to the optimizer state before :func:`commit`, so a
non-finite loss or a closure raising inside a trial leaves it untouched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

from solvers.linesearch.preconditioners import EMAMomentum, make_momentum, make_preconditioner

__all__ = [
    "GroupStep",
    "commit",
    "gather",
    "group_transforms",
    "inner",
    "origin_buffers",
    "prepare_group",
    "search_step",
]


def _make_transforms(preconditioner, momentum, beta1, beta2, eps, heavy_ball):
    return (
        make_preconditioner(preconditioner, beta2=beta2, eps=eps),
        make_momentum(momentum, beta1=beta1, heavy_ball=heavy_ball),
    )


# cached by a call, not a decorator, so that mutation testing (mutmut 3 leaves decorated
# functions alone) reaches the function
_transforms = lru_cache(maxsize=64)(_make_transforms)


def group_transforms(group):
    """``(preconditioner, momentum)`` objects of a parameter group's settings."""
    beta1, beta2 = group["betas"]
    return _transforms(
        group["preconditioner"], group["momentum"], beta1, beta2, group["eps"], group["heavy_ball"]
    )


@dataclass
class GroupStep:
    """One parameter group's part of a step, before and while it is taken.

    ``d = A^-1 g`` and ``denom = A`` (None for the identity); ``new_states``
    and ``steps`` are the preconditioner state and step counts to store on
    :func:`commit`; ``origin`` holds ``w`` once a trial moved the parameters
    and ``at`` is the step they sit at (0: at ``w``).
    """

    group: dict
    params: list
    grads: list
    steps: list
    new_states: list
    d: list
    denom: list | None
    origin: list | None = None
    at: float = 0.0

    def move_to(self, eta):
        """Put the parameters at ``w - eta d`` (``w`` itself when ``eta`` is 0)."""
        if eta == self.at:
            return
        if self.at:
            torch._foreach_copy_(self.params, self.origin)
        if eta:
            torch._foreach_add_(self.params, self.d, alpha=-eta)
        self.at = eta


def gather(param_groups, owner):
    """Per group: ``(group, params with grads, grads)``; the state is not touched."""
    out = []
    for group in param_groups:
        params, grads = [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError(f"{owner} does not support sparse gradients.")
            params.append(p)
            grads.append(p.grad)
        out.append((group, params, grads))
    return out


def prepare_group(group, params, grads, state):
    """The group's :class:`GroupStep`: the preconditioner update, out of place.

    The sums of squares start at the smallest normal number (see
    :mod:`solvers.linesearch.preconditioners`: keeps ``sqrt`` off subnormals).
    """
    states = [state.get(p, {}) for p in params]
    steps = [st.get("step", 0) + 1 for st in states]
    preconditioner, _ = group_transforms(group)
    new, d, denom = preconditioner.update_foreach(params, grads, states, steps)
    return GroupStep(group, params, grads, steps, new, d, denom)


def commit(state, part):
    """Store ``part``'s new state and fold its gradients into the momentum; the states."""
    _, momentum = group_transforms(part.group)
    states = []
    for p, k, new in zip(part.params, part.steps, part.new_states, strict=True):
        st = state[p]
        if not st:
            st.update(momentum.init_foreach(p))
        st["step"] = k
        st.update(new)
        states.append(st)
    momentum.update_foreach_(states, part.grads)
    return states


def inner(a, b):
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


def origin_buffers(buffers, params):
    """Persistent buffers (``buffers``: param -> tensor) holding the step's starting point ``w``.

    Trials are set to ``w - eta d`` from it and a failed search restores it
    exactly (moving back and forth along ``d`` would drift by rounding,
    badly so in bfloat16). One parameter-sized buffer, reused every step.
    """
    out = []
    for p in params:
        buf = buffers.get(p)
        if buf is None or buf.shape != p.shape or buf.dtype != p.dtype or buf.device != p.device:
            buf = buffers[p] = torch.empty_like(p)
        out.append(buf)
    torch._foreach_copy_(out, params)
    return out


def search_step(config, parts, *, f0, pp_groups, previous, eps, eta_max, trial, origins, state):
    """The model-wide step: search once, then commit and move every group.

    A group's step is ``min(eta, lr)``. ``trial()`` returns the loss at the
    parameters' current values; ``origins`` are the optimizer's persistent
    buffers for ``w``. Returns the :class:`SearchOutcome`.
    """
    lrs = [part.group["lr"] for part in parts]
    ok = all(math.isfinite(v) for v in pp_groups)
    pp = math.fsum(pp_groups) if ok else math.nan

    def evaluate(eta):
        for part, lr in zip(parts, lrs, strict=True):
            if part.origin is None:
                part.origin = origin_buffers(origins, part.params)
            part.move_to(min(eta, lr))
        return trial().item()

    def decrease(eta):
        return sum(min(eta, lr) * p for lr, p in zip(lrs, pp_groups, strict=False))

    try:
        out = config.search(
            f0,
            pp,
            previous=previous,
            eta_max=eta_max,
            eps=eps,
            decrease=decrease,
            evaluate=evaluate,
        )
    except BaseException:
        # a trial raised (the closure, or the user interrupting): back to w, state untouched
        for part in parts:
            part.move_to(0.0)
        raise
    if out.status == "nonfinite_gradient":
        return out
    for part, lr in zip(parts, lrs, strict=True):
        states = commit(state, part)
        if out.step_size > 0.0:
            finish(part, states, min(out.step_size, lr))
        else:
            part.move_to(0.0)
    return out


def finish(part, states, eta):
    """Move a group to its final point with step ``eta`` (after :func:`commit`).

    The momentum's :meth:`finish_foreach_`, except for AMSGrad's EMA momentum
    after a trial moved the parameters: ``w - eta A^-1 m_k / (1 - beta1^k)``
    is then written from the saved ``w`` in one ``addcdiv(out=)`` per tensor
    instead of restoring ``w`` and adding to it (one pass over the parameters
    fewer; the same operations on the same values, so the same bits).
    """
    momentum = group_transforms(part.group)[1]
    if not (type(momentum) is EMAMomentum and part.denom is not None and part.at):
        momentum.finish_foreach_(part, states, eta)
        return
    for p, w, st, denom in zip(part.params, part.origin, states, part.denom, strict=True):
        scale = -eta / (1.0 - momentum.beta1 ** st["step"])
        torch.addcdiv(w, st["exp_avg"], denom, value=scale, out=p)
    part.at = math.nan  # off the search line: no move_to from here
