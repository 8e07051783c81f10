# SPDX-License-Identifier: BSD-3-Clause
"""Which candidates to grow under a cost budget: a linear program (energy-aware splitting).

Wang et al. 2019 ("Energy-aware neural architecture optimization with fast
splitting steepest descent", eq. 6) choose the neurons to split by

    min_beta  sum_i beta_i s_i
    s.t.      sum_i beta_i cost_i <= budget,
              sum_{i in layer l} beta_i <= cap_l   for every layer l,
              0 <= beta_i <= 1,

with ``s_i`` the predicted loss change of candidate ``i`` (the splitting
index ``lambda_min``, or a first-order score) and only candidates with
``s_i < 0`` eligible (the others would not lower the loss). Solved with
SciPy's ``linprog(method="highs")`` (the reference code's
``method="interior-point"`` is deprecated).

Rounding. HiGHS returns a basic (vertex) solution, whose fractional entries
number at most the binding constraints: at most one for the budget (the
fractional knapsack) and one per layer cap. Candidates with
``beta_i >= 0.99`` (the reference's threshold) are kept; the budget and caps
left over are then filled greedily with the remaining eligible candidates in
order of ``s_i / cost_i`` (most loss decrease per unit of cost first), each
taken only if it still fits. The chosen set therefore never exceeds the
budget or a cap, and it contains every integral ``beta_i = 1`` of the LP.

Consecutive layers. The linear costs omit the weights joining a new neuron
of one layer to a new neuron of the next (a product of the two counts,
:func:`~solvers.torch.growth.neuron_cost.pair_costs`). Given ``pairs``, the
exact cost ``sum_i cost_i + sum_l pair_l n_l n_l'`` is what must fit: the
kept set is trimmed (largest ``s_i / cost_i`` first) until it does, and the
greedy fill counts it too.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.optimize import linprog

from solvers._validation import check_int, check_positive

__all__ = ["BudgetChoice", "check_count_or_budget", "select_count", "select_under_budget"]

#: LP values at or above this are rounded to 1 (the reference code's threshold)
KEEP = 0.99


class BudgetChoice(NamedTuple):
    """The chosen candidates (indices, most negative score first) and the LP solution."""

    chosen: np.ndarray
    beta: np.ndarray  # the LP's beta per candidate (0 for the ineligible ones)
    lp_objective: float  # sum beta_i s_i: a lower bound of the chosen set's predicted change


def check_count_or_budget(n_new, budget, owner):
    """Exactly one of ``n_new`` (a count, >= 0) and ``budget`` (a cost, > 0), validated."""
    if (n_new is None) == (budget is None):
        raise TypeError("give exactly one of n_new (a count) and budget (a cost)")
    if n_new is not None:
        return check_int("n_new", n_new, minimum=0), None
    return None, check_positive("budget", budget, owner=owner)


def _caps(groups, layer_cap):
    """``{group: max count}`` from an int for all groups, a dict, or None (no cap)."""
    if layer_cap is None:
        return {}
    if isinstance(layer_cap, dict):
        return {g: int(c) for g, c in layer_cap.items()}
    return {int(g): int(layer_cap) for g in np.unique(groups)}


def _exact_cost(taken, costs, groups, pairs):
    """Linear costs plus ``pair_l n_l n_l'`` for each grown pair of consecutive layers."""
    total = float(costs[taken].sum()) if taken else 0.0
    if pairs:
        count = {}
        for i in taken:
            count[int(groups[i])] = count.get(int(groups[i]), 0) + 1
        for g, (nxt, pair) in pairs.items():
            total += pair * count.get(g, 0) * count.get(nxt, 0)
    return total


def select_under_budget(scores, costs, groups, budget, layer_cap=None, pairs=None):
    """Solve the budgeted LP over the candidates and round it (see the module docstring).

    Parameters
    ----------
    scores, costs : array of shape (n,)
        Predicted loss change (negative = a decrease) and cost (> 0) of each candidate.
    groups : array of int, shape (n,)
        The layer of each candidate (for the per-layer caps).
    budget : float
        The cost budget, > 0.
    layer_cap : int or dict of int to int, optional
        The most candidates taken from one layer (all layers, or per layer).
    pairs : dict of int to (int, float), optional
        ``{group: (next group, cost of one pair of new neurons)}``: the
        quadratic cost term of consecutive grown layers (see above).

    Returns
    -------
    BudgetChoice
    """
    scores = np.asarray(scores, dtype=np.float64)
    costs = np.asarray(costs, dtype=np.float64)
    groups = np.asarray(groups)
    caps = _caps(groups, layer_cap)
    n = scores.shape[0]
    beta = np.zeros(n)
    eligible = np.flatnonzero((scores < 0) & (costs <= budget))
    eligible = eligible[[caps.get(int(groups[i]), 1) > 0 for i in eligible]]
    if eligible.size == 0:
        return BudgetChoice(np.zeros(0, dtype=np.int64), beta, 0.0)
    rows = [costs[eligible] / budget]  # scaled: the budget row is <= 1
    bounds = [1.0]
    for g, cap in caps.items():
        member = (groups[eligible] == g).astype(np.float64)
        if member.any() and cap < member.sum():
            rows.append(member)
            bounds.append(float(cap))
    res = linprog(
        scores[eligible], A_ub=np.vstack(rows), b_ub=np.asarray(bounds),
        bounds=(0.0, 1.0), method="highs",
    )  # fmt: skip
    if res.status != 0:  # the LP is feasible (beta = 0) and bounded: only a solver failure
        raise RuntimeError(f"linprog (HiGHS) failed on the budget LP: {res.message}")
    beta[eligible] = np.clip(res.x, 0.0, 1.0)
    ratio = lambda i: (scores[i] / costs[i], i)  # noqa: E731
    taken = sorted((int(i) for i in eligible if beta[i] >= KEEP), key=ratio)
    while taken and _exact_cost(taken, costs, groups, pairs) > budget:
        taken.pop()  # the least decrease per unit of cost
    count = {}
    for i in taken:
        count[int(groups[i])] = count.get(int(groups[i]), 0) + 1
    for i in sorted(set(eligible.tolist()) - set(taken), key=ratio):
        g = int(groups[i])
        fits = _exact_cost([*taken, i], costs, groups, pairs) <= budget
        if fits and count.get(g, 0) < caps.get(g, n + 1):
            taken.append(i)
            count[g] = count.get(g, 0) + 1
    chosen = np.asarray(sorted(taken, key=lambda i: (scores[i], i)), dtype=np.int64)
    return BudgetChoice(chosen, beta, float(res.fun))


def select_count(scores, groups, n_new, layer_cap=None):
    """The ``n_new`` most negative scores (``< 0`` only), at most ``cap`` per layer.

    Returns indices, most negative first (ties: lower index first).
    """
    scores = np.asarray(scores, dtype=np.float64)
    groups = np.asarray(groups)
    caps = _caps(groups, layer_cap)
    order = sorted(np.flatnonzero(scores < 0).tolist(), key=lambda i: (scores[i], i))
    taken, count = [], {}
    for i in order:
        if len(taken) == n_new:
            break
        g = int(groups[i])
        if count.get(g, 0) < caps.get(g, len(scores) + 1):
            taken.append(i)
            count[g] = count.get(g, 0) + 1
    return np.asarray(taken, dtype=np.int64)
