# SPDX-License-Identifier: BSD-3-Clause
"""Lottery tickets: iterative magnitude pruning with rewinding.

Frankle & Carbin (2019), "The lottery ticket hypothesis: finding sparse,
trainable neural networks"; rewinding to step ``k`` instead of 0 for deep
networks from Frankle et al. (2020), "Linear mode connectivity and the
lottery ticket hypothesis".
"""

from __future__ import annotations

import copy
from numbers import Real
from typing import ClassVar

import torch

from solvers._validation import StrOptions, interval, validate_params
from solvers.torch.sparse.layers import DEFAULT_LAYER_TYPES, select_layers
from solvers.torch.sparse.topk import check_scores, global_top_k_masks, layer_top_k_masks

__all__ = ["LotteryTicket"]


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

    _parameter_constraints: ClassVar[dict] = {
        "scope": [StrOptions({"global", "layer"})],
        "rate": [interval(Real, 0, 1, closed="left")],
    }

    def __init__(
        self, model, *, scope="global", include=DEFAULT_LAYER_TYPES, exclude=None, min_numel=0
    ):
        validate_params(self._parameter_constraints, {"scope": scope}, "LotteryTicket")
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
        validate_params(self._parameter_constraints, {"rate": rate}, "LotteryTicket.next_masks")
        n_kept = sum(int(m.sum()) for m in self.masks.values())
        total = sum(m.numel() for m in self.masks.values())
        scores = {
            k: torch.where(self.masks[k], p.detach().abs(), torch.full_like(p, -1.0))
            for k, p in self.params.items()
        }
        check_scores(scores)
        if self.scope == "global":
            new = global_top_k_masks(scores, max(n_kept * (1 - rate), 1.0) / total)
        else:
            new = layer_top_k_masks(
                scores,
                {k: int(m.sum()) * (1 - rate) / m.numel() for k, m in self.masks.items()},
            )
        self.masks = {k: new[k] & self.masks[k] for k in new}
        return {k: m.clone() for k, m in self.masks.items()}

    def rewind(self, masks=None):
        """Restore the snapshot and zero the pruned weights."""
        self.model.load_state_dict(self._rewind_state)
        with torch.no_grad():  # a block, not a decorator: mutmut 3 skips decorated functions
            for k, m in (masks or self.masks).items():
                self.params[k].mul_(m.to(self.params[k].dtype))
