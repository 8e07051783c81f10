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

import torch

from solvers._validation import StrOptions, check_int, validate_params
from solvers.torch.sparse.densities import check_density, layer_densities
from solvers.torch.sparse.layers import DEFAULT_LAYER_TYPES, select_layers
from solvers.torch.sparse.seeding import step_generator
from solvers.torch.sparse.topk import check_scores, global_top_k_masks, layer_top_k_masks

__all__ = [
    "CRITERIA",
    "grasp_scores",
    "magnitude_masks",
    "masks_from_scores",
    "prune_at_init",
    "snip_scores",
    "synflow_scores",
]

#: the criteria of :func:`prune_at_init`
CRITERIA = ("magnitude", "random", "snip", "grasp", "synflow")
#: one global threshold, or a density per layer
SCOPES = ("global", "layer")

_CONSTRAINTS = {
    "criterion": [StrOptions(set(CRITERIA))],
    "scope": [StrOptions(set(SCOPES))],
}


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

    Raises
    ------
    ValueError
        A score is NaN or inf (non-finite weights, data or gradients).
    """
    validate_params(_CONSTRAINTS, {"scope": scope}, "masks_from_scores")
    check_scores(scores)
    if scope == "global":
        if isinstance(density, dict):
            raise ValueError("a per-layer density map needs scope='layer'")
        return global_top_k_masks(scores, density)
    shapes = {k: tuple(s.shape) for k, s in scores.items()}
    return layer_top_k_masks(scores, layer_densities(shapes, density, distribution))


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
    for i, (x, _) in enumerate(batches):
        if torch.is_tensor(x) and x.is_floating_point() and not torch.isfinite(x).all():
            raise ValueError(f"data: the inputs of batch {i} hold NaN or inf")
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
    validate_params(_CONSTRAINTS, {"criterion": criterion, "scope": scope}, "prune_at_init")
    params = select_layers(model, **_selection(select))
    loss_fn = loss_fn or torch.nn.functional.cross_entropy
    if criterion == "synflow":
        masks = _synflow_masks(model, params, density, input_shape, scope, distribution, iterations)
    else:
        scores = _scores(criterion, model, params, data, loss_fn, temperature, seed)
        masks = masks_from_scores(scores, density, scope, distribution)
    return {k: m.to(params[k].device) for k, m in masks.items()}


def _scores(criterion, model, params, data, loss_fn, temperature, seed):
    """The scores of a one-shot criterion (all but SynFlow), on a copy of the model."""
    if criterion == "magnitude":
        return {k: p.detach().abs() for k, p in params.items()}
    if criterion == "random":
        gen = step_generator(seed, 0, "cpu")
        return {k: torch.rand(p.shape, generator=gen).to(p.device) for k, p in params.items()}
    if criterion == "snip":
        return snip_scores(model, params, data, loss_fn)
    return grasp_scores(model, params, data, loss_fn, temperature)


def _synflow_masks(model, params, density, input_shape, scope, distribution, iterations):
    """SynFlow's ``iterations`` rounds of scoring and pruning to ``density^(k/n)``."""
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
    return masks
