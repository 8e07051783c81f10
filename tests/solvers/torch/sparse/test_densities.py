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


# -- issue 21: the rules the mutation run found unchecked ---------------------------------------


def test_active_count_rounds_and_keeps_at_least_one_and_at_most_all():
    from solvers.torch.sparse.densities import active_count

    assert [active_count(10, d) for d in (0.01, 0.25, 0.26, 0.5, 1.0)] == [1, 2, 3, 5, 10]
    assert active_count(3, 0.5) == 2 and active_count(1, 0.01) == 1
    assert active_count(1000, 0.0005) == 1  # round(0.5) = 0, raised to one


def test_erk_counts_the_kernel_by_default_and_er_uses_the_first_two_dimensions():
    shapes = {"conv": (16, 8, 3, 3), "fc": (10, 64)}
    erk = erk_densities(shapes, 0.3)
    assert erk == erk_densities(shapes, 0.3, include_kernel=True)
    assert erk == layer_densities(shapes, 0.3, "erk")
    er = layer_densities(shapes, 0.3, "er")
    # ER: p_l proportional to (n_out + n_in) / (n_out n_in), the kernel ignored
    ratio = (er["conv"] / er["fc"]) / ((24 / 128) / (74 / 640))
    assert ratio == pytest.approx(1.0) and er != erk
    assert layer_densities(shapes, 0.3) == {"conv": 0.3, "fc": 0.3}  # uniform by default


def test_erk_makes_the_layer_of_largest_ratio_dense_first():
    # the small layer (largest (n_in + n_out) / (n_in n_out)) sorts first by name
    shapes = {"a_small": (4, 4), "b_big": (100, 100)}
    d = erk_densities(shapes, 0.05)
    assert d["a_small"] == 1.0 and d["b_big"] < 1.0
    kept = 16 * d["a_small"] + 10000 * d["b_big"]
    assert kept == pytest.approx(0.05 * 10016)


def test_erk_refuses_impossible_budgets_and_unknown_dense_layers():
    shapes = {"a": (10, 10), "b": (10, 10)}
    with pytest.raises(ValueError, match=r"^dense layers \['x'\] are not among the sparse layers$"):
        erk_densities(shapes, 0.5, dense=["x"])
    # the dense layer takes the whole budget (0.5 * 200 = 100): nothing left for "b"
    with pytest.raises(
        ValueError, match=r"^density 0\.5 is too low for the layers kept dense \(\['a'\]\)$"
    ):
        erk_densities(shapes, 0.5, dense=["a"])
    d = erk_densities(shapes, 0.505, dense=["a"])  # a budget of one weight
    assert d["a"] == 1.0 and d["b"] == pytest.approx(0.01)
    with pytest.raises(ValueError, match=r"'power' parameter of erk_densities"):
        erk_densities(shapes, 0.5, power=-1.0)
    with pytest.raises(ValueError, match=r"'include_kernel' parameter of erk_densities"):
        erk_densities(shapes, 0.5, include_kernel="yes")


def test_per_layer_densities_name_the_layer_they_refuse():
    shapes = {"conv": (16, 8, 3, 3), "fc1": (10, 64)}
    with pytest.raises(ValueError, match=r"'density' parameter of layer fc1 must be"):
        layer_densities(shapes, {"conv": 0.5, "fc": 1.5})
    with pytest.raises(ValueError, match=r"'density' parameter of layer conv must be"):
        layer_densities(shapes, 0.3, lambda s, d: {"conv": 2.0, "fc1": d})
