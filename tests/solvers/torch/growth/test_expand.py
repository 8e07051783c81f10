# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch.growth.expand: ExpandNets contract exactly."""

import copy

import torch
from torch import nn

from solvers.torch import contract, expand


def test_expandnet_contracts_exactly():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 5, padding=2),
        nn.Flatten(), nn.Linear(5 * 4 * 4, 7), nn.Tanh(), nn.Linear(7, 2),
    ).double()  # fmt: skip
    expanded = expand(copy.deepcopy(model), ratio=3)
    assert type(expanded[0]).__name__ == "ExpandedConv2d"
    assert type(expanded[4]).__name__ == "ExpandedLinear"
    n_exp = sum(p.numel() for p in expanded.parameters())
    assert n_exp > sum(p.numel() for p in model.parameters())
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    for p in expanded.parameters():  # train-like perturbation: biases matter too
        p.data.add_(0.1 * torch.randn_like(p))
    y = expanded(x)
    small = contract(copy.deepcopy(expanded))
    assert [type(m) for m in small] == [type(m) for m in model]
    torch.testing.assert_close(small(x), y, rtol=1e-10, atol=1e-12)
    single = expand(nn.Linear(3, 2).double(), ratio=2)
    torch.testing.assert_close(
        contract(single)(torch.ones(1, 3, dtype=torch.float64)),
        single(torch.ones(1, 3, dtype=torch.float64)),
    )
