# SPDX-License-Identifier: BSD-3-Clause
"""Weight masks for sparse training, attached to any ``torch.optim`` optimizer.

The shared core of :mod:`solvers.torch.dynamic_sparsity` and
:mod:`solvers.torch.pruning`:

- :func:`select_layers`: which weights are sparse (module type, name pattern,
  minimum size; biases and norm layers are never selected).
- :func:`layer_densities`: per-layer densities from a global one, uniform,
  Erdos-Renyi(-Kernel) with the dense-layer fallback (Evci et al. 2020,
  "Rigging the lottery", eq. in §3 / appendix), or a user map.
- :func:`random_masks`, :func:`top_k_mask`, :func:`bottom_k_mask`: exact counts
  with deterministic tie-breaking (a stable sort: equal scores go to the
  lower flat index), never Bernoulli draws.
- :class:`MaskedTraining`: the controller. It registers a step pre-hook and a
  step post-hook on the optimizer (``register_step_pre_hook``), so the user's
  loop (``zero_grad / backward / optimizer.step()``), LR schedulers,
  ``GradScaler`` (a skipped step is not counted: it runs no hook, or, for a
  fused optimizer, the hooks see ``found_inf`` and do nothing), DDP and
  ``torch.compile(model)`` are unchanged. Weights are stored dense with zeros
  ("data masking"): the forward pass is untouched.

  - pre-hook: the gradients of masked weights are multiplied by the mask, so
    SGD momentum, Adam moments and weight decay never see inactive
    positions (one fused ``_foreach_mul_`` for all layers); with
    ``step(closure)`` the closure is wrapped so the gradients it computes are
    masked right after its ``backward``;
  - post-hook: the weights are multiplied by the mask, unless the optimizer
    is one of :data:`ZERO_PRESERVING` (SGD, Adam, AdamW, ...) and no closure
    was passed: then a weight with zero value, gradient and state stays
    exactly 0 and the multiply is skipped (it is half the masking cost).
    The step counter advances and subclasses update the masks when due.

  Masks live on the controller (``state_dict``), not as model buffers, so a
  checkpoint of the model loads into the plain model; ``load_state_dict`` of
  the controller restores masks, ever-active masks, the step and the
  statistics, and a resumed run continues bit-for-bit.
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn

#: module types whose ``weight`` is sparsified by default
DEFAULT_LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: parameter names that are never sparsified
_NEVER = re.compile(r"(^|\.)(bias|.*norm.*|bn\d*|ln\d*)(\.|$)")


def check_density(density, name="density"):
    """A density in (0, 1] (sparsity in [0, 1)), as a float."""
    try:
        d = float(density)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number in (0, 1], got {density!r}") from None
    if not 0.0 < d <= 1.0:
        raise ValueError(
            f"{name} must be in (0, 1] (a sparsity in [0, 1)), got {density!r}"
            " (a density of 0 leaves no weights to train)"
        )
    return d


def select_layers(model, include=DEFAULT_LAYER_TYPES, exclude=None, min_numel=0):
    """The weights to sparsify: ``{qualified name: parameter}``, in model order.

    Parameters
    ----------
    model : torch.nn.Module
    include : tuple of type, str or callable, default (Linear, Conv1d, Conv2d, Conv3d)
        Module types, a regular expression on the parameter's qualified name
        (``"features.*weight"``), or a predicate ``f(name, module) -> bool``.
    exclude : str or None
        A regular expression; matching parameter names are left dense.
    min_numel : int, default 0
        Smaller weights are left dense.

    Returns
    -------
    dict of str to torch.nn.Parameter
        Only the ``weight`` of each module; biases, normalisation layers and
        embeddings are never selected. A weight shared by several modules
        (tied weights) appears once, under its first name.

    Raises
    ------
    ValueError
        If no parameter qualifies.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    pattern = re.compile(exclude) if exclude else None
    never = nn.modules.batchnorm._NormBase | nn.LayerNorm | nn.GroupNorm | nn.Embedding
    # a weight tied to an embedding or a norm (a tied LM head) stays dense too
    out, seen = {}, {id(m.weight) for m in model.modules() if isinstance(m, never)}
    for mod_name, module in model.named_modules():
        w = getattr(module, "weight", None)
        if not isinstance(w, nn.Parameter) or id(w) in seen:
            continue
        name = f"{mod_name}.weight" if mod_name else "weight"
        if isinstance(include, str):
            ok = re.search(include, name) is not None and w.dim() > 1
        elif callable(include) and not isinstance(include, type | tuple):
            ok = bool(include(name, module))
        else:
            ok = isinstance(module, include)
        if (
            not ok
            or _NEVER.search(mod_name or "")
            or (pattern and pattern.search(name))
            or w.numel() < min_numel
        ):
            continue
        seen.add(id(w))
        out[name] = w
    if not out:
        raise ValueError(
            "no layer to sparsify: the model has no weight matching include="
            f"{include!r}, exclude={exclude!r}, min_numel={min_numel}"
        )
    return out


def erk_densities(shapes, density, power=1.0, dense=(), include_kernel=True):
    """Erdos-Renyi-Kernel densities with the dense-layer fallback.

    ``p_l = eps * (sum(shape_l) / prod(shape_l)) ** power``, with ``eps`` chosen
    so that ``sum_l p_l N_l = density * sum_l N_l``; a layer whose ``p_l``
    would exceed 1 is made dense and ``eps`` recomputed, largest first (Evci et
    al. 2020; Mocanu et al. 2018 for ER). ``power=0`` is uniform.

    Parameters
    ----------
    shapes : dict of str to tuple
    density : float
    power : float, default 1.0
    dense : iterable of str
        Layers forced dense.
    include_kernel : bool, default True
        False gives ER: only the first two dimensions (fan-out, fan-in) enter
        the ratio.

    Returns
    -------
    dict of str to float
    """
    density = check_density(density)
    numel = {k: math.prod(s) for k, s in shapes.items()}
    ratio_dims = {k: tuple(s) if include_kernel else tuple(s[:2]) for k, s in shapes.items()}
    raw = {k: (sum(s) / math.prod(s)) ** power for k, s in ratio_dims.items()}
    dense = set(dense)
    unknown = dense - set(shapes)
    if unknown:
        raise ValueError(f"dense layers {sorted(unknown)} are not among the sparse layers")
    total = sum(numel.values())
    while True:
        free = [k for k in shapes if k not in dense]
        budget = density * total - sum(numel[k] for k in dense)
        if not free or budget <= 0:
            raise ValueError(
                f"density {density} is too low for the layers kept dense ({sorted(dense)})"
            )
        eps = budget / sum(raw[k] * numel[k] for k in free)
        worst = max(free, key=lambda k: raw[k])
        if eps * raw[worst] <= 1.0:
            break
        dense.add(worst)
    return {k: 1.0 if k in dense else eps * raw[k] for k in shapes}


def layer_densities(shapes, density, distribution="uniform"):
    """Per-layer densities.

    Parameters
    ----------
    shapes : dict of str to tuple
    density : float or dict
        A global density in (0, 1], or ``{name regex: density}`` (every layer
        must match one pattern; the first match wins).
    distribution : {"uniform", "erk", "er"} or callable
        How a global density is spread: the same in every layer, ERK (fan-in,
        fan-out and kernel size), or ER (fan-in and fan-out only); a callable
        ``f(shapes, density) -> {name: density}``.

    Returns
    -------
    dict of str to float
    """
    if isinstance(density, dict):
        out = {}
        for name in shapes:
            hit = [d for pat, d in density.items() if re.search(pat, name)]
            if not hit:
                raise ValueError(f"no density given for layer {name!r} (patterns {list(density)})")
            out[name] = check_density(hit[0], f"density of {name}")
        return out
    density = check_density(density)
    if callable(distribution):
        out = distribution(shapes, density)
        return {k: check_density(out[k], f"density of {k}") for k in shapes}
    if distribution == "uniform":
        return dict.fromkeys(shapes, density)
    if distribution == "erk":
        return erk_densities(shapes, density)
    if distribution == "er":
        return erk_densities(shapes, density, include_kernel=False)
    raise ValueError(
        f"unknown distribution {distribution!r}; expected 'uniform', 'erk', 'er' or a callable"
    )


def active_count(numel, density):
    """Exact number of active weights: ``round(density * numel)``, at least 1."""
    return min(numel, max(1, round(density * numel)))


def _generator(seed, step, device):
    g = torch.Generator(device=device)
    g.manual_seed((int(seed) * 1_000_003 + int(step)) % (2**63 - 1))
    return g


def top_k_mask(scores, k, largest=True):
    """Boolean mask of the ``k`` largest (or smallest) scores, exactly ``k`` set.

    Ties at the threshold go to the lower flat index, so the result is
    deterministic. One ``topk`` for the threshold plus element-wise passes
    (about 8x faster than a stable sort at 235k entries) and no host
    synchronisation.
    """
    flat = scores.reshape(-1)
    if flat.is_floating_point():  # NaN ranks last, never displacing a real score
        flat = torch.nan_to_num(flat, nan=-math.inf if largest else math.inf)
    if k <= 0:
        return torch.zeros(scores.shape, dtype=torch.bool, device=flat.device)
    if k >= flat.numel():
        return torch.ones(scores.shape, dtype=torch.bool, device=flat.device)
    threshold = torch.topk(flat, k, largest=largest, sorted=False).values
    threshold = threshold.min() if largest else threshold.max()
    beyond = flat > threshold if largest else flat < threshold
    tied = flat == threshold
    room = k - beyond.sum()
    mask = beyond | (tied & (torch.cumsum(tied, 0) <= room))
    return mask.reshape(scores.shape)


def bottom_k_mask(scores, k):
    """Boolean mask of the ``k`` smallest scores; ties go to the lower flat index."""
    return top_k_mask(scores, k, largest=False)


def random_masks(params, densities, seed=0):
    """Uniformly random masks with exactly :func:`active_count` active entries per layer."""
    out = {}
    for i, (name, p) in enumerate(params.items()):
        g = _generator(seed, -1 - i, "cpu")
        scores = torch.rand(p.shape, generator=g).to(p.device)
        out[name] = top_k_mask(scores, active_count(p.numel(), densities[name]))
    return out


def global_top_k_masks(scores, density):
    """Keep the ``round(density * N)`` largest scores over all layers (one threshold).

    Ties are broken by layer order, then flat index. Returns ``{name: bool mask}``.
    """
    density = check_density(density)
    names = list(scores)
    flat = torch.cat([scores[k].reshape(-1).double() for k in names])  # SynFlow overflows fp32
    keep = top_k_mask(flat, active_count(flat.numel(), density))
    out, start = {}, 0
    for k in names:
        n = scores[k].numel()
        out[k] = keep[start : start + n].reshape(scores[k].shape)
        start += n
    return out


def layer_top_k_masks(scores, densities):
    """Keep the ``round(d_l * N_l)`` largest scores within each layer."""
    return {k: top_k_mask(s, active_count(s.numel(), densities[k])) for k, s in scores.items()}


def zero_optimizer_state_(optimizer, param, keep):
    """Multiply every optimizer state tensor shaped like ``param`` by ``keep``.

    Works for any optimizer with element-wise state (SGD momentum, Adam/AdamW
    moments and ``max_exp_avg_sq``, ours), without reading private key names.
    A non-element-wise state tensor that happens to have the weight's shape
    (a square weight's full-matrix preconditioner) would be corrupted: such
    optimizers are not supported.
    """
    for v in optimizer.state.get(param, {}).values():
        if torch.is_tensor(v) and v.shape == param.shape and v.is_floating_point():
            v.mul_(keep.to(v.dtype))


#: optimizers whose step leaves a weight at 0 when its gradient and state are 0
#: (element-wise updates; weight decay proportional to the weight)
ZERO_PRESERVING = (
    torch.optim.SGD,
    torch.optim.Adam,
    torch.optim.AdamW,
    torch.optim.Adagrad,
    torch.optim.Adamax,
    torch.optim.NAdam,
    torch.optim.RAdam,
    torch.optim.RMSprop,
)


#: elements per mask broadcast (a uint8 buffer of 64 MiB)
_SYNC_CHUNK = 1 << 26


def amp_step_skipped(optimizer):
    """Whether ``GradScaler`` has told ``optimizer`` to skip the current step.

    ``GradScaler.step`` does not call ``step()`` when the gradients hold inf or
    NaN, except for optimizers that unscale inside their kernel (``fused=True``):
    for those it sets ``optimizer.found_inf`` and calls ``step()``, which then
    changes nothing. Reading the flag waits for the device; it happens only in
    that mode (GradScaler itself syncs in the other).
    """
    found_inf = getattr(optimizer, "found_inf", None)
    return found_inf is not None and bool(found_inf)


def amp_grad_scale(optimizer):
    """The loss scale still in the gradients inside ``step()``, or None.

    Set by ``GradScaler`` for optimizers that unscale inside their kernel.
    """
    return getattr(optimizer, "grad_scale", None)


class MaskedTraining:
    """Fixed-topology masked training through optimizer step hooks.

    The base of :class:`~solvers.torch.DynamicSparsity`,
    :class:`~solvers.torch.GradualMagnitudePruning` and
    :class:`~solvers.torch.StaticSparsity`; subclasses override
    :meth:`_due` and :meth:`_update`.

    Parameters
    ----------
    model : torch.nn.Module
    optimizer : torch.optim.Optimizer
        Must optimise every selected weight.
    masks : dict of str to torch.Tensor
        Boolean masks keyed by qualified parameter name (see
        :func:`select_layers`).
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
    """

    def __init__(self, model, optimizer, masks, *, process_group=None):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        params = dict(model.named_parameters(remove_duplicate=False))
        optimised = {id(p) for group in optimizer.param_groups for p in group["params"]}
        self.model = model
        self.optimizer = optimizer
        self.params = {}
        for name in masks:
            if name not in params:
                raise ValueError(f"{name!r} is not a parameter of the model")
            if id(params[name]) not in optimised:
                raise ValueError(f"{name!r} is not optimised by the optimizer")
            self.params[name] = params[name]
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
        return False

    def _update(self, step):  # pragma: no cover - overridden
        """Return ``({name: (new mask, positions to reset)}, history record)``."""
        raise NotImplementedError

    def _masks_changed(self, record):
        """Subclass hook: runs after new masks are installed; may add to ``record``."""

    # -- masks ------------------------------------------------------------------------------

    def _refresh(self):
        for name, m in self.masks.items():
            self._float_masks[name].copy_(m)

    def _sync(self, tensors):
        """Broadcast boolean ``tensors`` in place from the group's first rank.

        The decisions are already deterministic (DDP averages the gradients,
        random scores come from a generator keyed on the step), so this is a
        safety net that makes every rank's masks bit-identical. Masks travel
        as ``uint8`` buffers, one per device and per ``_SYNC_CHUNK`` elements,
        in the same order on every rank: one collective per update for a
        model on one device.
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        group = self.process_group
        if dist.get_world_size(group) < 2:
            return
        src = 0 if group is None else dist.get_global_rank(group, 0)
        by_device = {}
        for m in tensors:
            by_device.setdefault(m.device, []).append(m)
        for ms in by_device.values():
            chunk, size = [], 0
            for k, m in enumerate(ms):
                chunk.append(m)
                size += m.numel()
                if size >= _SYNC_CHUNK or k == len(ms) - 1:
                    buf = torch.cat([t.reshape(-1) for t in chunk]).to(torch.uint8)
                    dist.broadcast(buf, src=src, group=group)
                    parts = buf.split([t.numel() for t in chunk])
                    for t, part in zip(chunk, parts, strict=True):
                        t.copy_(part.view(t.shape).bool())
                    chunk, size = [], 0

    @torch.no_grad()
    def apply_(self):
        """Zero the masked weights in place (``p.mul_(mask)``)."""
        params = [self.params[k] for k in self.masks]
        torch._foreach_mul_(params, [self._float_masks[k] for k in self.masks])

    def _set_mask(self, name, new, reset):
        """Install a new mask; zero the weight and the optimizer state at ``reset``."""
        p = self.params[name]
        keep = new & ~reset
        p.mul_(keep.to(p.dtype))
        zero_optimizer_state_(self.optimizer, p, keep)
        self.masks[name].copy_(new)

    @torch.no_grad()
    def rescale_init_(self):
        """Scale each unit's active weights by ``sqrt(fan_in / active fan_in)``, in place.

        With a dense initialisation (Kaiming/Glorot: variance ~ 1/fan_in) a
        layer at density d starts with pre-activations ~sqrt(d) too small;
        this restores the dense network's per-unit variance at the start, the
        sparsity-aware initialisation of Evci et al. (2022), "Gradient flow in
        sparse neural networks and how lottery tickets win", §4.1. Call it
        once, right after creating the controller.
        """
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
        """Restore :meth:`state_dict` in place and re-apply the masks to the weights."""
        missing = set(self.masks) ^ set(state["masks"])
        if missing:
            raise ValueError(f"state_dict masks do not match the controller's layers: {missing}")
        for k, m in state["masks"].items():
            if m.shape != self.masks[k].shape:
                raise ValueError(f"mask of {k!r} has shape {tuple(m.shape)} in the state_dict")
            self.masks[k].copy_(m)
        self.step_count = int(state["step_count"])
        self.history = [dict(h) for h in state["history"]]
        self._refresh()
        self.apply_()


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
        Layer selection, see :func:`select_layers`.
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
