# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch.growth.budget_selection: the budget LP against brute force."""

import itertools

import numpy as np
import pytest

from solvers.torch.growth.budget_selection import select_count, select_under_budget


def _brute_force(scores, costs, groups, budget, cap):
    best = 0.0
    for r in range(1, len(scores) + 1):
        for subset in itertools.combinations(range(len(scores)), r):
            s = list(subset)
            counts = np.bincount(groups[s], minlength=groups.max() + 1)
            if costs[s].sum() <= budget and (cap is None or counts.max() <= cap):
                best = min(best, scores[s].sum())
    return best


@pytest.mark.parametrize("seed", range(12))
def test_rounded_lp_is_feasible_and_within_one_item_of_the_optimum(seed):
    rng = np.random.default_rng(seed)
    n = 10
    scores = rng.normal(size=n) - 0.3
    costs = rng.uniform(1, 5, size=n)
    groups = rng.integers(0, 3, size=n)
    budget = float(rng.uniform(3, 15))
    cap = None if seed % 2 else 2
    choice = select_under_budget(scores, costs, groups, budget, cap)
    chosen = choice.chosen
    assert costs[chosen].sum() <= budget + 1e-12
    assert (scores[chosen] < 0).all()
    if cap is not None:
        assert np.bincount(groups[chosen], minlength=3).max() <= cap
    assert ((choice.beta >= 0) & (choice.beta <= 1)).all()
    assert (choice.beta[scores >= 0] == 0).all()
    opt = _brute_force(scores, costs, groups, budget, cap)
    value = scores[chosen].sum()
    # the LP relaxes the integer problem; rounding loses at most the fractional items
    assert choice.lp_objective <= opt + 1e-9 <= value + 2e-9
    n_fractional = int(((choice.beta > 1e-9) & (choice.beta < 0.99)).sum())
    assert n_fractional <= 1 + (0 if cap is None else 3)  # a vertex: one per binding row
    assert value <= choice.lp_objective + n_fractional * np.abs(scores).max() + 1e-9
    assert list(scores[chosen]) == sorted(scores[chosen])


def test_equal_costs_choose_the_most_negative_like_a_count():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=30)
    groups = rng.integers(0, 4, size=30)
    for k in (1, 3, 7):
        by_budget = select_under_budget(scores, np.full(30, 2.0), groups, 2.0 * k, 3).chosen
        np.testing.assert_array_equal(by_budget, select_count(scores, groups, k, 3))
    assert len(select_count(scores, groups, 100)) == int((scores < 0).sum())


def test_nothing_eligible():
    choice = select_under_budget([0.5, 0.0], [1.0, 1.0], [0, 0], 10.0)
    assert choice.chosen.size == 0 and choice.lp_objective == 0.0
    assert select_under_budget([-1.0], [5.0], [0], 4.0).chosen.size == 0  # too expensive
    assert select_under_budget([-1.0, -2.0], [1.0, 1.0], [0, 1], 4.0, {1: 0}).chosen.tolist() == [0]


@pytest.mark.parametrize("seed", range(8))
def test_pair_costs_of_consecutive_layers_are_within_the_budget(seed):
    rng = np.random.default_rng(seed)
    n = 9
    scores = rng.normal(size=n) - 0.5
    costs = rng.uniform(1, 3, size=n)
    groups = np.repeat([0, 1, 2], 3)
    pairs = {0: (1, 0.7), 1: (2, 1.5)}
    budget = float(rng.uniform(4, 12))
    chosen = select_under_budget(scores, costs, groups, budget, pairs=pairs).chosen
    count = np.bincount(groups[chosen], minlength=3)
    exact = costs[chosen].sum() + 0.7 * count[0] * count[1] + 1.5 * count[1] * count[2]
    assert exact <= budget
    # maximal: no further eligible candidate fits
    for i in np.flatnonzero(scores < 0):
        if i not in chosen:
            c = count.copy()
            c[groups[i]] += 1
            more = costs[chosen].sum() + costs[i] + 0.7 * c[0] * c[1] + 1.5 * c[1] * c[2]
            assert more > budget
