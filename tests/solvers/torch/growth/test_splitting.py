# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch.growth.splitting: S2D and signed splitting of Linear and Conv2d neurons."""

import copy

import pytest
import torch
from torch import nn

from solvers.torch import NeuronSplitting
from solvers.torch.growth.splitting import _split_layer, append_neurons


@pytest.mark.parametrize("signed", [False, True])
def test_splitting_keeps_the_function_and_lowers_the_loss_as_predicted(
    signed, smooth_net, split_data, loss_of
):
    net = smooth_net()
    X, y = split_data()
    splitter = NeuronSplitting(net, signed=signed)
    splitter.score([(X[:100], y[:100]), (X[100:], y[100:])])
    change = splitter.predicted_change()
    (i, j, _), *_ = splitter.select(1)
    assert float(change[i][j]) < 0
    diffs = []
    for eps in (1e-2, 5e-3):
        grown = splitter.split(1, eps=eps, warn=False)
        assert grown[i].out_features == net[i].out_features + 1
        with torch.no_grad():
            diffs.append(float((grown(X) - net(X)).abs().max()))
        actual = (loss_of(grown, X, y) - loss_of(net, X, y)) / (eps**2 / 2)
        assert actual == pytest.approx(float(change[i][j]), rel=0.02)
    assert diffs[1] < diffs[0] / 3  # O(eps^2): halving eps quarters the change
    assert loss_of(net, X, y) > loss_of(grown, X, y)


def test_select_names_its_picks(smooth_net, split_data):
    X, y = split_data()
    splitter = NeuronSplitting(smooth_net(), signed=True)
    splitter.score([(X, y)])
    picks = splitter.select(3)
    change = splitter.predicted_change()
    values = [float(change[p.layer][p.neuron]) for p in picks]
    assert values == sorted(values) and all(v < 0 for v in values)
    assert {p.kind for p in picks} <= {"s2d", "signed"}


def test_signed_split_uses_lambda_max(smooth_net, split_data, loss_of):
    net = smooth_net()
    X, y = split_data()
    splitter = NeuronSplitting(net, signed=True)
    eigen = splitter.score([(X, y)])
    change = splitter.predicted_change()
    eps = 1e-3
    for i, e in eigen.items():
        torch.testing.assert_close(change[i], torch.minimum(e.lambda_min, -0.5 * e.lambda_max))
        # the signed split of every neuron changes the loss by -lambda_max / 2 per eps^2 / 2
        # (measured relative error up to 1.9e-3 at eps = 1e-3, the O(eps) term)
        nxt = splitter.layers[i][1]
        for j in range(len(e.lambda_max)):
            grown = copy.deepcopy(net)
            grown[i], grown[nxt] = _split_layer(grown[i], grown[nxt], e, [(j, "signed")], eps)
            actual = (loss_of(grown, X, y) - loss_of(net, X, y)) / (eps**2 / 2)
            assert actual == pytest.approx(-0.5 * float(e.lambda_max[j]), rel=5e-3)
    # where lambda_min >= 0 only the lambda_max direction lowers the loss, and it is picked
    signed_only = [
        (i, j)
        for i, e in eigen.items()
        for j in range(len(e.lambda_min))
        if e.lambda_min[j] >= 0 > -0.5 * e.lambda_max[j]
    ]
    assert signed_only
    picks = {(p.layer, p.neuron): p.kind for p in splitter.select(100)}
    assert all(picks[ij] == "signed" for ij in signed_only)


def test_split_budget_and_several_layers(smooth_net, split_data):
    net = smooth_net()
    X, y = split_data()
    splitter = NeuronSplitting(net, signed=True)
    splitter.score([(X, y)])
    grown = splitter.split(4, eps=1e-3, warn=False)
    added = (grown[0].out_features - 4) + (grown[2].out_features - 5)
    assert 0 < added <= 4
    assert grown[2].in_features == grown[0].out_features
    assert grown[4].in_features == grown[2].out_features
    assert float((grown(X) - net(X)).abs().max()) < 1e-4
    with pytest.warns(UserWarning, match="create a new optimizer"):
        splitter.split(1)


def test_not_splittable_layers_are_named(smooth_net):
    relu_mlp = nn.Sequential(nn.Linear(20, 40), nn.ReLU(), nn.Linear(40, 3))
    with pytest.raises(ValueError, match=r"no splittable layer.*ReLU"):
        NeuronSplitting(relu_mlp)
    with pytest.raises(ValueError, match=r"layer 4 .*not splittable"):
        NeuronSplitting(smooth_net(), layers=[4])
    with pytest.raises(TypeError, match="Sequential"):
        NeuronSplitting(nn.Linear(3, 3))
    with pytest.raises(RuntimeError, match="call score"):
        NeuronSplitting(smooth_net()).split(1)


@pytest.mark.parametrize("head", ["conv", "flatten"])
def test_conv_splitting_keeps_the_function_and_lowers_the_loss_as_predicted(
    head, loss_of, conv_net, conv_data
):
    net = conv_net(head=head)
    X, y = conv_data()
    splitter = NeuronSplitting(net, layers=[0])
    splitter.score([(X, y)])
    change = splitter.predicted_change()[0]
    (_, j, _), *_ = splitter.select(1)
    assert float(change[j]) < 0
    diffs = []
    for eps in (1e-2, 5e-3):
        grown = splitter.split(1, eps=eps, warn=False)
        assert grown[0].out_channels == 4
        assert (grown[3].in_channels if head == "conv" else grown[4].in_features) == (
            4 if head == "conv" else 4 * 16
        )
        with torch.no_grad():
            diffs.append(float((grown(X) - net(X)).abs().max()))
        actual = (loss_of(grown, X, y) - loss_of(net, X, y)) / (eps**2 / 2)
        assert actual == pytest.approx(float(change[j]), rel=0.02)
    assert diffs[1] < diffs[0] / 3  # O(eps^2)


def test_conv_and_linear_layers_split_together(conv_net, conv_data):
    net = conv_net()
    X, y = conv_data()
    splitter = NeuronSplitting(net, signed=True)
    assert set(splitter.layers) == {0, 3}
    splitter.score([(X, y)])
    grown = splitter.split(3, eps=1e-3, warn=False)
    assert grown[0].out_channels + grown[3].out_channels > 3 + 4
    assert grown[3].in_channels == grown[0].out_channels
    assert grown[6].in_features == grown[3].out_channels * 4  # 2 x 2 positions
    assert float((grown(X) - net(X)).abs().max()) < 1e-4


@pytest.mark.parametrize("conv", [False, True])
def test_in_place_activations_give_the_same_splitting_matrices(conv):
    X = torch.randn(12, 2, 6, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (12,))
    eig = []
    for inplace in (False, True):
        torch.manual_seed(4)
        if conv:
            layers = [nn.Conv2d(2, 3, 3), nn.SiLU(inplace=inplace), nn.Flatten(), nn.LazyLinear(3)]
        else:
            layers = [nn.Flatten(), nn.Linear(72, 5), nn.SiLU(inplace=inplace), nn.Linear(5, 3)]
        net = nn.Sequential(*layers).double()
        net(X)
        eig.append(NeuronSplitting(net).score([(X, y)]))
    for i in eig[0]:
        torch.testing.assert_close(eig[1][i].lambda_min, eig[0][i].lambda_min)
        torch.testing.assert_close(eig[1][i].lambda_max, eig[0][i].lambda_max)


def test_splitting_a_layer_without_bias(split_data, loss_of):
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(6, 4, bias=False), nn.Tanh(), nn.Linear(4, 3)).double()
    X, y = split_data()
    splitter = NeuronSplitting(net)
    eig = splitter.score([(X, y)])
    assert eig[0].v_min.shape == (4, 6)
    (_, j, _), *_ = splitter.select(1)
    eps = 1e-3
    grown = splitter.split(1, eps=eps, warn=False)
    actual = (loss_of(grown, X, y) - loss_of(net, X, y)) / (eps**2 / 2)
    assert actual == pytest.approx(float(eig[0].lambda_min[j]), rel=0.02)


def test_budget_split_stays_within_the_flops_and_prefers_cheap_decreases(conv_net, conv_data):
    from solvers.torch.growth.neuron_cost import model_flops

    net = conv_net()
    X, y = conv_data()
    splitter = NeuronSplitting(net, signed=True)
    splitter.score([(X, y)])
    before = model_flops(net, X[:1])
    for budget in (150.0, 1000.0, 5000.0):
        grown = splitter.split(budget=budget, eps=1e-3, warn=False)
        assert 0 < model_flops(grown, X[:1]) - before <= budget
        assert float((grown(X) - net(X)).abs().max()) < 1e-4
    # equal costs: the budget of k neurons picks what a count of k picks
    flat = NeuronSplitting(net, signed=True, cost={0: 1.0, 3: 1.0})
    flat.score([(X, y)])
    assert flat.select(budget=3) == flat.select(3)


def test_layer_cap_limits_each_layer(smooth_net, split_data):
    X, y = split_data()
    capped = NeuronSplitting(smooth_net(), signed=True, layer_cap=1)
    capped.score([(X, y)])
    for picks in (capped.select(10), capped.select(budget=1e6)):
        layers = [p.layer for p in picks]
        assert len(layers) == len(set(layers)) == 2
    only = NeuronSplitting(smooth_net(), signed=True, layer_cap={0: 0})
    only.score([(X, y)])
    assert {p.layer for p in only.select(budget=1e6)} == {2}
    with pytest.raises(ValueError, match=r"layer_cap names layers \[4\]"):
        NeuronSplitting(smooth_net(), layer_cap={4: 1})
    with pytest.raises(ValueError, match="layer_cap"):
        NeuronSplitting(smooth_net(), layer_cap=-1)


@pytest.mark.parametrize("budget", [0, -5.0, float("nan"), float("inf"), True, "10"])
def test_bad_budget_is_refused_and_nothing_changes(budget, smooth_net, split_data):
    net = smooth_net()
    X, y = split_data()
    splitter = NeuronSplitting(net)
    eig = splitter.score([(X, y)])
    state = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match="budget"):
        splitter.split(budget=budget, warn=False)
    assert splitter.eigen_ is eig
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())
    with pytest.raises(TypeError, match="exactly one of n_new"):
        splitter.select(2, budget=10.0)
    with pytest.raises(TypeError, match="exactly one of n_new"):
        splitter.split(warn=False)


def test_costs_that_do_not_match_the_model_are_refused(smooth_net):
    with pytest.raises(ValueError, match="layer 2: \\(4,\\) values for its 5 neurons"):
        NeuronSplitting(smooth_net(), cost={0: 1.0, 2: [1.0] * 4})
    with pytest.raises(ValueError, match="cost"):
        NeuronSplitting(smooth_net(), cost="watts")


@pytest.mark.parametrize("conv", [False, True])
def test_append_neurons_keeps_the_function_and_places_the_new_weights(conv):
    """u = 0: the grown network computes the same outputs; the new units' incoming weights and
    biases are a and b, the next layer's weights from them are u; the given layers are left
    as they were."""
    torch.manual_seed(0)
    if conv:
        model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Tanh(), nn.Conv2d(3, 4, 3))
        x, fan_in, block, k = torch.randn(5, 2, 7, 7), 2 * 9, 9, 2
    else:
        model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
        x, fan_in, block, k = torch.randn(5, 4), 4, 1, 2
    layer, after = model[0], model[2]
    saved = copy.deepcopy(model.state_dict())
    a, b = torch.randn(k, fan_in), torch.randn(k)
    out = after.weight.shape[0]
    grown, wider = append_neurons(layer, after, a, b, torch.zeros(out, k, block))
    bigger = nn.Sequential(grown, nn.Tanh(), wider)
    torch.testing.assert_close(bigger(x), model(x), rtol=1e-6, atol=1e-6)
    assert torch.equal(grown.weight[3:].reshape(k, -1), a) and torch.equal(grown.bias[3:], b)
    assert all(torch.equal(v, saved[k_]) for k_, v in model.state_dict().items())
    u = torch.randn(out, k, block)
    _, wider = append_neurons(layer, after, a, b, u)
    assert torch.equal(wider.weight.reshape(out, 3 + k, block)[:, 3:], u)
    assert torch.equal(wider.weight.reshape(out, 3 + k, block)[:, :3],
                       after.weight.reshape(out, 3, block))  # fmt: skip
    assert grown.weight.is_leaf and wider.weight.is_leaf and grown.weight.requires_grad  # trainable
