# SPDX-License-Identifier: BSD-3-Clause
"""Models, data and closures for the torch line-search optimizer tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _fresh_caches():
    """Each test builds its optimizers' configs and transforms anew: the caches of validated
    settings would otherwise carry objects from earlier tests (and from the process mutation
    testing forks its runs from, hiding the mutants of the cached functions)."""
    from solvers.torch.optim import _functional, line_search

    _functional._transforms.cache_clear()
    line_search._config.cache_clear()


def build_mlp(dropout=0.0, batchnorm=False):
    layers = [torch.nn.Linear(8, 16)]
    if batchnorm:
        layers.append(torch.nn.BatchNorm1d(16))
    layers += [torch.nn.Tanh(), torch.nn.Dropout(dropout), torch.nn.Linear(16, 3)]
    return torch.nn.Sequential(*layers)


def make_data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 8, generator=g), torch.randint(0, 3, (n,), generator=g)


def training_closure(model, opt, X, y, log=None):
    def closure():
        opt.zero_grad()
        out = model(X)
        if log is not None:
            log.append(out.detach().clone())
        loss = torch.nn.functional.cross_entropy(out, y)
        loss.backward()
        return loss

    return closure


@pytest.fixture
def mlp():
    """``mlp(dropout=0.0, batchnorm=False)``: an 8 -> 16 -> 3 classifier."""
    return build_mlp


@pytest.fixture
def data():
    """``data(n=64, seed=0) -> (X, y)``: 8 features, 3 classes."""
    return make_data


@pytest.fixture
def make_closure():
    """``make_closure(model, opt, X, y)``: zero_grad, cross-entropy, backward, return loss."""
    return training_closure
