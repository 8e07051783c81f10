# SPDX-License-Identifier: BSD-3-Clause
"""Shared fixtures of the growth tests: smooth networks, their data and loss."""

import pytest
import torch
from torch import nn


@pytest.fixture
def smooth_net():
    """``smooth_net()``: Linear-Tanh-Linear-Softplus-Linear in float64, seeded."""

    def make():
        torch.manual_seed(3)
        return nn.Sequential(
            nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 5), nn.Softplus(), nn.Linear(5, 3)
        ).double()

    return make


@pytest.fixture
def split_data():
    """``split_data()``: 200 float64 inputs of size 6 and 3-class labels."""

    def make():
        g = torch.Generator().manual_seed(4)
        X = torch.randn(200, 6, generator=g, dtype=torch.float64)
        return X, torch.randint(0, 3, (200,), generator=g)

    return make


@pytest.fixture
def loss_of():
    """``loss_of(model, X, y)``: the cross-entropy as a float, without gradients."""

    def loss(model, X, y):
        with torch.no_grad():
            return float(nn.functional.cross_entropy(model(X), y))

    return loss


@pytest.fixture
def conv_net():
    """``conv_net(padding=1, stride=1, head="conv", pool=True, bias=True, padding_mode=...)``."""

    def make(padding=1, stride=1, head="conv", pool=True, bias=True, padding_mode="zeros"):
        torch.manual_seed(6)
        layers = [
            nn.Conv2d(
                2, 3, 3, padding=padding, stride=stride, bias=bias, padding_mode=padding_mode
            ),
            nn.Tanh(),
        ]
        if pool:
            layers.append(nn.AvgPool2d(2))
        if head == "conv":
            layers += [nn.Conv2d(3, 4, 3), nn.Softplus(), nn.Flatten(), nn.LazyLinear(3)]
        else:
            layers += [nn.Flatten(), nn.LazyLinear(3)]
        net = nn.Sequential(*layers).double()
        net(torch.zeros(1, 2, 8, 8, dtype=torch.float64))  # materialise the lazy layer
        return net

    return make


@pytest.fixture
def conv_data():
    """``conv_data(n=60)``: float64 2 x 8 x 8 images and 3-class labels."""

    def make(n=60):
        g = torch.Generator().manual_seed(7)
        X = torch.randn(n, 2, 8, 8, generator=g, dtype=torch.float64)
        return X, torch.randint(0, 3, (n,), generator=g)

    return make
