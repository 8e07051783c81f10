# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch.sparse.lottery: iterative magnitude pruning with rewinding."""

import copy

import pytest
import torch
from torch import nn

from solvers.torch import LotteryTicket, magnitude_masks
from solvers.torch.sparse.densities import active_count


def test_lottery_ticket_rounds_nest_and_rewind(mlp, data, train):
    model = mlp()
    init = copy.deepcopy(model.state_dict())
    ticket = LotteryTicket(model)
    X, y = data()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train(model, opt, X, y, 10)
    m1 = ticket.next_masks(0.2)
    total = sum(m.numel() for m in m1.values())
    assert sum(int(m.sum()) for m in m1.values()) == round(0.8 * total)
    ticket.rewind()
    for k, v in model.state_dict().items():
        expected = init[k] * m1[k] if k in m1 else init[k]
        assert torch.equal(v, expected)
    m2 = ticket.next_masks(0.5)
    assert all(not (m2[k] & ~m1[k]).any() for k in m1)
    assert sum(int(m.sum()) for m in m2.values()) == round(0.4 * total)


def largest(magnitudes, k):
    """Boolean mask of the ``k`` largest entries (distinct values: random weights)."""
    threshold = magnitudes.reshape(-1).sort(descending=True).values[k - 1]
    return magnitudes >= threshold


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_each_round_prunes_rate_of_the_remaining_weights_by_magnitude(scope, mlp):
    # the weights do not move between rounds: each round's masks are the largest |theta|
    model = mlp()
    ticket = LotteryTicket(model, scope=scope)
    w = {k: p.detach().abs().clone() for k, p in ticket.params.items()}
    sizes = {k: v.numel() for k, v in w.items()}
    kept = dict(sizes)
    for rate in (0.2, 0.5, 0.0, 0.9):
        masks = ticket.next_masks(rate)
        if scope == "layer":
            kept = {k: active_count(n, kept[k] * (1 - rate) / n) for k, n in sizes.items()}
            for k, m in masks.items():
                assert torch.equal(m, largest(w[k], kept[k])), (rate, k)
        else:
            total = sum(sizes.values())
            n_kept = active_count(total, sum(kept.values()) * (1 - rate) / total)
            flat = torch.cat([v.reshape(-1) for v in w.values()])
            threshold = flat.sort(descending=True).values[n_kept - 1]
            for k, m in masks.items():
                assert torch.equal(m, w[k] >= threshold), (rate, k)
            kept = {k: int(m.sum()) for k, m in masks.items()}
            assert sum(kept.values()) == n_kept
            # one threshold: the layers keep different fractions
            assert list(kept.values()) != [active_count(n, n_kept / total) for n in sizes.values()]
        assert all(torch.equal(ticket.masks[k], m) for k, m in masks.items())


def test_the_default_rate_is_a_fifth_and_the_last_weight_is_never_pruned():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False))
    ticket = LotteryTicket(model)
    assert sum(int(m.sum()) for m in ticket.next_masks().values()) == 5  # round(0.8 * 6)
    for _ in range(3):  # 5 * 0.1 = 0.5 weights: one stays
        masks = ticket.next_masks(0.9)
        assert sum(int(m.sum()) for m in masks.values()) == 1


def test_rewind_restores_a_later_snapshot_with_the_given_masks(mlp, data, train):
    model = mlp()
    ticket = LotteryTicket(model)
    X, y = data()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train(model, opt, X, y, 2)
    ticket.snapshot()  # rewinding to step k = 2 (Frankle et al. 2020)
    at_k = copy.deepcopy(model.state_dict())
    train(model, opt, X, y, 5, start=2)
    ticket.next_masks(0.5)
    other = magnitude_masks(model, 0.3, scope="layer")  # not the ticket's masks
    ticket.rewind(other)
    for k, v in model.state_dict().items():
        assert torch.equal(v, at_k[k] * other[k] if k in other else at_k[k]), k


def test_layer_selection_reaches_the_masks(mlp):
    # mlp(): 0.weight (40 x 20), 2.weight (30 x 40), 4.weight (3 x 30)
    ticket = LotteryTicket(mlp(), scope="layer", exclude=r"^0\.", min_numel=91)
    assert list(ticket.next_masks(0.5)) == ["2.weight"]


def test_invalid_arguments_are_named_and_change_nothing(mlp):
    model = mlp()
    with pytest.raises(ValueError, match="'scope' parameter of LotteryTicket"):
        LotteryTicket(model, scope="both")
    ticket = LotteryTicket(model)
    ticket.next_masks(0.5)
    before = {k: m.clone() for k, m in ticket.masks.items()}
    for rate in (1.0, -0.1):
        with pytest.raises(ValueError, match=r"'rate' parameter of LotteryTicket\.next_masks"):
            ticket.next_masks(rate)
    assert all(torch.equal(before[k], m) for k, m in ticket.masks.items())
