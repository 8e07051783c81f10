# SPDX-License-Identifier: BSD-3-Clause
"""Masks with exact counts: top-k, bottom-k, random, per layer or global.

Counts are exact and ties are broken deterministically (equal scores go to
the lower flat index, as a stable sort would order them); masks are never
Bernoulli draws.
"""

from __future__ import annotations

import math

import torch

from solvers.torch.sparse.densities import active_count, check_density
from solvers.torch.sparse.seeding import step_generator

__all__ = [
    "bottom_k_mask",
    "check_scores",
    "global_top_k_masks",
    "layer_top_k_masks",
    "random_masks",
    "top_k_mask",
]


def top_k_mask(scores, k, largest=True):
    """Boolean mask of the ``k`` largest (or smallest) scores, exactly ``k`` set.

    Ties at the threshold go to the lower flat index, so the result is
    deterministic. One ``topk`` for the threshold plus element-wise passes
    (about 8x faster than a stable sort at 235k entries) and no host
    synchronisation. NaN ranks last, never displacing a real score.
    """
    flat = scores.reshape(-1)
    if flat.is_floating_point():
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
    """Uniformly random masks with exactly :func:`active_count` active entries per layer.

    Layer ``i`` draws from :func:`~solvers.torch.sparse.seeding.step_generator`
    at step ``-1 - i``, on the CPU (the same masks on every device).
    """
    out = {}
    for i, (name, p) in enumerate(params.items()):
        g = step_generator(seed, -1 - i, "cpu")
        scores = torch.rand(p.shape, generator=g).to(p.device)
        out[name] = top_k_mask(scores, active_count(p.numel(), densities[name]))
    return out


def check_scores(scores):
    """Refuse pruning scores with NaN or inf (returned unchanged when finite).

    A NaN score ranks last (:func:`top_k_mask`), so scores computed from NaN
    weights, data or gradients would still give masks of the right density,
    chosen arbitrarily; a ``ValueError`` naming the layer is raised instead.
    """
    for name, s in scores.items():
        if s.is_floating_point() and not torch.isfinite(s).all():
            bad = "NaN" if torch.isnan(s).any() else "inf"
            raise ValueError(
                f"the pruning scores of {name!r} hold {bad} (from non-finite weights, data, "
                "loss or gradients): masks from them would be arbitrary"
            )
    return scores


def global_top_k_masks(scores, density):
    """Keep the ``round(density * N)`` largest scores over all layers (one threshold).

    Ties are broken by layer order, then flat index. Scores are compared in
    float64 (SynFlow's overflow float32). Returns ``{name: bool mask}``.
    """
    density = check_density(density)
    names = list(scores)
    flat = torch.cat([scores[k].reshape(-1).double() for k in names])
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
