# SPDX-License-Identifier: BSD-3-Clause
"""Gradual magnitude pruning during training (Zhu & Gupta 2017).

Zhu & Gupta (2017), "To prune, or not to prune: exploring the efficacy of
pruning for model compression", eq. 1: the density follows the cubic

    d_t = d_f + (1 - d_f) (1 - (t - t_0) / (t_1 - t_0))^3,   t_0 <= t <= t_1,

and the smallest active weights are removed at each update, never regrown.
"""

from __future__ import annotations

from numbers import Integral
from typing import ClassVar

import torch

from solvers._validation import StrOptions, interval, validate_params
from solvers.torch.sparse.controller import MaskChange, MaskedTraining, MaskUpdate
from solvers.torch.sparse.densities import check_density
from solvers.torch.sparse.layers import DEFAULT_LAYER_TYPES, select_layers
from solvers.torch.sparse.topk import check_scores, global_top_k_masks, layer_top_k_masks

__all__ = ["GradualMagnitudePruning"]

_STEP = interval(Integral, 1, None, closed="left")


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
        ``t_0`` and ``t_1`` in optimizer steps, ``1 <= start <= end``;
        ``start == end`` prunes once, at that step.
    update_every : int, default 100
    scope : {"layer", "global"}, default "layer"
        The same density in every layer, or one threshold over all.
    include, exclude, min_numel
        Layer selection.
    process_group : torch.distributed.ProcessGroup, optional
        See :class:`~solvers.torch.sparse.controller.MaskedTraining`.
    """

    _parameter_constraints: ClassVar[dict] = {
        "start": [_STEP],
        "end": [_STEP],
        "update_every": [_STEP],
        "scope": [StrOptions({"layer", "global"})],
    }

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
        validate_params(
            self._parameter_constraints,
            {"start": start, "end": end, "update_every": update_every, "scope": scope},
            "GradualMagnitudePruning",
        )
        self.start, self.end, self.update_every = int(start), int(end), int(update_every)
        if self.end < self.start:
            raise ValueError(f"end ({end}) must not precede start ({start})")
        self.scope = scope
        params = select_layers(model, include, exclude, min_numel)
        masks = {k: torch.ones_like(p, dtype=torch.bool) for k, p in params.items()}
        super().__init__(model, optimizer, masks, process_group=process_group)

    def density_at(self, step):
        """The cubic schedule's density at ``step``: 1 up to ``t_0``, ``d_f`` from ``t_1`` on.

        ``d_f`` wins at ``t_0 = t_1``: ``start == end`` prunes once, to ``density``.
        """
        if step >= self.end:
            return self.final_density
        if step <= self.start:
            return 1.0
        frac = (step - self.start) / (self.end - self.start)
        return self.final_density + (1.0 - self.final_density) * (1.0 - frac) ** 3

    def _due(self, step):
        """Every ``update_every`` steps from ``start``, and at ``end``."""
        return self.start <= step <= self.end and (
            (step - self.start) % self.update_every == 0 or step == self.end
        )

    def _update(self, step):
        """Keep the ``d_t`` largest active weights (never regrown)."""
        d = self.density_at(step)
        scores = {
            k: torch.where(m, p.detach().abs(), torch.full_like(p, -1.0))
            for (k, p), m in zip(self.params.items(), self.masks.values(), strict=True)
        }
        check_scores(scores)
        if self.scope == "global":
            new = global_top_k_masks(scores, d)
        else:
            new = layer_top_k_masks(scores, dict.fromkeys(scores, d))
        changes = {k: MaskChange(new[k] & self.masks[k], torch.zeros_like(new[k])) for k in new}
        return MaskUpdate(changes, {"step": step, "density": d})
