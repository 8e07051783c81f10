# SPDX-License-Identifier: BSD-3-Clause
"""The sparse-training controller: masks attached to any ``torch.optim`` optimizer.

:class:`MaskedTraining` registers a step pre-hook and a step post-hook on the
optimizer (``register_step_pre_hook``), so the user's loop
(``zero_grad / backward / optimizer.step()``), LR schedulers, ``GradScaler``
(a skipped step is not counted: it runs no hook, or, for a fused optimizer,
the hooks see ``found_inf`` and do nothing), DDP and ``torch.compile(model)``
are unchanged. Weights are stored dense with zeros ("data masking"): the
forward pass is untouched.

- pre-hook: the gradients of masked weights are multiplied by the mask, so
  SGD momentum, Adam moments and weight decay never see inactive positions
  (one fused ``_foreach_mul_`` for all layers); with ``step(closure)`` the
  closure is wrapped so the gradients it computes are masked right after its
  ``backward``;
- post-hook: the weights are multiplied by the mask, unless the optimizer is
  one of :data:`~solvers.torch.sparse.optimizer_state.ZERO_PRESERVING` (SGD,
  Adam, AdamW, ...) and no closure was passed: then a weight with zero value,
  gradient and state stays exactly 0 and the multiply is skipped (it is half
  the masking cost). The step counter advances and subclasses update the
  masks when due (:meth:`MaskedTraining._due`, :meth:`MaskedTraining._update`).

Masks live on the controller (``state_dict``), not as model buffers, so a
checkpoint of the model loads into the plain model; ``load_state_dict`` of
the controller restores masks, ever-active masks, the step and the
statistics, and a resumed run continues bit-for-bit.

:class:`StaticSparsity` is the controller on a fixed mask.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from solvers.torch.sparse.amp import amp_step_skipped
from solvers.torch.sparse.densities import layer_densities
from solvers.torch.sparse.distributed import broadcast_masks_
from solvers.torch.sparse.layers import DEFAULT_LAYER_TYPES, select_layers
from solvers.torch.sparse.optimizer_state import ZERO_PRESERVING, zero_optimizer_state_
from solvers.torch.sparse.topk import random_masks

__all__ = ["MaskChange", "MaskUpdate", "MaskedTraining", "StaticSparsity"]


class MaskChange(NamedTuple):
    """A layer's new mask and the positions whose weight and state restart at 0."""

    new: torch.Tensor
    reset: torch.Tensor


class MaskUpdate(NamedTuple):
    """What :meth:`MaskedTraining._update` returns: the changes and a history record."""

    changes: dict  # str -> MaskChange
    record: dict | None


class MaskedTraining:
    """Fixed-topology masked training through optimizer step hooks.

    The base of :class:`~solvers.torch.DynamicSparsity`,
    :class:`~solvers.torch.GradualMagnitudePruning` and
    :class:`~solvers.torch.StaticSparsity`; subclasses override
    :meth:`_due` and :meth:`_update` (module docstring).

    Parameters
    ----------
    model : torch.nn.Module
    optimizer : torch.optim.Optimizer
        Must optimise every selected weight.
    masks : dict of str to torch.Tensor
        Boolean masks keyed by qualified parameter name (see
        :func:`~solvers.torch.select_layers`).
    process_group : torch.distributed.ProcessGroup, optional
        The data-parallel group whose ranks must hold identical masks; the
        default is the world group when torch.distributed is initialised.
        New masks are broadcast from the group's first rank.

    Attributes
    ----------
    masks : dict of str to torch.Tensor
        Boolean masks, updated in place.
    step_count : int
        Optimizer steps taken since the controller was attached (steps skipped
        by ``GradScaler`` are not counted).
    history : list of dict
        One record per mask update (``state_dict`` keeps them as dicts).
    """

    def __init__(self, model, optimizer, masks, *, process_group=None):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        self.model = model
        self.optimizer = optimizer
        self.params = _masked_params(model, optimizer, masks)
        self.masks = {}
        self._float_masks = {}
        for name, m in masks.items():
            p = self.params[name]
            if m.shape != p.shape:
                raise ValueError(
                    f"mask of {name!r} has shape {tuple(m.shape)}, not {tuple(p.shape)}"
                )
            self.masks[name] = m.to(device=p.device, dtype=torch.bool).clone()
            self._float_masks[name] = self.masks[name].to(p.dtype)
        self.process_group = process_group
        self.step_count = 0
        self.history = []
        self._handles = []
        # re-masking the weights after every step is only needed when the step
        # could move a weight whose gradient and state are 0
        self._remask_every_step = type(optimizer) not in ZERO_PRESERVING
        self._closure_step = self._skipped = False
        with torch.no_grad():
            # ranks may have scored or drawn different masks: take the group's first rank's
            self._sync(list(self.masks.values()))
            self._refresh()
            self.apply_()
            for name, m in self.masks.items():  # state left by earlier steps, if any
                zero_optimizer_state_(optimizer, self.params[name], m)
        self._handles.append(optimizer.register_step_pre_hook(self._pre_step))
        self._handles.append(optimizer.register_step_post_hook(self._post_step))

    # -- hooks ------------------------------------------------------------------------------

    def _pre_step(self, optimizer, args, kwargs):
        # args is (optimizer, closure?) for the wrapped step(self, closure=None)
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
        self._closure_step = closure is not None
        self._skipped = amp_step_skipped(optimizer)
        if closure is None:
            # a skipped step's gradients are inf/NaN: keep them out of the statistics
            self._mask_grads(first=not self._skipped)
            return None
        calls = []

        def masked_closure(*a, **k):
            # the closure recomputes the gradients: mask them after its backward
            loss = closure(*a, **k)
            self._mask_grads(first=not calls)
            calls.append(1)
            return loss

        if "closure" in kwargs:
            return args, {**kwargs, "closure": masked_closure}
        return (args[0], masked_closure, *args[2:]), kwargs

    def _mask_grads(self, first):
        grads, masks = [], []
        for name, p in self.params.items():
            if p.grad is not None:
                grads.append(p.grad)
                masks.append(self._float_masks[name])
        if first:
            self._before_masking_grads()
        if grads:
            with torch.no_grad():
                torch._foreach_mul_(grads, masks)

    def _post_step(self, optimizer, args, kwargs):
        if self._skipped:  # a fused optimizer skipped the step for GradScaler
            return
        if self._remask_every_step or self._closure_step:
            self.apply_()
        self.step_count += 1
        if self._due(self.step_count):
            with torch.no_grad():
                changes, record = self._update(self.step_count)
                self._sync([m for new, reset in changes.values() for m in (new, reset)])
                for name, (new, reset) in changes.items():
                    self._set_mask(name, new, reset)
                self._refresh()
                self._masks_changed(record)
            if record is not None:
                self.history.append(record)

    def _before_masking_grads(self):
        """Subclass hook: runs in the pre-hook while ``p.grad`` is still dense."""

    def _due(self, step):
        """Whether the masks change after optimizer step ``step``."""
        return False

    def _update(self, step):  # pragma: no cover - overridden
        """Return a :class:`MaskUpdate` (``{name: MaskChange}``, history record)."""
        raise NotImplementedError

    def _masks_changed(self, record):
        """Subclass hook: runs after new masks are installed; may add to ``record``."""

    # -- masks ------------------------------------------------------------------------------

    def _refresh(self):
        for name, m in self.masks.items():
            self._float_masks[name].copy_(m)

    def _sync(self, tensors):
        """Broadcast boolean ``tensors`` in place from the group's first rank."""
        broadcast_masks_(tensors, self.process_group)

    def apply_(self):
        """Zero the masked weights in place (``p.mul_(mask)``)."""
        # no_grad as a block, not a decorator, here and in rescale_init_: mutation testing
        # (mutmut 3 leaves decorated functions alone) reaches them
        params = [self.params[k] for k in self.masks]
        with torch.no_grad():
            torch._foreach_mul_(params, [self._float_masks[k] for k in self.masks])

    def _set_mask(self, name, new, reset):
        """Install a new mask; zero the weight and the optimizer state at ``reset``."""
        p = self.params[name]
        keep = new & ~reset
        p.mul_(keep.to(p.dtype))
        zero_optimizer_state_(self.optimizer, p, keep)
        self.masks[name].copy_(new)

    def rescale_init_(self):
        """Scale each unit's active weights by ``sqrt(fan_in / active fan_in)``, in place.

        With a dense initialisation (Kaiming/Glorot: variance ~ 1/fan_in) a
        layer at density d starts with pre-activations ~sqrt(d) too small;
        this restores the dense network's per-unit variance at the start, the
        sparsity-aware initialisation of Evci et al. (2022), "Gradient flow in
        sparse neural networks and how lottery tickets win", §4.1. Call it
        once, right after creating the controller.
        """
        with torch.no_grad():
            for name, m in self.masks.items():
                p = self.params[name]
                rows = m.reshape(m.shape[0], -1)
                active = rows.sum(1, keepdim=True).clamp_min(1).to(p.dtype)
                scale = torch.sqrt(rows.shape[1] / active)
                p.mul_(scale.reshape(-1, *([1] * (p.dim() - 1))))

    def densities(self):
        """Fraction of active weights per layer (exact counts / size)."""
        return {k: int(m.sum()) / m.numel() for k, m in self.masks.items()}

    @property
    def density(self):
        """Fraction of active weights over all masked layers."""
        return sum(int(m.sum()) for m in self.masks.values()) / sum(
            m.numel() for m in self.masks.values()
        )

    def remove(self):
        """Detach the hooks; the weights keep their zeros."""
        for h in self._handles:
            h.remove()
        self._handles = []

    # -- checkpoints --------------------------------------------------------------------------

    def state_dict(self):
        """Masks, step and history (a dict of tensors and plain values)."""
        return {
            "step_count": self.step_count,
            "masks": {k: m.clone() for k, m in self.masks.items()},
            "history": [dict(h) for h in self.history],
        }

    def load_state_dict(self, state):
        """Restore :meth:`state_dict` in place and re-apply the masks to the weights.

        All or nothing: the whole ``state`` is checked (:meth:`_check_state`)
        before anything is restored, so a state from another model or
        controller raises ``ValueError`` and leaves this one as it was.
        """
        self._check_state(state)
        for k, m in state["masks"].items():
            self.masks[k].copy_(m)
        self.step_count = int(state["step_count"])
        self.history = [dict(h) for h in state["history"]]
        self._refresh()
        self.apply_()

    def _check_state(self, state):
        """Raise ``ValueError`` unless ``state`` fits this controller (nothing is changed)."""
        if not isinstance(state, dict):
            raise ValueError(f"state_dict must be a dict; got {type(state).__name__}")
        missing = {"masks", "step_count", "history"} - set(state)
        if missing:
            raise ValueError(
                f"state_dict lacks {sorted(missing)} (not from {type(self).__name__}.state_dict())"
            )
        check_state_tensors("masks", state["masks"], self.masks)
        count = state["step_count"]
        if isinstance(count, bool) or not isinstance(count, (int, torch.Tensor)) or count < 0:
            raise ValueError(f"state_dict step_count must be an int >= 0; got {count!r}")


def check_state_tensors(what, given, expected):
    """``given`` has the names of ``expected``, each a tensor of the same shape."""
    if not isinstance(given, dict) or set(given) != set(expected):
        names = sorted(given) if isinstance(given, dict) else given
        raise ValueError(
            f"state_dict {what} do not match the controller's layers: expected "
            f"{sorted(expected)}, got {names!r}"
        )
    for k, t in given.items():
        if not torch.is_tensor(t) or t.shape != expected[k].shape:
            shape = tuple(t.shape) if torch.is_tensor(t) else type(t).__name__
            raise ValueError(
                f"state_dict {what}[{k!r}] has shape {shape}; expected {tuple(expected[k].shape)}"
            )


def _masked_params(model, optimizer, masks):
    """``{name: parameter}`` for the masked names; each must be optimised by ``optimizer``."""
    params = dict(model.named_parameters(remove_duplicate=False))
    optimised = {id(p) for group in optimizer.param_groups for p in group["params"]}
    out = {}
    for name in masks:
        if name not in params:
            raise ValueError(f"{name!r} is not a parameter of the model")
        if id(params[name]) not in optimised:
            raise ValueError(f"{name!r} is not optimised by the optimizer")
        out[name] = params[name]
    return out


class StaticSparsity(MaskedTraining):
    """Sparse training on a fixed mask (random, or from a pruning criterion).

    Parameters
    ----------
    model : torch.nn.Module
    optimizer : torch.optim.Optimizer
    density : float or dict, default 0.1
        Global density in (0, 1] or ``{name regex: density}``; ignored when
        ``masks`` is given.
    masks : dict of str to torch.Tensor, optional
        Boolean masks, for example from :func:`solvers.torch.prune_at_init`.
    distribution : {"uniform", "erk", "er"} or callable, default "erk"
    include, exclude, min_numel
        Layer selection, see :func:`~solvers.torch.select_layers`.
    seed : int, default 0
        Seed of the random masks.
    process_group : torch.distributed.ProcessGroup, optional
        See :class:`MaskedTraining`.

    Examples
    --------
    >>> import torch
    >>> from solvers.torch import StaticSparsity
    >>> model = torch.nn.Sequential(torch.nn.Linear(20, 30), torch.nn.Linear(30, 2))
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> sparse = StaticSparsity(model, opt, density=0.2, distribution="uniform")
    >>> sparse.densities()
    {'0.weight': 0.2, '1.weight': 0.2}
    """

    def __init__(
        self,
        model,
        optimizer,
        density=0.1,
        *,
        masks=None,
        distribution="erk",
        include=DEFAULT_LAYER_TYPES,
        exclude=None,
        min_numel=0,
        seed=0,
        process_group=None,
    ):
        if masks is None:
            params = select_layers(model, include, exclude, min_numel)
            shapes = {k: tuple(p.shape) for k, p in params.items()}
            masks = random_masks(params, layer_densities(shapes, density, distribution), seed)
        super().__init__(model, optimizer, masks, process_group=process_group)
