# SPDX-License-Identifier: BSD-3-Clause
"""The small-batch proximal regulariser, attached to any ``torch.optim`` optimizer.

Zhang, Qu, Chen, Metaxas 2019 ("Small-batch training with a trust region
regulariser", IJCAI; reference code huiqu18/TRAlgorithm, ``TRSGD.py``)
train with minibatches of 8 by adding a proximal term that keeps the
iterates near an anchor refreshed every ``n`` steps: at step ``k`` of a cycle
(``k = 0 ... n - 1``)

    w~ <- w                                       (k = 0)
    g  =  grad f_B(w) + 2 lam (w - w~)            (the gradient of f_B + lam |w - w~|^2)

and the optimizer steps with ``g`` (the term enters SGD's momentum and
weight decay, or Adam's moments, as the minibatch gradient does). The
reference adds two schedules, both options here:

- ``lam_schedule="inverse_lr"``: ``lam_t = lam * lr_0 / lr_t`` (the
  reference's ``lambda_w / lr``: lam grows 10x at each 10x LR decay);
- ``lr_decay="harmonic"``: step ``k`` of a cycle runs at ``lr / (k + 1)``.
  Its mean step over a cycle is ``H_n / n`` times ``lr`` (0.293 for
  ``n = 10``, :meth:`Proximal.mean_step_factor`): a baseline at the same
  mean step is the fair comparison the reference's plots lack.

:class:`Proximal` registers a step pre-hook and a step post-hook (the sparse
controllers' pattern, :mod:`solvers.torch.sparse.controller`), so the loop
(``zero_grad / backward / step``), LR schedulers, ``GradScaler`` and DDP are
unchanged:

- pre-hook: refresh the anchor when the cycle starts; add ``2 lam (w - w~)``
  to every gradient (one ``_foreach`` pass per group, no host
  synchronisation); with ``lr_decay="harmonic"`` scale each group's ``lr``;
- post-hook: put the scheduler's ``lr`` back and count the step.

With ``step(closure)`` (line searches such as
:class:`~solvers.torch.AdaSLS`, or LBFGS) the closure is wrapped instead:
it returns ``f_B(w) + lam |w - w~|^2`` at every point it is evaluated
(trial points included) and, when it computes gradients, adds the term's
gradient after its ``backward``. The Armijo condition then compares the
regularised loss with the regularised gradient, so the accepted step
decreases the objective the step follows. With ``lr_decay="harmonic"`` the
line search's maximum step ``lr`` is what decays.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import ClassVar

import torch

from solvers._validation import StrOptions, interval, validate_params
from solvers.torch.optim.trial import call_with_gradients
from solvers.torch.sparse.amp import amp_grad_scale, amp_step_skipped

__all__ = ["LAM_SCHEDULES", "LR_DECAYS", "Proximal"]

#: ``lam_schedule`` options of :class:`Proximal`
LAM_SCHEDULES = ("constant", "inverse_lr")
#: ``lr_decay`` options of :class:`Proximal`
LR_DECAYS = ("none", "harmonic")


class Proximal:
    """Add ``lam |w - w~|^2`` (anchor refreshed every ``anchor_every`` steps) to any optimizer.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        Any optimizer (SGD, Adam, AdamW, :class:`~solvers.torch.AdaSLS`...);
        every parameter it optimises gets the term.
    lam : float, default 0.1
        ``lam >= 0`` (the reference's 0.1).
    anchor_every : int, default 10
        ``n``: optimizer steps per anchor (the reference's 10). 1 makes the
        term vanish (the anchor is the current point at every step).
    lam_schedule : {"constant", "inverse_lr"}, default "constant"
        ``"inverse_lr"``: ``lam * lr_0 / lr`` per group, ``lr_0`` the
        group's ``lr`` when the wrapper was attached (a group at ``lr = 0``
        gets no term).
    lr_decay : {"none", "harmonic"}, default "none"
        ``"harmonic"``: step ``k`` of a cycle uses ``lr / (k + 1)``.

    Attributes
    ----------
    anchors : list of torch.Tensor
        ``w~`` for each parameter, in the order of the optimizer's groups.
    step_count : int
        Optimizer steps since attachment (steps skipped by ``GradScaler``
        do not count).

    Notes
    -----
    If a step raises (a non-finite loss in a line search), the post-hook
    does not run; a harmonic ``lr`` scaled for that step is put back at the
    start of the next step.

    Examples
    --------
    >>> import torch
    >>> from solvers.torch import Proximal
    >>> _ = torch.manual_seed(0)
    >>> X, y = torch.randn(64, 5), torch.randint(0, 2, (64,))
    >>> model = torch.nn.Linear(5, 2)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    >>> prox = Proximal(opt, lam=0.1, anchor_every=10, lr_decay="harmonic")
    >>> for step in range(25):
    ...     i = 8 * (step % 8)
    ...     opt.zero_grad()
    ...     torch.nn.functional.cross_entropy(model(X[i:i + 8]), y[i:i + 8]).backward()
    ...     opt.step()
    >>> prox.step_count, opt.param_groups[0]["lr"]
    (25, 0.1)
    >>> round(Proximal.mean_step_factor(10), 3)
    0.293
    """

    _parameter_constraints: ClassVar[dict] = {
        "lam": [interval(Real, 0, None, closed="left")],
        "anchor_every": [interval(Integral, 1, None, closed="left")],
        "lam_schedule": [StrOptions(set(LAM_SCHEDULES))],
        "lr_decay": [StrOptions(set(LR_DECAYS))],
    }

    def __init__(
        self, optimizer, lam=0.1, anchor_every=10, *, lam_schedule="constant", lr_decay="none"
    ):
        validate_params(
            self._parameter_constraints,
            {
                "lam": lam,
                "anchor_every": anchor_every,
                "lam_schedule": lam_schedule,
                "lr_decay": lr_decay,
            },
            "Proximal",
        )
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer
        self.lam = float(lam)
        self.anchor_every = int(anchor_every)
        self.lam_schedule = lam_schedule
        self.lr_decay = lr_decay
        self.groups = [list(g["params"]) for g in optimizer.param_groups]
        self.anchors = [p.detach().clone() for ps in self.groups for p in ps]
        self.initial_lrs = [_as_float(g["lr"]) for g in optimizer.param_groups]
        self.step_count = 0
        self._saved_lrs = None
        self._skipped = False
        self._handles = [
            optimizer.register_step_pre_hook(self._pre_step),
            optimizer.register_step_post_hook(self._post_step),
        ]

    @staticmethod
    def mean_step_factor(anchor_every, lr_decay="harmonic"):
        """Mean of the ``lr`` multipliers over a cycle: ``H_n / n`` (harmonic) or 1."""
        if lr_decay == "none":
            return 1.0
        return sum(1.0 / (k + 1) for k in range(anchor_every)) / anchor_every

    @property
    def cycle_position(self):
        """``k``, the index of the next step in its anchor cycle."""
        return self.step_count % self.anchor_every

    def group_lams(self):
        """``lam`` of each parameter group at the current ``lr`` (the ``lam_schedule``)."""
        if self.lam_schedule == "constant":
            return [self.lam] * len(self.groups)
        lams = []
        for g, lr0 in zip(self.optimizer.param_groups, self.initial_lrs, strict=True):
            lr = _as_float(g["lr"])
            lams.append(self.lam * lr0 / lr if lr > 0 else 0.0)
        return lams

    # -- hooks --------------------------------------------------------------------------------

    def _pre_step(self, optimizer, args, kwargs):
        self._restore_lrs()  # a previous step raised before its post-hook
        if len(optimizer.param_groups) != len(self.groups):
            raise RuntimeError(
                f"the optimizer has {len(optimizer.param_groups)} parameter groups, "
                f"{len(self.groups)} when Proximal was attached: attach Proximal after "
                "add_param_group (no step was taken)"
            )
        self._skipped = amp_step_skipped(optimizer)
        if self._skipped:
            return None
        k = self.cycle_position
        if k == 0:
            with torch.no_grad():
                torch._foreach_copy_(self.anchors, [p for ps in self.groups for p in ps])
        lams = self.group_lams()  # from the scheduler's lr, before the harmonic decay
        if self.lr_decay == "harmonic" and k > 0:
            self._saved_lrs = [g["lr"] for g in optimizer.param_groups]
            for g in optimizer.param_groups:
                g["lr"] = g["lr"] / (k + 1)
        if not any(lams):
            return None
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
        if closure is None:
            if k == 0:  # w == w~: the gradient of the term is 0
                return None
            scale = amp_grad_scale(optimizer)  # a fused optimizer: gradients still scaled
            with torch.no_grad():
                self._add_gradient(lams, scale)
            return None
        wrapped = self._wrap(closure, lams)
        if "closure" in kwargs:
            return args, {**kwargs, "closure": wrapped}
        return (args[0], wrapped, *args[2:]), kwargs

    def _post_step(self, optimizer, args, kwargs):
        self._restore_lrs()
        if not self._skipped:
            self.step_count += 1

    def _restore_lrs(self):
        if self._saved_lrs is not None:
            for g, lr in zip(self.optimizer.param_groups, self._saved_lrs, strict=True):
                g["lr"] = lr
            self._saved_lrs = None

    # -- the term -----------------------------------------------------------------------------

    def _pairs(self, lams):
        """Per group with ``lam > 0``: (lam, params, anchors)."""
        i = 0
        for lam, ps in zip(lams, self.groups, strict=True):
            anchors = self.anchors[i : i + len(ps)]
            i += len(ps)
            if lam > 0 and ps:
                yield lam, ps, anchors

    def _add_gradient(self, lams, scale=None):
        """``p.grad += 2 lam (p - w~)`` (times the AMP scale) for parameters with a gradient."""
        for lam, ps, anchors in self._pairs(lams):
            have = [(p, a) for p, a in zip(ps, anchors, strict=True) if p.grad is not None]
            if not have:
                continue
            diffs = torch._foreach_sub([p.detach() for p, _ in have], [a for _, a in have])
            factor = 2.0 * lam
            if scale is not None:
                torch._foreach_mul_(diffs, scale.to(diffs[0].dtype) * factor)
                torch._foreach_add_([p.grad for p, _ in have], diffs)
            else:
                torch._foreach_add_([p.grad for p, _ in have], diffs, alpha=factor)

    def penalty(self, lams=None):
        """``sum_groups lam |w - w~|^2`` at the current weights, a 0-dim tensor (no sync)."""
        lams = self.group_lams() if lams is None else lams
        total = None
        with torch.no_grad():
            for lam, ps, anchors in self._pairs(lams):
                diffs = torch._foreach_sub([p.detach() for p in ps], anchors)
                sq = torch.stack([d.float().pow(2).sum() for d in diffs]).sum() * lam
                total = sq if total is None else total + sq.to(total.device)
        if total is None:
            return torch.zeros(())
        return total

    def _wrap(self, closure, lams):
        params = [p for ps in self.groups for p in ps]

        def proximal_closure(*a, **k):
            with_grad = torch.is_grad_enabled()  # trial forwards of a line search run without
            # a closure that leaves backward to the optimizer gets it here, so the added
            # term is not mistaken for the closure's gradient
            loss = call_with_gradients(closure, params, *a, **k) if with_grad else closure(*a, **k)
            penalty = self.penalty(lams)
            if with_grad:
                with torch.no_grad():
                    self._add_gradient(lams)
            if torch.is_tensor(loss):
                return loss + penalty.to(device=loss.device, dtype=loss.dtype)
            return loss + float(penalty)

        return proximal_closure

    def remove(self):
        """Detach the hooks (a harmonic ``lr`` scaled for a running step is put back)."""
        self._restore_lrs()
        for h in self._handles:
            h.remove()
        self._handles = []

    # -- checkpoints --------------------------------------------------------------------------

    def state_dict(self):
        """Step, anchors and the groups' initial ``lr`` (the settings are the constructor's)."""
        return {
            "step_count": self.step_count,
            "anchors": [a.clone() for a in self.anchors],
            "initial_lrs": list(self.initial_lrs),
        }

    def load_state_dict(self, state):
        """Restore :meth:`state_dict` in place; checked whole before anything changes."""
        if not isinstance(state, dict):
            raise ValueError(f"state_dict must be a dict; got {type(state).__name__}")
        missing = {"step_count", "anchors", "initial_lrs"} - set(state)
        if missing:
            raise ValueError(f"state_dict lacks {sorted(missing)} (not from Proximal.state_dict())")
        count = state["step_count"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"state_dict step_count must be an int >= 0; got {count!r}")
        anchors, lrs = state["anchors"], state["initial_lrs"]
        if not isinstance(anchors, (list, tuple)) or len(anchors) != len(self.anchors):
            n = len(anchors) if isinstance(anchors, (list, tuple)) else type(anchors).__name__
            raise ValueError(
                f"state_dict anchors hold {n} tensors; the optimizer has {len(self.anchors)} "
                "parameters"
            )
        for i, (a, mine) in enumerate(zip(anchors, self.anchors, strict=True)):
            if not torch.is_tensor(a) or a.shape != mine.shape:
                shape = tuple(a.shape) if torch.is_tensor(a) else type(a).__name__
                raise ValueError(
                    f"state_dict anchors[{i}] has shape {shape}; expected {tuple(mine.shape)}"
                )
        if not isinstance(lrs, (list, tuple)) or len(lrs) != len(self.initial_lrs):
            raise ValueError(
                f"state_dict initial_lrs must list one lr per parameter group "
                f"({len(self.initial_lrs)}); got {lrs!r}"
            )
        with torch.no_grad():
            for a, mine in zip(anchors, self.anchors, strict=True):
                mine.copy_(a)
        self.initial_lrs = [float(x) for x in lrs]
        self.step_count = int(count)


def _as_float(lr):
    return float(lr.item()) if torch.is_tensor(lr) else float(lr)
