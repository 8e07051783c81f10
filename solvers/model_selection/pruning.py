# SPDX-License-Identifier: BSD-3-Clause
"""Search-space pruning by the predictor's per-choice mean effect.

GBDT-NAS (Luo et al. 2020, arXiv 2007.04785, section 3.2) prunes an operation
when its mean SHAP value over the architectures that contain it is negative.
Without a SHAP dependency, the same question is asked of the predictor's
*partial dependence* (Friedman 2001, eq. 53): for a choice ``c`` of a
parameter ``p`` (a list value, or a region of a distribution),

.. math::

    \\mathrm{PD}_p(c) = \\frac{1}{m} \\sum_{j=1}^{m} \\hat f(x_j \\mid x_{j,p} := c),
    \\qquad
    e_p(c) = \\mathrm{PD}_p(c) - \\frac{1}{|C_p|} \\sum_{c' \\in C_p} \\mathrm{PD}_p(c'),

over ``m`` random configurations ``x_j`` of the space (the candidate pool) and
the choices ``C_p`` still kept. A choice is pruned when its effect is clearly
negative,

.. math::

    e_p(c) < -\\tau \\, \\sigma_y,

with ``sigma_y`` the standard deviation of the scores observed so far and
``tau`` the search's ``prune_threshold``, and only when (i) at least
:data:`MIN_EVIDENCE` evaluated configurations hold ``c`` (the predictor has
seen it), (ii) ``c`` is not the incumbent best configuration's choice, and
(iii) ``c`` is not the choice of highest partial dependence (a parameter
always keeps one choice).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MIN_EVIDENCE", "PrunedChoice", "choice_effects", "prune"]

#: evaluated configurations that must hold a choice before it can be pruned
MIN_EVIDENCE = 3

#: pool rows the partial dependence averages over
PD_ROWS = 256


@dataclass(frozen=True)
class PrunedChoice:
    """One pruned choice: where, what, and the evidence against it."""

    round: int
    subspace: int
    param: str
    choice: int
    description: str
    effect: float
    threshold: float
    n_evaluated: int

    def as_dict(self):
        return dict(self.__dict__)


def choice_effects(predictor, space, dim, pool):
    """Partial dependence ``PD_p(c)`` of each kept choice of ``dim`` (NaN if pruned).

    ``pool``: feature rows of random configurations; those of ``dim``'s dict
    are used (at most :data:`PD_ROWS`).
    """
    rows = np.asarray([r for r in pool if space.subspace_of(r) == dim.subspace])
    pd = np.full(dim.choices, np.nan)
    if len(rows) == 0:
        return pd
    rows = rows[:PD_ROWS]
    for i in range(dim.choices):
        if i in dim.pruned:
            continue
        edited = rows.copy()
        dim.set_choice(edited, i)
        pd[i] = float(np.mean(predictor.predict(edited)))
    return pd


def prune(predictor, space, pool, seen_rows, seen_scores, incumbent_row, *, threshold, round):
    """Prune the choices with a clearly negative effect (module docstring); return them.

    Parameters
    ----------
    predictor : regressor
        Fitted on ``(seen_rows, seen_scores)``.
    space : SearchSpace
        Its dimensions' ``pruned`` sets are updated in place.
    pool : ndarray of shape (m, n_features)
        Random configurations the partial dependence averages over.
    seen_rows, seen_scores : ndarray
        The evaluated configurations and their (finite) scores.
    incumbent_row : ndarray
        The best configuration so far: its choices are never pruned.
    threshold : float
        ``tau``, in standard deviations of ``seen_scores``.
    round : int
        Recorded in each :class:`PrunedChoice`.

    Returns
    -------
    list of PrunedChoice
    """
    scale = float(np.std(seen_scores)) if len(seen_scores) > 1 else 0.0
    if not np.isfinite(scale) or scale <= 0.0:
        return []
    out = []
    for dim in space.dimensions:
        kept = [i for i in range(dim.choices) if i not in dim.pruned]
        if len(kept) < 2:
            continue
        pd = choice_effects(predictor, space, dim, pool)
        if not np.isfinite(pd[kept]).all():
            continue
        effect = pd - np.mean(pd[kept])
        held = [space.choice_in(dim, r) for r in seen_rows]
        protected = {space.choice_in(dim, incumbent_row), kept[int(np.argmax(pd[kept]))]}
        for i in kept:
            n_evaluated = sum(h == i for h in held)
            if i in protected or n_evaluated < MIN_EVIDENCE:
                continue
            if effect[i] < -threshold * scale:
                dim.pruned.add(i)
                out.append(
                    PrunedChoice(
                        round=round,
                        subspace=dim.subspace,
                        param=dim.name,
                        choice=i,
                        description=dim.describe(i),
                        effect=float(effect[i]),
                        threshold=float(-threshold * scale),
                        n_evaluated=int(n_evaluated),
                    )
                )
    return out
