# SPDX-License-Identifier: BSD-3-Clause
"""Pruning: magnitude, at initialisation (SNIP, GraSP, SynFlow), gradual, lottery tickets.

Every function returns boolean masks ``{qualified weight name: mask}`` that
:class:`solvers.torch.StaticSparsity` trains with, :func:`solvers.torch.to_torch_prune`
hands to ``torch.nn.utils.prune``, and :func:`solvers.torch.export_sparse`
turns into sparse inference layers. Scores:

- magnitude ``|theta|``;
- SNIP ``|theta * dL/dtheta|`` (Lee et al. 2019, "SNIP: single-shot network
  pruning based on connection sensitivity", eq. 6; the gradient summed over
  the given batches);
- GraSP ``theta * H g`` with ``g = dL/dtheta`` at logits divided by ``T = 200``
  and the largest kept, i.e. the largest ``S(-theta) = -theta * H g`` removed
  (Wang et al. 2020, "Picking winning tickets before training by preserving
  gradient flow", eq. 8);
- SynFlow ``|theta * dR/dtheta|`` with ``R = 1^T (prod_l |W_l|) 1`` evaluated
  as the output sum of the sign-stripped network on an all-ones input in
  float64 and eval mode, re-scored ``iterations`` times on the exponential
  schedule ``density^(k/n)`` (Tanaka et al. 2020, "Pruning neural networks
  without any data by iteratively conserving synaptic flow", Alg. 1).

Masks are global (one threshold over all layers) or per layer (densities
from :func:`solvers.torch.layer_densities`). :class:`GradualMagnitudePruning`
is Zhu & Gupta (2017)'s cubic schedule, :class:`LotteryTicket` iterative
magnitude pruning with rewinding (Frankle & Carbin 2019; Frankle et al. 2020
for rewinding to step k), and :func:`approximate_isometry_` /
:func:`orthogonalize_` restore dynamical isometry of the kept weights (Lee et
al. 2020, "A signal propagation perspective for pruning neural networks at
initialization"; Wang et al. 2021, "Dynamical isometry: the missing
ingredient for neural network pruning").
"""

from __future__ import annotations

import copy
import math

import torch

from solvers.step_size import check_int
from solvers.torch.masks import (
    DEFAULT_LAYER_TYPES,
    MaskedTraining,
    _generator,
    check_density,
    global_top_k_masks,
    layer_densities,
    layer_top_k_masks,
    select_layers,
)

CRITERIA = ("magnitude", "random", "snip", "grasp", "synflow")


def masks_from_scores(scores, density, scope="global", distribution="uniform"):
    """Keep the largest scores: one global threshold, or per-layer densities.

    Parameters
    ----------
    scores : dict of str to torch.Tensor
    density : float or dict
    scope : {"global", "layer"}
    distribution : {"uniform", "erk", "er"} or callable
        Per-layer spread of ``density`` when ``scope="layer"``.

    Returns
    -------
    dict of str to torch.Tensor
    """
    if scope == "global":
        if isinstance(density, dict):
            raise ValueError("a per-layer density map needs scope='layer'")
        return global_top_k_masks(scores, density)
    if scope == "layer":
        shapes = {k: tuple(s.shape) for k, s in scores.items()}
        return layer_top_k_masks(scores, layer_densities(shapes, density, distribution))
    raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")


def magnitude_masks(model, density, *, scope="global", distribution="uniform", **select):
    """Keep the largest ``|theta|``; see :func:`masks_from_scores`.

    ``select`` takes :func:`solvers.torch.select_layers`'s ``include``,
    ``exclude`` and ``min_numel``.
    """
    params = select_layers(model, **_selection(select))
    scores = {k: p.detach().abs() for k, p in params.items()}
    return masks_from_scores(scores, density, scope, distribution)


def _selection(select):
    unknown = set(select) - {"include", "exclude", "min_numel"}
    if unknown:
        raise TypeError(f"unexpected arguments {sorted(unknown)}")
    return {"include": DEFAULT_LAYER_TYPES} | select


def _batches(data):
    if data is None:
        raise ValueError("this criterion needs data: an iterable of (inputs, targets) batches")
    batches = list(data)
    if not batches:
        raise ValueError("data has no batches")
    return batches


def _copy_selected(model, names):
    """A deep copy of the model and its selected weights (the user's model is untouched)."""
    twin = copy.deepcopy(model)
    params = dict(twin.named_parameters(remove_duplicate=False))
    return twin, {k: params[k] for k in names}


def snip_scores(model, params, data, loss_fn):
    """``|theta * sum_batches dL/dtheta|`` for the selected weights."""
    twin, tw = _copy_selected(model, params)
    grads = {k: torch.zeros_like(p) for k, p in tw.items()}
    for x, y in _batches(data):
        g = torch.autograd.grad(loss_fn(twin(x), y), list(tw.values()), allow_unused=True)
        for k, gk in zip(tw, g, strict=True):
            if gk is not None:
                grads[k] += gk
    return {k: (tw[k] * grads[k]).abs().detach() for k in tw}


def grasp_scores(model, params, data, loss_fn, temperature=200.0):
    """``theta * H g`` (keep the largest), ``g`` at logits / ``temperature``."""
    twin, tw = _copy_selected(model, params)
    weights = list(tw.values())
    batches = _batches(data)
    g = [torch.zeros_like(p) for p in weights]
    for x, y in batches:
        gb = torch.autograd.grad(loss_fn(twin(x) / temperature, y), weights, allow_unused=True)
        g = [a + b if b is not None else a for a, b in zip(g, gb, strict=True)]
    hg = [torch.zeros_like(p) for p in weights]
    for x, y in batches:
        gb = torch.autograd.grad(
            loss_fn(twin(x) / temperature, y), weights, create_graph=True, allow_unused=True
        )
        z = sum((a * b.detach()).sum() for a, b in zip(gb, g, strict=True) if a is not None)
        hb = torch.autograd.grad(z, weights, allow_unused=True)
        hg = [a + b if b is not None else a for a, b in zip(hg, hb, strict=True)]
    return {k: (p * h).detach() for (k, p), h in zip(tw.items(), hg, strict=True)}


def synflow_scores(model, params, input_shape, masks=None):
    """``|theta * dR/dtheta|`` of the sign-stripped float64 network on ones."""
    twin, tw = _copy_selected(model, params)
    twin = twin.double().eval()
    tw = {k: dict(twin.named_parameters(remove_duplicate=False))[k] for k in params}
    with torch.no_grad():
        for p in twin.parameters():
            p.abs_()
        for k, m in (masks or {}).items():
            tw[k].mul_(m)
    device = next(iter(tw.values())).device
    ones = torch.ones((1, *input_shape), dtype=torch.float64, device=device)
    weights = list(tw.values())
    grads = torch.autograd.grad(twin(ones).sum(), weights, allow_unused=True)
    return {
        k: (p * g).abs().detach() if g is not None else torch.zeros_like(p)
        for (k, p), g in zip(tw.items(), grads, strict=True)
    }


def prune_at_init(
    model,
    density,
    criterion="snip",
    *,
    data=None,
    loss_fn=None,
    input_shape=None,
    scope="global",
    distribution="uniform",
    iterations=100,
    temperature=200.0,
    seed=0,
    **select,
):
    """Masks from a pruning-at-initialisation criterion.

    Parameters
    ----------
    model : torch.nn.Module
        Scored on a deep copy; the model itself is not changed.
    density : float or dict
        Fraction of weights kept, in (0, 1].
    criterion : {"snip", "grasp", "synflow", "magnitude", "random"}
    data : iterable of (inputs, targets), optional
        Batches for SNIP and GraSP.
    loss_fn : callable, optional
        ``loss_fn(outputs, targets)``; default cross-entropy.
    input_shape : tuple, optional
        Shape of one input, without the batch dimension (SynFlow).
    scope : {"global", "layer"}, default "global"
    distribution : {"uniform", "erk", "er"} or callable, default "uniform"
        Per-layer densities when ``scope="layer"``.
    iterations : int, default 100
        SynFlow's rounds (``density^(k/n)`` schedule).
    temperature : float, default 200
        GraSP's logit temperature.
    seed : int, default 0
        For ``criterion="random"``.
    **select
        ``include``, ``exclude``, ``min_numel`` of
        :func:`solvers.torch.select_layers`.

    Returns
    -------
    dict of str to torch.Tensor
        Boolean masks.
    """
    params = select_layers(model, **_selection(select))
    loss_fn = loss_fn or torch.nn.functional.cross_entropy
    if criterion == "magnitude":
        scores = {k: p.detach().abs() for k, p in params.items()}
    elif criterion == "random":
        gen = _generator(seed, 0, "cpu")
        scores = {k: torch.rand(p.shape, generator=gen).to(p.device) for k, p in params.items()}
    elif criterion == "snip":
        scores = snip_scores(model, params, data, loss_fn)
    elif criterion == "grasp":
        scores = grasp_scores(model, params, data, loss_fn, temperature)
    elif criterion == "synflow":
        if input_shape is None:
            raise ValueError("SynFlow needs input_shape (one input's shape, no batch dimension)")
        check_density(density) if not isinstance(density, dict) else None
        n = check_int("iterations", iterations)
        masks = None
        for k in range(1, n + 1):
            scores = synflow_scores(model, params, input_shape, masks)
            step_density = (
                {p: d ** (k / n) for p, d in density.items()}
                if isinstance(density, dict)
                else density ** (k / n)
            )
            masks = masks_from_scores(scores, step_density, scope, distribution)
        return {k: m.to(params[k].device) for k, m in masks.items()}
    else:
        raise ValueError(f"unknown criterion {criterion!r}; expected one of {CRITERIA}")
    masks = masks_from_scores(scores, density, scope, distribution)
    return {k: m.to(params[k].device) for k, m in masks.items()}


class GradualMagnitudePruning(MaskedTraining):
    """Gradual magnitude pruning on the cubic schedule of Zhu & Gupta (2017).

    ``d_t = d_f + (1 - d_f) (1 - (t - t_0) / (t_1 - t_0))^3`` for
    ``t_0 <= t <= t_1``, applied every ``update_every`` steps and at ``t_1``;
    the smallest active weights are removed and never regrown.

    Parameters
    ----------
    model : torch.nn.Module
    optimizer : torch.optim.Optimizer
    density : float
        Final density ``d_f`` in (0, 1].
    start, end : int
        ``t_0`` and ``t_1`` in optimizer steps, ``1 <= start <= end``.
    update_every : int, default 100
    scope : {"layer", "global"}, default "layer"
        The same density in every layer, or one threshold over all.
    include, exclude, min_numel
        Layer selection.
    process_group : torch.distributed.ProcessGroup, optional
        See :class:`~solvers.torch.masks.MaskedTraining`.
    """

    def __init__(
        self,
        model,
        optimizer,
        density,
        *,
        start,
        end,
        update_every=100,
        scope="layer",
        include=DEFAULT_LAYER_TYPES,
        exclude=None,
        min_numel=0,
        process_group=None,
    ):
        self.final_density = check_density(density)
        self.start = check_int("start", start)
        self.end = check_int("end", end)
        if self.end < self.start:
            raise ValueError(f"end ({end}) must not precede start ({start})")
        self.update_every = check_int("update_every", update_every)
        if scope not in ("layer", "global"):
            raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
        self.scope = scope
        params = select_layers(model, include, exclude, min_numel)
        masks = {k: torch.ones_like(p, dtype=torch.bool) for k, p in params.items()}
        super().__init__(model, optimizer, masks, process_group=process_group)

    def density_at(self, step):
        """The cubic schedule's density at ``step``."""
        if step <= self.start:
            return 1.0
        if step >= self.end:
            return self.final_density
        frac = (step - self.start) / (self.end - self.start)
        return self.final_density + (1.0 - self.final_density) * (1.0 - frac) ** 3

    def _due(self, step):
        return self.start <= step <= self.end and (
            (step - self.start) % self.update_every == 0 or step == self.end
        )

    def _update(self, step):
        d = self.density_at(step)
        scores = {
            k: torch.where(m, p.detach().abs(), torch.full_like(p, -1.0))
            for (k, p), m in zip(self.params.items(), self.masks.values(), strict=True)
        }
        if self.scope == "global":
            new = global_top_k_masks(scores, d)
        else:
            new = layer_top_k_masks(scores, dict.fromkeys(scores, d))
        changes = {k: (new[k] & self.masks[k], torch.zeros_like(new[k])) for k in new}
        return changes, {"step": step, "density": d}


class LotteryTicket:
    """Iterative magnitude pruning with rewinding (lottery tickets).

    ``snapshot()`` stores the weights to rewind to (at initialisation, or
    after ``k`` steps for deep networks); after training,
    ``next_masks(rate)`` prunes ``rate`` of the remaining weights by
    magnitude (masks compose across rounds) and ``rewind(masks)`` restores
    every parameter from the snapshot with the masks applied. Train the next
    round with :class:`solvers.torch.StaticSparsity` and a fresh optimizer.

    Parameters
    ----------
    model : torch.nn.Module
    scope : {"global", "layer"}, default "global"
    include, exclude, min_numel
        Layer selection.
    """

    def __init__(
        self, model, *, scope="global", include=DEFAULT_LAYER_TYPES, exclude=None, min_numel=0
    ):
        if scope not in ("global", "layer"):
            raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
        self.model = model
        self.scope = scope
        self.params = select_layers(model, include, exclude, min_numel)
        self.masks = {k: torch.ones_like(p, dtype=torch.bool) for k, p in self.params.items()}
        self.snapshot()

    def snapshot(self):
        """Store the current parameters and buffers as the rewind point."""
        self._rewind_state = copy.deepcopy(self.model.state_dict())

    def next_masks(self, rate=0.2):
        """Prune ``rate`` of the remaining weights by current magnitude."""
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"rate must be in [0, 1), got {rate!r}")
        n_kept = sum(int(m.sum()) for m in self.masks.values())
        total = sum(m.numel() for m in self.masks.values())
        scores = {
            k: torch.where(self.masks[k], p.detach().abs(), torch.full_like(p, -1.0))
            for k, p in self.params.items()
        }
        if self.scope == "global":
            new = global_top_k_masks(scores, max(n_kept * (1 - rate), 1.0) / total)
        else:
            new = layer_top_k_masks(
                scores,
                {k: int(m.sum()) * (1 - rate) / m.numel() for k, m in self.masks.items()},
            )
        self.masks = {k: new[k] & self.masks[k] for k in new}
        return {k: m.clone() for k, m in self.masks.items()}

    @torch.no_grad()
    def rewind(self, masks=None):
        """Restore the snapshot and zero the pruned weights."""
        self.model.load_state_dict(self._rewind_state)
        for k, m in (masks or self.masks).items():
            self.params[k].mul_(m.to(self.params[k].dtype))


def _as_matrix(w):
    return w.reshape(w.shape[0], -1)


def approximate_isometry_(model, masks, *, iterations=1000, lr=1e-3, gain=1.0):
    """Make the kept weights approximately orthogonal under a fixed mask, in place.

    Minimises ``||W_m W_m^T - gain^2 I||_F^2`` per layer (``W_m^T W_m`` when
    the layer has more rows than columns), ``W_m = M * W``, with Adam (Lee et
    al. 2020, §5). Returns the final residual per layer.
    """
    n = check_int("iterations", iterations)
    params = dict(model.named_parameters(remove_duplicate=False))
    out = {}
    for k, m in masks.items():
        w = params[k]
        mask = m.to(w.dtype)
        x = (w.detach() * mask).clone().requires_grad_(True)
        opt = torch.optim.Adam([x], lr=lr)
        rows, cols = _as_matrix(x).shape
        eye = torch.eye(min(rows, cols), dtype=w.dtype, device=w.device) * gain**2
        for _ in range(n):
            opt.zero_grad()
            a = _as_matrix(x * mask)
            gram = a @ a.T if rows <= cols else a.T @ a
            loss = ((gram - eye) ** 2).sum()
            loss.backward()
            opt.step()
        with torch.no_grad():
            w.copy_(x * mask)
        out[k] = math.sqrt(float(loss.detach()))
    return out


@torch.no_grad()
def orthogonalize_(model, names=None, gain=1.0):
    """Replace dense weights by the orthogonal factor of their own QR, in place.

    For weights after *structured* pruning (rows or channels removed): per
    layer ``W = QR`` of the matrix (transposed when it is wide), ``Q diag(sign
    diag R)`` scaled by ``gain`` (Wang et al. 2021's "exact isometry based on
    existing weights"). It fills zeros, so do not use it on masked weights;
    :func:`approximate_isometry_` keeps a mask.
    """
    params = dict(model.named_parameters(remove_duplicate=False))
    targets = names if names is not None else list(select_layers(model))
    for k in targets:
        w = params[k]
        a = _as_matrix(w).double()
        wide = a.shape[0] < a.shape[1]
        q, r = torch.linalg.qr(a.T if wide else a)
        q = q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, 1.0)
        w.copy_((q.T if wide else q).reshape(w.shape).to(w.dtype) * gain)
