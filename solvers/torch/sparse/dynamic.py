# SPDX-License-Identifier: BSD-3-Clause
"""Dynamic sparse training (SET, RigL, SNFS) with in-time over-parameterization.

Every ``update_every`` optimizer steps, in each sparse layer, the
``k = floor(alpha_t * nnz)`` active weights of smallest magnitude are dropped
and ``k`` inactive positions (the just-dropped ones included) are grown:

- ``grow="set"``: uniformly at random (Mocanu et al. 2018, "Scalable training
  of artificial neural networks with adaptive sparse connectivity");
- ``grow="rigl"``: largest ``|dL/dw|`` of the current minibatch, the dense
  gradient (Evci et al. 2020, "Rigging the lottery", §3);
- ``grow="momentum"``: largest ``|m|`` of an exponential moving average of the
  dense gradients, ``m <- beta m + (1 - beta) g``, kept in the controller's own
  buffers (Dettmers & Zettlemoyer 2019, "Sparse networks from scratch"; the
  EMA form of RigL's code). Reading the optimizer's momentum instead fails
  when inactive momenta are zeroed, which ITOP's code does.

The drop fraction decays as ``alpha_t = alpha/2 (1 + cos(pi t / T))`` (or
stays constant) and updates stop after ``end``. Grown weights start at 0 and
every optimizer state tensor of the weight's shape is zeroed at the dropped
and grown positions, whatever the optimizer. Counts are exact per layer and
ties are broken by flat index.

The in-time over-parameterization rate (Liu et al. 2021, "Do we actually need
dense over-parameterization? In-time over-parameterization in sparse
training", eq. 1) ``R_s = sum_l ||OR_t M_l,t||_0 / sum_l N_l`` is tracked per
layer (:meth:`DynamicSparsity.itop_rates`) and in total
(:attr:`DynamicSparsity.itop_rate`). Their recipe (RigL-ITOP): a long enough
``update_every`` that grown weights get trained before they are judged, and
exploration until late in training.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import ClassVar

import torch

from solvers._validation import StrOptions, interval, validate_params
from solvers.torch.sparse.amp import amp_grad_scale
from solvers.torch.sparse.controller import (
    MaskChange,
    MaskedTraining,
    MaskUpdate,
    check_state_tensors,
)
from solvers.torch.sparse.densities import layer_densities
from solvers.torch.sparse.layers import DEFAULT_LAYER_TYPES, select_layers
from solvers.torch.sparse.seeding import step_generator
from solvers.torch.sparse.topk import bottom_k_mask, random_masks, top_k_mask

__all__ = ["GROW", "ITOP_UPDATES", "DropSchedule", "DynamicSparsity", "default_update_every"]

#: growth criteria of :class:`DynamicSparsity`
GROW = ("rigl", "set", "momentum")

_STEP = interval(Integral, 1, None, closed="left")

#: mask updates per training run of the ITOP schedule, by growth criterion (Liu et al.
#: 2021's code: RigL-ITOP every 4000, SET-ITOP every 1500 of ~97,700 CIFAR steps)
ITOP_UPDATES = {"rigl": 24, "momentum": 24, "set": 65}


def default_update_every(grow, total_steps):
    """``Delta T`` of the ITOP schedule: ``total_steps // ITOP_UPDATES[grow]`` (at least 1).

    Without ``total_steps``, RigL's 100 steps. See :class:`DynamicSparsity`'s
    notes for the benchmark behind it.
    """
    if total_steps is None:
        return 100
    return max(1, int(total_steps) // ITOP_UPDATES[grow])


class DropSchedule:
    """When to update the masks, and which fraction of active weights to move.

    Parameters
    ----------
    fraction : float, default 0.3
        ``alpha``, the drop fraction of the first update, in (0, 1).
    every : int, default 100
        ``Delta T``: optimizer steps between updates.
    end : int or None
        Last step at which masks may change; None never stops.
    decay : {"cosine", "constant"}, default "cosine"
        ``alpha_t = alpha/2 (1 + cos(pi t / horizon))`` or ``alpha``.
    horizon : int, optional
        Length of the cosine; defaults to ``end``.
    """

    _parameter_constraints: ClassVar[dict] = {
        "fraction": [interval(Real, 0, 1, closed="neither")],
        "every": [_STEP],
        "end": [_STEP, None],
        "decay": [StrOptions({"cosine", "constant"})],
        "horizon": [interval(Real, 0, None, closed="neither"), None],
    }

    def __init__(self, fraction=0.3, every=100, end=None, decay="cosine", horizon=None):
        validate_params(
            self._parameter_constraints,
            {"fraction": fraction, "every": every, "end": end, "decay": decay, "horizon": horizon},
            "DropSchedule",
        )
        self.fraction = float(fraction)
        self.every = int(every)
        self.end = None if end is None else int(end)
        self.decay = decay
        self.horizon = horizon if horizon is not None else self.end
        if decay == "cosine" and self.horizon is None:
            raise ValueError("a cosine drop schedule needs total_steps or an end step")

    def due(self, step):
        """Whether the masks are updated after optimizer step ``step``."""
        return step % self.every == 0 and (self.end is None or step <= self.end)

    def fraction_at(self, step):
        """The drop fraction ``alpha_t`` at ``step``."""
        if self.decay == "constant":
            return self.fraction
        t = min(step, self.horizon) / self.horizon
        return 0.5 * self.fraction * (1.0 + math.cos(math.pi * t))


class DynamicSparsity(MaskedTraining):
    """Dynamic sparse training attached to any ``torch.optim`` optimizer.

    Creating it is all a training loop needs: the usual
    ``zero_grad(); loss.backward(); optimizer.step()`` then trains sparse.

    Parameters
    ----------
    model : torch.nn.Module
    optimizer : torch.optim.Optimizer
        Any optimizer (SGD, Adam, AdamW, :mod:`solvers.torch`'s); it must
        optimise every sparse weight.
    density : float or dict, default 0.1
        Fraction of active weights in (0, 1] over the sparse layers, or
        ``{name regex: density}`` per layer.
    grow : {"rigl", "set", "momentum"}, default "rigl"
        Growth criterion (module docstring).
    distribution : {"erk", "uniform", "er"} or callable, default "erk"
        Spread of a global density over layers; ERK makes a layer dense when
        its share would exceed 1.
    drop_fraction : float, default 0.5
        ``alpha`` of the first update (ITOP's death rate; RigL's own is 0.3).
    update_every : int, optional
        ``Delta T`` in optimizer steps (steps skipped by ``GradScaler`` and
        gradient-accumulation micro-batches do not count). Default: derived
        from ``total_steps`` (:func:`default_update_every`): ``total_steps //
        24`` for RigL and momentum growth, ``total_steps // 65`` for SET, the
        intervals of the ITOP code (Liu et al. 2021: 4000 and 1500 steps of a
        250-epoch CIFAR run) scaled to the run; 100 steps (RigL's) without
        ``total_steps``.
    total_steps : int, optional
        Planned optimizer steps; sets ``update_every``, the cosine's length
        and a fractional ``end``.
    end : float, int or None, default None
        Last update: a fraction of ``total_steps``, a step, or None (update
        until the end of training, with the cosine over ``total_steps``; the
        ITOP recipe). RigL's own schedule stops at 0.75.
    decay : {"cosine", "constant"}, default "cosine"
    momentum : float, default 0.9
        EMA factor of ``grow="momentum"``.
    include, exclude, min_numel
        Layer selection (:func:`solvers.torch.select_layers`); biases and
        norms are always dense.
    seed : int, default 0
        Seeds the initial masks and the random growth; draws are keyed on
        ``(seed, step)`` so every DDP rank and a resumed run draw the same.
    process_group : torch.distributed.ProcessGroup, optional
        The data-parallel group (default: the world group); new masks are
        broadcast from its first rank.

    Attributes
    ----------
    masks : dict of str to torch.Tensor
        Current boolean masks.
    fired : dict of str to torch.Tensor
        Positions ever active.
    itop_rate : float
        ``R_s`` over all sparse layers.
    history : list of dict
        One record per update: step, drop fraction, weights moved, ``R_s``.

    Notes
    -----
    **Where the defaults come from.** With ``total_steps`` given, the defaults
    are the ITOP schedule (drop fraction 0.5, cosine-decayed to the end of
    training, an update every 1/24 of training for RigL, 1/65 for SET), the
    best schedule of the ``sparse`` benchmark (``benchmarks/README.md``):
    LeNet-300-100 on MNIST, 20 epochs, SGD with momentum, at 98 % sparsity
    RigL-ITOP reached 97.64 % (dense 98.45) against 96.81 % with RigL's own
    schedule (drop 0.3 every 100 steps, stop at 75 %), the previous defaults;
    a sweep of ``Delta T`` at that density gave 97.05 (100 steps), 97.60
    (300), 97.68 (500, i.e. 1/24), 97.32 (1000). Grown weights start at 0
    and need a few hundred steps to survive the next magnitude drop. Pass
    ``drop_fraction=0.3, update_every=100, end=0.75`` for RigL's schedule.

    Masks update in place, so ``torch.compile(model)`` does not recompile.
    Under DDP the new masks are broadcast from the group's first rank after
    each update. The weights are stored dense: masking saves no time or
    memory in training; use :func:`solvers.torch.export_sparse` for a sparse
    inference copy.

    Examples
    --------
    >>> import torch
    >>> from solvers.torch import DynamicSparsity
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> nn = torch.nn
    >>> model = nn.Sequential(nn.Linear(20, 64), nn.Tanh(), nn.Linear(64, 3))
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    >>> sparse = DynamicSparsity(model, opt, density=0.2, update_every=5, total_steps=50)
    >>> X, y = torch.randn(100, 20), torch.randint(0, 3, (100,))
    >>> for _ in range(50):
    ...     opt.zero_grad()
    ...     torch.nn.functional.cross_entropy(model(X), y).backward()
    ...     opt.step()
    >>> round(sparse.density, 3), sparse.itop_rate > 0.2
    (0.2, True)
    """

    _parameter_constraints: ClassVar[dict] = {
        "grow": [StrOptions(set(GROW))],
        "momentum": [interval(Real, 0, 1, closed="left")],
        "drop_fraction": DropSchedule._parameter_constraints["fraction"],
        "update_every": [_STEP, None],
        "total_steps": [_STEP, None],
        "end": [_STEP, interval(Real, 0, 1, closed="right"), None],
        "decay": DropSchedule._parameter_constraints["decay"],
        "seed": [Integral],
    }

    def __init__(
        self,
        model,
        optimizer,
        density=0.1,
        *,
        grow="rigl",
        distribution="erk",
        drop_fraction=0.5,
        update_every=None,
        total_steps=None,
        end=None,
        decay="cosine",
        momentum=0.9,
        include=DEFAULT_LAYER_TYPES,
        exclude=None,
        min_numel=0,
        seed=0,
        process_group=None,
    ):
        validate_params(
            self._parameter_constraints,
            {
                "grow": grow,
                "momentum": momentum,
                "drop_fraction": drop_fraction,
                "update_every": update_every,
                "total_steps": total_steps,
                "end": end,
                "decay": decay,
                "seed": seed,
            },
            "DynamicSparsity",
        )
        total_steps = None if total_steps is None else int(total_steps)
        end = _end_step(end, total_steps)
        if update_every is None:
            update_every = default_update_every(grow, total_steps)
        self.schedule = DropSchedule(
            drop_fraction, update_every, end, decay, horizon=end if end is not None else total_steps
        )
        self.grow = grow
        self.momentum = float(momentum)
        self.seed = int(seed)
        params = select_layers(model, include, exclude, min_numel)
        shapes = {k: tuple(p.shape) for k, p in params.items()}
        self.layer_density = layer_densities(shapes, density, distribution)
        super().__init__(
            model,
            optimizer,
            random_masks(params, self.layer_density, seed),
            process_group=process_group,
        )
        self._n_active = {k: int(m.sum()) for k, m in self.masks.items()}
        self.fired = {k: m.clone() for k, m in self.masks.items()}
        self._ema = (
            {k: torch.zeros_like(p, dtype=torch.float32) for k, p in self.params.items()}
            if grow == "momentum"
            else {}
        )
        self._grads = {}

    # -- growth statistics (pre-hook, dense gradients) ------------------------------------

    def _before_masking_grads(self):
        if self.grow == "momentum":
            names = [k for k, p in self.params.items() if p.grad is not None]
            if names:
                ema = [self._ema[k] for k in names]
                torch._foreach_mul_(ema, self.momentum)
                grads = [self.params[k].grad.float() for k in names]  # no copy for fp32
                scale = amp_grad_scale(self.optimizer)
                if scale is not None:  # a fused optimizer under GradScaler: still scaled
                    grads = torch._foreach_div(grads, scale)
                torch._foreach_add_(ema, grads, alpha=1.0 - self.momentum)
        elif self.grow == "rigl" and self._due(self.step_count + 1):
            self._grads = {
                k: p.grad.detach().clone() for k, p in self.params.items() if p.grad is not None
            }

    # -- the topology update ----------------------------------------------------------------

    def _due(self, step):
        return self.schedule.due(step)

    def _grow_scores(self, name, generator):
        p = self.params[name]
        if self.grow == "set":
            return torch.rand(p.shape, generator=generator).to(p.device)
        if self.grow == "momentum":
            return torch.nan_to_num(self._ema[name].abs(), nan=0.0, posinf=0.0)
        g = self._grads.get(name)
        if g is None:  # no gradient this step (unused layer): no growth signal
            return torch.zeros_like(p)
        return torch.nan_to_num(g.abs(), nan=0.0, posinf=0.0)

    def _update(self, step):
        alpha = self.schedule.fraction_at(step)
        generator = step_generator(self.seed, step, "cpu")
        changes, moved = {}, 0
        for name, mask in self.masks.items():
            n, k = self._n_active[name], math.floor(alpha * self._n_active[name])
            scores = self._grow_scores(name, generator)  # drawn for every layer: same stream
            if k == 0 or n == mask.numel():
                continue
            p = self.params[name]
            drop_scores = torch.where(mask, p.abs(), torch.full_like(p, math.inf))
            kept = mask & ~bottom_k_mask(drop_scores, k)
            grow_scores = torch.where(kept, torch.full_like(scores, -math.inf), scores)
            grown = top_k_mask(grow_scores, k)
            changes[name] = MaskChange(kept | grown, grown)
            moved += k
        self._grads = {}
        return MaskUpdate(changes, {"step": step, "drop_fraction": alpha, "moved": moved})

    def _masks_changed(self, record):
        for k, m in self.masks.items():
            self.fired[k] |= m
        record["itop_rate"] = self.itop_rate

    # -- reporting --------------------------------------------------------------------------

    def itop_rates(self):
        """``R_s`` per layer: the fraction of its weights ever active."""
        return {k: int(f.sum()) / f.numel() for k, f in self.fired.items()}

    @property
    def itop_rate(self):
        """``R_s`` over all sparse layers (Liu et al. 2021, eq. 1)."""
        return sum(int(f.sum()) for f in self.fired.values()) / sum(
            f.numel() for f in self.fired.values()
        )

    # -- checkpoints ------------------------------------------------------------------------

    def state_dict(self):
        """Masks, ever-active masks, step, growth statistics, seed and history."""
        state = super().state_dict()
        state["fired"] = {k: f.clone() for k, f in self.fired.items()}
        state["ema"] = {k: e.clone() for k, e in self._ema.items()}
        state["seed"] = self.seed
        return state

    def load_state_dict(self, state):
        """Restore :meth:`state_dict`; the run then continues bit-for-bit (all or nothing)."""
        super().load_state_dict(state)  # checks the whole state first (_check_state)
        for k, f in state["fired"].items():
            self.fired[k].copy_(f)
        for k, e in state["ema"].items():
            self._ema[k].copy_(e)
        self.seed = int(state["seed"])
        self._n_active = {k: int(m.sum()) for k, m in self.masks.items()}

    def _check_state(self, state):
        super()._check_state(state)
        if set(state.get("ema", {})) != set(self._ema) or state.get("seed") is None:
            raise ValueError(
                "state_dict is not from a DynamicSparsity with the same growth criterion "
                f"(grow={self.grow!r}) and layers"
            )
        check_state_tensors("fired", state.get("fired"), self.fired)
        check_state_tensors("ema", state["ema"], self._ema)


def _end_step(end, total_steps):
    """The last update step: ``end`` itself, or a fraction of ``total_steps``."""
    if not isinstance(end, float):
        return end
    if total_steps is None:
        raise ValueError(
            f"total_steps is required: end={end} is a fraction of it (or pass end as "
            "an int step, or end=None with decay='constant')"
        )
    return max(1, int(end * total_steps))
