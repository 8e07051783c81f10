# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch.growth.firefly: candidates, their Taylor scores, growth under a budget."""

import pytest
import torch
from torch import nn

from solvers.torch import FireflyGrowth
from solvers.torch.growth.neuron_cost import model_flops


def _batches(X, y, size):
    return [(X[i : i + size], y[i : i + size]) for i in range(0, X.shape[0], size)]


def _nets(smooth_net, split_data, conv_net, conv_data):
    yield smooth_net(), split_data()
    for head in ("conv", "flatten"):
        yield conv_net(head=head), conv_data(40)


def _score_of(firefly, pick):
    c = firefly.candidates_[pick.layer]
    return float((c["split_score"] if pick.kind == "split" else c["new_score"])[pick.index])


def _only(firefly, pick):
    """``firefly.grow`` restricted to one candidate."""
    original = firefly.select
    firefly.select = lambda n_new=None, budget=None: [pick]
    try:
        return firefly.grow(1, warn=False)
    finally:
        firefly.select = original


def test_each_score_is_the_first_order_loss_change_of_its_candidate(
    smooth_net, split_data, conv_net, conv_data, loss_of
):
    for net, (X, y) in _nets(smooth_net, split_data, conv_net, conv_data):
        firefly = FireflyGrowth(net, n_candidates=2, candidate_epochs=3)
        firefly.score(_batches(X, y, 20))
        assert firefly.history_[-1] < firefly.history_[0]  # candidate training helps
        picks = firefly.select(n_new=100)
        kinds = {p.kind for p in picks}
        assert kinds == {"split", "new"}
        base = loss_of(net, X, y)
        for pick in picks[:3] + [p for p in picks if p.kind == "split"][:3]:
            actual = loss_of(_only(firefly, pick), X, y) - base
            # a new neuron: O(|u|^2) = O(eps^2) second-order term; a split: O(eps^4)
            assert actual == pytest.approx(_score_of(firefly, pick), rel=0.03), pick


def test_gates_at_zero_are_the_network_and_growth_keeps_it_to_first_order(
    smooth_net, split_data, conv_net, conv_data
):
    for net, (X, y) in _nets(smooth_net, split_data, conv_net, conv_data):
        firefly = FireflyGrowth(net, n_candidates=3, eps=1e-3)
        firefly.score(_batches(X, y, 20))
        off = {i: firefly._gates(i, 0.0) for i in firefly.layers}
        with torch.no_grad():
            torch.testing.assert_close(firefly._forward(X, firefly.candidates_, off), net(X))
        grown = firefly.grow(n_new=6, warn=False)
        with torch.no_grad():
            change = float((grown(X) - net(X)).abs().max())
        assert 0 < change < 1e-2
        added = sum(grown[i].weight.shape[0] - net[i].weight.shape[0] for i in firefly.layers)
        assert 0 < added == len(firefly.select(n_new=6)) <= 6


def test_consecutive_layers_grow_together_as_predicted(conv_net, conv_data, loss_of):
    net = conv_net()
    X, y = conv_data(40)
    firefly = FireflyGrowth(net, n_candidates=3, candidate_epochs=2)
    firefly.score(_batches(X, y, 20))
    picks = firefly.select(n_new=100)
    assert {(p.layer, p.kind) for p in picks} >= {(0, "new"), (3, "new"), (0, "split")}
    grown = firefly.grow(n_new=100, warn=False)
    assert grown[3].in_channels == grown[0].out_channels == 3 + sum(p.layer == 0 for p in picks)
    predicted = sum(_score_of(firefly, p) for p in picks)
    actual = loss_of(grown, X, y) - loss_of(net, X, y)
    assert actual == pytest.approx(predicted, rel=0.1)  # plus the candidates' interactions


def test_budget_bounds_the_added_flops(conv_net, conv_data):
    net = conv_net()
    X, y = conv_data(40)
    firefly = FireflyGrowth(net, n_candidates=2)
    firefly.score(_batches(X, y, 20))
    before = model_flops(net, X[:1])
    for budget in (200.0, 1500.0):
        grown = firefly.grow(budget=budget, warn=False)
        assert 0 < model_flops(grown, X[:1]) - before <= budget
    capped = FireflyGrowth(net, n_candidates=2, layer_cap={0: 1, 3: 0})
    capped.score(_batches(X, y, 20))
    assert [p.layer for p in capped.select(budget=1e6)] == [0]
    with pytest.warns(UserWarning, match="create a new optimizer"):
        firefly.grow(n_new=1)


def test_splits_only_and_new_neurons_only(smooth_net, split_data):
    X, y = split_data()
    net = smooth_net()
    only_new = FireflyGrowth(net, split=False, n_candidates=2)
    scores = only_new.score(_batches(X, y, 50))
    assert all(s.numel() == 0 and n.numel() == 2 for s, n in scores.values())
    assert {p.kind for p in only_new.select(n_new=10)} == {"new"}
    only_split = FireflyGrowth(net, n_candidates=0)
    only_split.score(_batches(X, y, 50))
    assert {p.kind for p in only_split.select(n_new=10)} == {"split"}


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"n_candidates": -1}, "n_candidates"),
        ({"eps": 0.0}, "eps"),
        ({"candidate_epochs": 0}, "candidate_epochs"),
        ({"cost": {0: 1.0}}, "missing"),
        ({"split": False, "n_candidates": 0}, "no candidates"),
        ({"layer_cap": {7: 1}}, "layer_cap"),
    ],
)
def test_bad_settings_are_named(kw, match, smooth_net):
    with pytest.raises(ValueError, match=match):
        FireflyGrowth(smooth_net(), **kw)


def test_bad_input_leaves_everything_unchanged(smooth_net, split_data):
    net = smooth_net()
    X, y = split_data()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    firefly = FireflyGrowth(net, n_candidates=2)
    with pytest.raises(RuntimeError, match="call score"):
        firefly.grow(n_new=1)
    firefly.score(_batches(X, y, 50))
    kept = firefly.candidates_
    for budget in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="budget"):
            firefly.grow(budget=budget, warn=False)
    with pytest.raises(TypeError, match="exactly one"):
        firefly.grow(warn=False)
    bad = X.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        firefly.score(_batches(bad, y, 50))
    with pytest.raises(ValueError, match="not an iterator"):
        firefly.score(iter(_batches(X, y, 50)))
    assert firefly.candidates_ is kept
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())
    assert all(p.requires_grad for p in net.parameters())
    assert all(p.grad is None for p in net.parameters())


def test_in_place_activation_gives_the_same_scores():
    X = torch.randn(30, 2, 6, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (30,))
    scores = []
    for inplace in (False, True):
        torch.manual_seed(4)
        net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.SiLU(inplace=inplace), nn.Flatten(),
                            nn.Linear(48, 3)).double()  # fmt: skip
        scores.append(FireflyGrowth(net, n_candidates=2).score([(X, y)]))
    for i in scores[0]:
        for a, b in zip(scores[0][i], scores[1][i], strict=True):
            torch.testing.assert_close(a, b)
