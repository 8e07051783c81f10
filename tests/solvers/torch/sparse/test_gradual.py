# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch.sparse.gradual: the cubic schedule of Zhu & Gupta."""

from itertools import pairwise

import pytest
import torch

from solvers.torch import GradualMagnitudePruning
from solvers.torch.sparse.densities import active_count


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


def frozen(mlp):
    """A model under SGD with lr = 0: the weights never move, so every mask is a closed form."""
    model = mlp()
    return model, torch.optim.SGD(model.parameters(), lr=0.0)


def largest(magnitudes, k):
    """Boolean mask of the ``k`` largest entries (distinct values: random weights)."""
    threshold = magnitudes.reshape(-1).sort(descending=True).values[k - 1]
    return magnitudes >= threshold


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_each_update_keeps_the_largest_magnitudes_at_the_scheduled_density(scope, mlp):
    model, opt = frozen(mlp)
    gmp = GradualMagnitudePruning(model, opt, 0.2, start=1, end=7, update_every=2, scope=scope)
    w0 = {k: p.detach().clone() for k, p in gmp.params.items()}
    for step in range(1, 9):
        opt.step()  # no gradients: only the hooks run
        if gmp.history[-1:] and gmp.history[-1]["step"] == step:
            d = gmp.density_at(step)
            if scope == "layer":
                expected = {k: largest(w.abs(), active_count(w.numel(), d)) for k, w in w0.items()}
            else:  # one threshold over all layers
                flat = torch.cat([w.abs().reshape(-1) for w in w0.values()])
                threshold = flat.sort(descending=True).values[active_count(flat.numel(), d) - 1]
                expected = {k: w.abs() >= threshold for k, w in w0.items()}
            for k, m in gmp.masks.items():
                assert torch.equal(m, expected[k]), (step, k)
                assert torch.equal(gmp.params[k].detach(), w0[k] * m)
    assert [h["step"] for h in gmp.history] == [1, 3, 5, 7]
    assert gmp.history[-1]["density"] == 0.2
    counts = [int(m.sum()) for m in gmp.masks.values()]
    sizes = [m.numel() for m in gmp.masks.values()]
    if scope == "global":  # the layers keep different fractions, the total is exact
        assert sum(counts) == active_count(sum(sizes), 0.2)
        assert counts != [active_count(n, 0.2) for n in sizes]
    else:
        assert counts == [active_count(n, 0.2) for n in sizes]


def test_start_equal_to_end_prunes_once_to_the_final_density(mlp):
    # density_at used to return 1 at t_0 before looking at t_1: start == end never pruned
    model, opt = frozen(mlp)
    gmp = GradualMagnitudePruning(model, opt, 0.3, start=3, end=3, update_every=1)
    for _ in range(5):
        opt.step()
    assert gmp.history == [{"step": 3, "density": 0.3}]
    assert gmp.density_at(2) == 1.0 and gmp.density_at(3) == 0.3
    for m in gmp.masks.values():
        assert int(m.sum()) == active_count(m.numel(), 0.3)


@pytest.mark.parametrize(
    ("start", "end", "every", "steps"),
    [(1, 10, 3, [1, 4, 7, 10]), (3, 12, 4, [3, 7, 11, 12]), (1, 250, None, [1, 101, 201, 250])],
)
def test_updates_every_update_every_steps_from_start_and_at_end(start, end, every, steps):
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    kwargs = {} if every is None else {"update_every": every}  # None: the default, 100
    gmp = GradualMagnitudePruning(model, opt, 0.5, start=start, end=end, **kwargs)
    for _ in range(end + 3):
        opt.step()
    assert [h["step"] for h in gmp.history] == steps


def test_density_at_is_the_cubic_between_start_and_end_and_flat_outside(mlp):
    model, opt = frozen(mlp)
    gmp = GradualMagnitudePruning(model, opt, 0.25, start=4, end=12)
    for t in range(20):
        if t <= 4:
            expected = 1.0
        elif t >= 12:
            expected = 0.25
        else:
            expected = 0.25 + 0.75 * (1 - (t - 4) / 8) ** 3
        assert gmp.density_at(t) == pytest.approx(expected, rel=1e-15), t


def test_layer_selection_reaches_the_masks(mlp):
    # mlp(): 0.weight (40 x 20), 2.weight (30 x 40), 4.weight (3 x 30)
    model, opt = frozen(mlp)
    gmp = GradualMagnitudePruning(model, opt, 0.5, start=1, end=1, exclude=r"^0\.", min_numel=91)
    assert list(gmp.masks) == ["2.weight"]
    opt.step()
    assert int(gmp.masks["2.weight"].sum()) == 600
    assert torch.count_nonzero(model[0].weight) == 800  # left dense
    assert torch.count_nonzero(model[4].weight) == 90


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": 0}, "'start' parameter of GradualMagnitudePruning"),
        ({"end": 0}, "'end' parameter of GradualMagnitudePruning"),
        ({"update_every": 0}, "'update_every' parameter of GradualMagnitudePruning"),
        ({"scope": "both"}, "'scope' parameter of GradualMagnitudePruning"),
        ({"start": 5, "end": 4}, r"end \(4\) must not precede start \(5\)"),
        ({"density": 0.0}, "density"),
    ],
)
def test_invalid_arguments_are_named_and_attach_nothing(kwargs, message, mlp):
    model, opt = frozen(mlp)
    args = {"density": 0.5, "start": 1, "end": 4} | kwargs
    with pytest.raises(ValueError, match=message):
        GradualMagnitudePruning(model, opt, **args)
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks


def test_updates_install_the_masks_of_the_groups_first_rank(first_rank_broadcast, mlp):
    # the first rank pruned other weights: every update must go through the broadcast with
    # the controller's process group
    group, calls = first_rank_broadcast()
    model, opt = frozen(mlp)
    gmp = GradualMagnitudePruning(model, opt, 0.5, start=1, end=1, process_group=group)
    w0 = {k: p.detach().abs().clone() for k, p in gmp.params.items()}
    opt.step()
    assert [g for _, g in calls] == [group, group]  # at construction, at the update
    for k, m in gmp.masks.items():
        assert torch.equal(m, largest(w0[k], active_count(m.numel(), 0.5)).roll(1, 0))
