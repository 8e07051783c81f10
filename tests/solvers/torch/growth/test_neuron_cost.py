# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch.growth.neuron_cost: a neuron's cost is what its copy adds to the model."""

import numpy as np
import pytest
import torch
from torch import nn

from solvers.torch import NeuronSplitting
from solvers.torch.growth.neuron_cost import check_costs, model_flops, neuron_costs


def _params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("head", ["conv", "flatten", "mlp"])
def test_cost_is_the_flops_and_parameters_one_split_adds(head, conv_net, conv_data, smooth_net):
    if head == "mlp":
        net, (X, y) = smooth_net(), (torch.randn(40, 6, dtype=torch.float64), None)
        y = torch.randint(0, 3, (40,))
    else:
        net, (X, y) = conv_net(head=head), conv_data(20)
    checked = 0
    for kind, measure in (("flops", lambda m: model_flops(m, X[:1])), ("params", _params)):
        for i in NeuronSplitting(net).layers:
            splitter = NeuronSplitting(net, layers=[i], cost=kind, signed=True)
            splitter.score([(X, y)])
            cost = float(splitter.costs_[i][0])
            if not splitter.select(n_new=1):
                continue
            # a budget of one neuron's cost buys exactly that neuron
            assert measure(splitter.split(budget=cost, warn=False)) - measure(net) == cost
            assert measure(splitter.split(budget=2.5 * cost, warn=False)) - measure(net) == (
                cost * min(2, len(splitter.select(n_new=2)))
            )
            checked += 1
    assert checked >= 2


def test_flops_by_hand():
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(2, 3, 3), nn.Tanh(),
        nn.Flatten(), nn.Linear(3 * 2 * 2, 4), nn.Tanh(), nn.Linear(4, 5),
    )  # fmt: skip
    x = torch.zeros(1, 1, 8, 8)
    layers = {0: (1, 3), 3: (4, 6), 6: (7, 8)}
    flops = neuron_costs(net, layers, x, "flops")
    # conv 0: 9 weights at 64 positions; conv 3 reads it with 3 x 9 weights at 4 positions
    assert flops[0].tolist() == [9 * 64 + 27 * 4] * 2
    assert flops[3].tolist() == [18 * 4 + 4 * 4] * 3  # then 4 outputs x 4 columns of its block
    assert flops[6].tolist() == [12 + 5] * 4
    params = neuron_costs(net, layers, x, "params")
    assert params[0].tolist() == [9 + 1 + 27] * 2
    assert model_flops(net, x) == 2 * 9 * 64 + 3 * 18 * 4 + 4 * 12 + 5 * 4
    with torch.no_grad():
        net[8].weight[0] = 0  # masked weights are not charged
    assert model_flops(net, x) == 2 * 9 * 64 + 3 * 18 * 4 + 4 * 12 + 4 * 4


def test_user_costs_must_match_the_model(smooth_net):
    net = smooth_net()
    layers = {0: (1, 2), 2: (3, 4)}
    out = check_costs({0: 2.0, 2: [1, 2, 3, 4, 5]}, net, layers)
    assert out[0].tolist() == [2.0] * 4 and out[2].tolist() == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match=r"missing \[2\]"):
        check_costs({0: 1.0}, net, layers)
    with pytest.raises(ValueError, match=r"not selected \[4\]"):
        check_costs({0: 1.0, 2: 1.0, 4: 1.0}, net, layers)
    with pytest.raises(ValueError, match="layer 2: \\(3,\\) values for its 5 neurons"):
        check_costs({0: 1.0, 2: [1, 2, 3]}, net, layers)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite and > 0"):
            check_costs({0: 1.0, 2: bad}, net, layers)
    with pytest.raises(TypeError, match="cost must be"):
        check_costs([1.0], net, layers)
    with pytest.raises(ValueError, match="not selected"):
        NeuronSplitting(net, layers=[0], cost={0: 1.0, 2: 1.0})


@pytest.mark.parametrize("grower", ["split", "firefly"])
def test_consecutive_layers_grown_together_stay_within_the_budget(
    grower, smooth_net, split_data, conv_net, conv_data
):
    """The weights between the new neurons of consecutive layers are charged too."""
    from solvers.torch import FireflyGrowth

    both = 0
    for net, (X, y) in [(smooth_net(), split_data()), (conv_net(), conv_data(40))]:
        if grower == "split":
            g = NeuronSplitting(net, signed=True)
        else:
            g = FireflyGrowth(net, n_candidates=4)
        for kind, measure in (
            ("flops", lambda m, X=X: model_flops(m, X[:1], nonzero=False)),
            ("params", _params),
        ):
            g.cost = kind
            g.score([(X[:20], y[:20]), (X[20:], y[20:])])
            assert set(g.pairs_) == {i for i, (_, nxt) in g.layers.items() if nxt in g.layers}
            per = {i: float(c[0]) for i, c in g.costs_.items()}
            for budget in np.linspace(min(per.values()), 6 * max(per.values()), 13):
                grown = g.split(budget=budget, eps=1e-3, warn=False) if grower == "split" else (
                    g.grow(budget=budget, warn=False))  # fmt: skip
                assert measure(grown) - measure(net) <= budget
                added = [grown[i].weight.shape[0] - net[i].weight.shape[0] for i in g.layers]
                both += sum(a > 0 for a in added) >= 2
    assert both > 0  # the quadratic term was exercised
