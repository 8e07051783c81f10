# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch.sparse.gradual: the cubic schedule of Zhu & Gupta."""

from itertools import pairwise

import pytest
import torch

from solvers.torch import GradualMagnitudePruning


def test_gradual_magnitude_pruning_follows_the_cubic_schedule(mlp, data, train):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    gmp = GradualMagnitudePruning(model, opt, 0.1, start=2, end=20, update_every=4)
    X, y = data()
    seen = []
    for _ in range(24):
        prev = {k: m.clone() for k, m in gmp.masks.items()}
        train(model, opt, X, y, 1)
        for k, m in gmp.masks.items():
            assert not (m & ~prev[k]).any(), "pruned weights never come back"
        seen.append(gmp.density)
    assert [h["step"] for h in gmp.history] == [2, 6, 10, 14, 18, 20]
    dens = [h["density"] for h in gmp.history]
    assert dens[0] == 1.0 and dens[-1] == 0.1
    assert all(b < a for a, b in pairwise(dens[1:]))
    for k, p in gmp.params.items():
        assert int(gmp.masks[k].sum()) == round(0.1 * p.numel())
    assert gmp.density_at(11) == pytest.approx(0.1 + 0.9 * (1 - 9 / 18) ** 3)
