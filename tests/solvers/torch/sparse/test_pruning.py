# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch.sparse.pruning: SNIP, GraSP, SynFlow, magnitude and random masks."""

import copy

import pytest
import torch
from torch import nn

from solvers.torch import prune_at_init, select_layers
from solvers.torch.sparse.pruning import grasp_scores, snip_scores, synflow_scores


@pytest.mark.parametrize("criterion", ["snip", "grasp", "synflow", "magnitude", "random"])
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_prune_at_init_counts(criterion, scope, mlp, data):
    model = mlp()
    before = copy.deepcopy(model.state_dict())
    X, y = data()
    masks = prune_at_init(
        model, 0.1, criterion, data=[(X[:32], y[:32]), (X[32:], y[32:])], input_shape=(20,),
        scope=scope, iterations=5,
    )  # fmt: skip
    params = select_layers(model)
    total = sum(p.numel() for p in params.values())
    if scope == "global":
        assert sum(int(m.sum()) for m in masks.values()) == round(0.1 * total)
    else:
        for k, p in params.items():
            assert int(masks[k].sum()) == round(0.1 * p.numel())
    for k, v in model.state_dict().items():  # scored on a copy
        assert torch.equal(v, before[k])


def test_snip_and_synflow_scores_match_their_definitions(mlp, data):
    model = mlp()
    params = select_layers(model)
    X, y = data()
    scores = snip_scores(model, params, [(X, y)], nn.functional.cross_entropy)
    nn.functional.cross_entropy(model(X), y).backward()
    for k, p in params.items():
        torch.testing.assert_close(scores[k], (p * p.grad).abs())
    # SynFlow on a linear chain: R = 1^T |W3| |W2| |W1| 1
    chain = nn.Sequential(nn.Linear(4, 3, bias=False), nn.Linear(3, 2, bias=False))
    sf = synflow_scores(chain, select_layers(chain), (4,))
    w1 = chain[0].weight.detach().abs().double()
    w2 = chain[1].weight.detach().abs().double()
    expected_1 = w1 * (w2.sum(0)[:, None] * torch.ones(1, 4, dtype=torch.float64))
    torch.testing.assert_close(sf["0.weight"], expected_1)


def test_grasp_scores_match_their_definition(mlp, data):
    model = mlp(widths=(8,))
    params = select_layers(model)
    X, y = data()
    scores = grasp_scores(model, params, [(X, y)], nn.functional.cross_entropy, temperature=5.0)
    w = list(params.values())
    g = torch.autograd.grad(nn.functional.cross_entropy(model(X) / 5.0, y), w, create_graph=True)
    gd = [t.detach() for t in g]
    hg = torch.autograd.grad(sum((a * b).sum() for a, b in zip(g, gd, strict=True)), w)
    for (k, p), h in zip(params.items(), hg, strict=True):
        torch.testing.assert_close(scores[k], p.detach() * h)
