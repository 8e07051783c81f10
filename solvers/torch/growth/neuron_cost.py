# SPDX-License-Identifier: BSD-3-Clause
"""What one more neuron costs: added FLOPs per input sample, or added parameters.

A neuron (a ``Linear`` row or a ``Conv2d`` output channel) of layer ``l``
feeding layer ``l'`` adds its own weights and the weights of ``l'`` that read
it (Wang et al. 2019, "Energy-aware neural architecture optimization with
fast splitting steepest descent", §3: the cost of the split neuron ``i`` is
the resources its copy uses). With ``fan_in`` the weights of one neuron
(``in_features``, or ``in_channels x kh x kw``) and ``fan_out`` the weights
of ``l'`` per input unit (``out_features`` for a ``Linear``, ``out_features x
block`` after ``Flatten`` where a channel is ``block`` columns,
``out_channels x kh' x kw'`` for a ``Conv2d``):

    params_i = fan_in + [bias] + fan_out,
    flops_i  = P_l fan_in + P_l' fan_out,

``P`` the number of output positions of a layer (1 for a ``Linear``,
``H_out x W_out`` for a ``Conv2d``, read from a forward pass of one input).
These costs add up only to first order: when a layer and the next one both
grow, the weights between their new neurons cost ``pair_l`` each pair more
(``P_l' kh' kw'``, ``P_l' block`` or 1 FLOPs; one weight per pair in
parameters), the quadratic term :func:`pair_costs` gives and
:func:`~solvers.torch.growth.budget_selection.select_under_budget` adds back.
FLOPs are multiply-accumulates per input sample, one multiply-add counted
as one FLOP (the convention of fvcore and of the papers' MACs); bias
additions are not counted. Every neuron of a layer costs the same.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["check_costs", "model_flops", "neuron_costs", "output_positions", "pair_costs"]

COST_KINDS = ("flops", "params")


def output_positions(model, sample):
    """``{index: positions}`` of every ``Linear``/``Conv2d`` of a ``Sequential``.

    ``sample`` is one input (or a batch; its first row is used); positions
    are ``H_out x W_out`` for a ``Conv2d`` and 1 for a ``Linear``.
    """
    out = sample[:1]
    positions = {}
    with torch.no_grad():
        for k, m in enumerate(model):
            out = m(out)
            if type(m) is nn.Conv2d:
                positions[k] = math.prod(out.shape[2:])
            elif type(m) is nn.Linear:
                positions[k] = math.prod(out.shape[1:-1]) if out.dim() > 2 else 1
    return positions


def model_flops(model, sample, *, nonzero=True):
    """Multiply-accumulates per input sample of the ``Linear``/``Conv2d`` layers.

    With ``nonzero`` (the default) a layer is charged only for its non-zero
    weights, what a sparse kernel would compute for a pruned network;
    ``nonzero=False`` counts every weight (a neuron just added with zero
    outgoing weights costs what it will cost once trained).
    """
    positions = output_positions(model, sample)
    mods = list(model)
    count = torch.count_nonzero if nonzero else torch.numel
    return float(sum(positions[k] * int(count(mods[k].weight)) for k in positions))


def neuron_costs(model, layers, sample, kind="flops"):
    """Per layer of ``layers`` (``{index: (activation, next)}``), each neuron's cost.

    Returns ``{index: tensor of shape (neurons,)}`` in float64, every entry
    the layer's cost of one more neuron (see the module docstring).
    """
    if kind not in COST_KINDS:
        raise ValueError(f"cost must be one of {COST_KINDS} or a dict, got {kind!r}")
    mods = list(model)
    positions = output_positions(model, sample) if kind == "flops" else None
    out = {}
    for i, (_, nxt) in layers.items():
        layer, after = mods[i], mods[nxt]
        m = layer.weight.shape[0]
        fan_in = layer.weight[0].numel()
        fan_out = after.weight.numel() // m
        if kind == "params":
            cost = fan_in + (layer.bias is not None) + fan_out
        else:
            cost = positions[i] * fan_in + positions[nxt] * fan_out
        out[i] = torch.full((m,), float(cost), dtype=torch.float64)
    return out


def pair_costs(model, layers, sample, kind="flops"):
    """``{layer: (next layer, cost)}`` of one weight-group between a new neuron and a new next one.

    Only for layers whose next layer is grown too (a key of ``layers``): a
    new neuron of ``layer`` and a new neuron of the next layer are joined
    by ``kh x kw`` (``Conv2d``), ``block`` (``Flatten -> Linear``) or 1
    weights, at the next layer's ``P`` positions for FLOPs.
    """
    mods = list(model)
    positions = output_positions(model, sample) if kind == "flops" else None
    out = {}
    for i, (_, nxt) in layers.items():
        if nxt not in layers:
            continue
        after = mods[nxt]
        per_pair = after.weight.numel() // (mods[i].weight.shape[0] * after.weight.shape[0])
        out[i] = (nxt, float(per_pair * (positions[nxt] if kind == "flops" else 1)))
    return out


def check_costs(costs, model, layers):
    """User costs ``{layer: scalar or one value per neuron}`` checked against the model.

    Returns them as ``{layer: float64 tensor (neurons,)}``. ``ValueError`` naming
    the layer when a layer is missing or unknown, a length differs from the
    layer's neuron count, or a cost is not finite and positive.
    """
    if not isinstance(costs, dict):
        raise TypeError(
            f"cost must be 'flops', 'params' or a dict {{layer: costs}}, got {type(costs).__name__}"
        )
    mods = list(model)
    missing, unknown = sorted(set(layers) - set(costs)), sorted(set(costs) - set(layers))
    if missing or unknown:
        raise ValueError(
            f"cost: the keys must be the layers to split {sorted(layers)}; missing {missing}, "
            f"not splittable or not selected {unknown}"
        )
    out = {}
    for i in layers:
        m = mods[i].weight.shape[0]
        c = torch.as_tensor(costs[i], dtype=torch.float64).detach().cpu()
        if c.dim() == 0:
            c = c.expand(m).clone()
        if c.shape != (m,):
            raise ValueError(
                f"cost of layer {i}: {tuple(c.shape)} values for its {m} neurons (give one "
                "value per neuron, or a scalar)"
            )
        if not (torch.isfinite(c).all() and (c > 0).all()):
            raise ValueError(f"cost of layer {i}: every cost must be finite and > 0, got {c}")
        out[i] = c
    return out
