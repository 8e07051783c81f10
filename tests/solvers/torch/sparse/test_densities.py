# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch.sparse.densities: uniform, ERK/ER and per-pattern densities."""

import pytest
import torch

from solvers.torch import DynamicSparsity, erk_densities, layer_densities
from solvers.torch.sparse.densities import check_density


def test_erk_matches_the_reference_and_keeps_the_budget():
    shapes = {"fc1": (300, 784), "fc2": (100, 300), "fc3": (10, 100)}
    total = sum(a * b for a, b in shapes.values())
    d = erk_densities(shapes, 0.02)
    # eps = 0.02 * 266200 / (1084 + 400 + 110); p_l = eps (n_in + n_out) / (n_in n_out)
    assert [round(d[k], 4) for k in shapes] == [0.0154, 0.0445, 0.3674]
    d = erk_densities(shapes, 0.1)
    assert d["fc3"] == 1.0 and round(d["fc1"], 3) == 0.080 and round(d["fc2"], 2) == 0.23
    for density in (0.02, 0.1, 0.5):
        d = erk_densities(shapes, density)
        kept = sum(d[k] * a * b for k, (a, b) in shapes.items())
        assert kept == pytest.approx(density * total)
        assert max(d.values()) <= 1.0
    assert erk_densities(shapes, 0.1, power=0.0) == pytest.approx(dict.fromkeys(shapes, 0.1))
    assert layer_densities(shapes, {"fc[12]": 0.1, ".": 1.0}) == {
        "fc1": 0.1,
        "fc2": 0.1,
        "fc3": 1.0,
    }


def test_er_uses_fan_in_and_fan_out_only():
    shapes = {"conv": (16, 8, 3, 3), "fc": (10, 64)}
    assert layer_densities(shapes, 0.3, "er") == erk_densities(shapes, 0.3, include_kernel=False)
    assert layer_densities(shapes, 0.3, "uniform") == {"conv": 0.3, "fc": 0.3}
    halves = layer_densities(shapes, 0.3, lambda s, d: dict.fromkeys(s, d / 2))
    assert halves == pytest.approx({"conv": 0.15, "fc": 0.15})
    with pytest.raises(ValueError, match=r"no density given for layer 'fc'"):
        layer_densities(shapes, {"conv": 0.5})
    with pytest.raises(ValueError, match=r"'distribution' parameter of layer_densities"):
        layer_densities(shapes, 0.3, "zipf")


@pytest.mark.parametrize("bad", [0, 0.0, 1.5, -0.1, float("nan"), True, "0.5"])
def test_density_outside_range_is_rejected(bad, mlp):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(
        ValueError, match=r"'density' parameter must be a float in the range \(0\.0, 1\.0\]"
    ):
        DynamicSparsity(model, opt, density=bad, total_steps=10)
    with pytest.raises(TypeError, match=r"'density' parameter of layer fc1 must be"):
        check_density(bad, owner="layer fc1")
    assert check_density(1) == 1.0 and isinstance(check_density(1), float)
