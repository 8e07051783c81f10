# SPDX-License-Identifier: BSD-3-Clause
"""Property-based tests (Hypothesis) of pruning, the sparse controllers and export.

Random layer widths, densities (valid and not), data and weights holding NaN,
inf, 1e300, 1e-300 or constant columns, and random masks. Every call either
returns masks of the parameters' shapes with the exact counts, or raises
``ValueError``/``TypeError`` naming the argument; a failed call leaves the
model, the optimizer and the controller as they were, bit for bit.
"""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from solvers.torch import (
    DynamicSparsity,
    GradualMagnitudePruning,
    LotteryTicket,
    StaticSparsity,
    export_dense,
    export_sparse,
    magnitude_masks,
    masks_from_scores,
    prune_at_init,
    to_torch_prune,
)
from solvers.torch.sparse.densities import active_count

#: a density: valid ones and every kind of invalid one
densities = st.one_of(
    st.floats(min_value=1e-3, max_value=1.0),
    st.sampled_from([0.0, -0.5, 1.5, math.nan, math.inf, True, "0.5", None]),
)
#: a value planted in the data or the weights
special = st.sampled_from([math.nan, math.inf, -math.inf, 1e300, 1e-300, 0.0])


def mlp(widths, seed=0):
    torch.manual_seed(seed)
    layers, prev = [], widths[0]
    for w in widths[1:-1]:
        layers += [nn.Linear(prev, w), nn.Tanh()]
        prev = w
    return nn.Sequential(*layers, nn.Linear(prev, widths[-1]))


mlps = st.lists(st.integers(1, 6), min_size=2, max_size=4).map(mlp)


def snapshot(*objs):
    """Bytes of every tensor of the state_dicts (NaN-safe, bit for bit)."""
    out = []
    for obj in objs:
        flat = obj.state_dict()
        stack = [flat]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                stack.extend(item[k] for k in sorted(item, key=str))
            elif isinstance(item, (list, tuple)):
                stack.extend(item)
            elif torch.is_tensor(item):
                out.append((item.dtype, tuple(item.shape), item.numpy().tobytes()))
            else:
                out.append(repr(item))
    return out


def names_argument(err, *names):
    message = str(err.value)
    assert any(n in message for n in names), message


def check_masks(masks, model, density):
    params = dict(model.named_parameters())
    weights = {k for k in params if k.endswith("weight")}
    assert set(masks) == weights
    for k, m in masks.items():
        assert m.dtype == torch.bool and m.shape == params[k].shape
    total = sum(m.numel() for m in masks.values())
    assert sum(int(m.sum()) for m in masks.values()) == active_count(total, density)


@given(model=mlps, density=densities, scope=st.sampled_from(["global", "layer", "both"]))
def test_magnitude_masks_keep_exact_counts_or_name_the_argument(model, density, scope):
    before = snapshot(model)
    try:
        masks = magnitude_masks(model, density, scope=scope)
    except (ValueError, TypeError) as e:
        assert "density" in str(e) or "scope" in str(e), str(e)
    else:
        if scope == "global":
            check_masks(masks, model, density)
        params = dict(model.named_parameters())
        for k, m in masks.items():
            kept, dropped = params[k].detach().abs()[m], params[k].detach().abs()[~m]
            if scope == "global" and dropped.numel() and kept.numel():
                assert kept.min() >= dropped.max()
    assert snapshot(model) == before


@given(
    model=mlps,
    value=special,
    where=st.sampled_from(["data", "weight"]),
    criterion=st.sampled_from(["snip", "grasp", "magnitude", "synflow"]),
    density=st.floats(0.05, 1.0),
)
def test_pruning_refuses_non_finite_data_and_weights(model, value, where, criterion, density):
    """Masks from NaN/inf scores used to be returned silently (issue 17)."""
    model = model.double()  # 1e300 is a float64
    d_in = model[0].in_features
    x = torch.randn(5, d_in, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    if where == "data":
        x[0, 0] = value
    else:
        with torch.no_grad():
            model[0].weight[0, 0] = value
    data = [(x, torch.zeros(5, dtype=torch.long))]
    before = snapshot(model)
    kwargs = {"data": data, "input_shape": (d_in,), "iterations": 2}
    used = where == "weight" or criterion in ("snip", "grasp")
    try:
        masks = prune_at_init(model, density, criterion, **kwargs)
    except ValueError as e:
        assert "data" in str(e) or "scores" in str(e), str(e)
        # 1e300 may overflow the loss or SynFlow's product of weights; 0 and 1e-300 never
        assert used and not abs(value) <= 1, (value, where, str(e))
    else:
        assert math.isfinite(value) or not used
        check_masks(masks, model, density)
    assert snapshot(model) == before


@given(
    shapes=st.lists(st.tuples(st.integers(1, 4), st.integers(1, 4)), min_size=1, max_size=3),
    value=special,
    density=densities,
    scope=st.sampled_from(["global", "layer"]),
)
def test_masks_from_scores(shapes, value, density, scope):
    g = torch.Generator().manual_seed(0)
    scores = {
        f"{i}.weight": torch.rand(s, generator=g, dtype=torch.float64) for i, s in enumerate(shapes)
    }
    scores["0.weight"][0, 0] = value
    try:
        masks = masks_from_scores(scores, density, scope)
    except (ValueError, TypeError) as e:
        message = str(e)
        assert "density" in message or ("scores" in message and "'0.weight'" in message)
        assert not math.isfinite(value) or "density" in message
    else:
        assert math.isfinite(value)
        assert {k: m.shape for k, m in masks.items()} == {k: s.shape for k, s in scores.items()}
        if scope == "global":
            total = sum(s.numel() for s in scores.values())
            assert sum(int(m.sum()) for m in masks.values()) == active_count(total, density)


def _loss(model, x, y):
    return nn.functional.cross_entropy(model(x), y)


CONTROLLERS = {
    "static": lambda m, o, d, s: StaticSparsity(m, o, density=d, distribution="uniform", seed=s),
    "rigl": lambda m, o, d, s: DynamicSparsity(
        m, o, density=d, distribution="uniform", update_every=2, total_steps=6, seed=s
    ),
    "set": lambda m, o, d, s: DynamicSparsity(
        m, o, density=d, grow="set", update_every=1, total_steps=6, seed=s
    ),
    "gradual": lambda m, o, d, s: GradualMagnitudePruning(
        m, o, density=d, start=1, end=4, update_every=1
    ),
}


@given(
    widths=st.lists(st.integers(2, 6), min_size=2, max_size=3),
    kind=st.sampled_from(sorted(CONTROLLERS)),
    density=densities,
    seed=st.integers(0, 3),
    steps=st.integers(1, 6),
)
def test_controllers_keep_masked_weights_at_zero(widths, kind, density, seed, steps):
    model = mlp([*widths, 3], seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    before = snapshot(model, opt)
    hooks = len(opt._optimizer_step_pre_hooks)
    try:
        ctrl = CONTROLLERS[kind](model, opt, density, seed)
    except (ValueError, TypeError) as e:
        assert "density" in str(e), str(e)
        assert snapshot(model, opt) == before and len(opt._optimizer_step_pre_hooks) == hooks
        return
    x = torch.randn(8, widths[0], generator=torch.Generator().manual_seed(seed))
    y = torch.arange(8) % 3
    for _ in range(steps):
        opt.zero_grad()
        _loss(model, x, y).backward()
        opt.step()
    params = dict(model.named_parameters())
    for k, m in ctrl.masks.items():
        assert m.shape == params[k].shape and m.dtype == torch.bool
        assert torch.all(params[k].detach()[~m] == 0)
        assert torch.isfinite(params[k]).all()
    if kind in ("static", "rigl"):  # uniform densities: a fixed count per layer
        for m in ctrl.masks.values():
            assert int(m.sum()) == active_count(m.numel(), density)


@given(
    kind=st.sampled_from(sorted(CONTROLLERS)),
    corrupt=st.sampled_from(["shape", "name", "count", "type", "missing"]),
    which=st.integers(0, 2),
)
def test_failed_controller_load_leaves_everything_bit_identical(kind, corrupt, which):
    model = mlp([4, 5, 3, 3])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ctrl = CONTROLLERS[kind](model, opt, 0.5, 0)
    x, y = torch.randn(8, 4, generator=torch.Generator().manual_seed(1)), torch.arange(8) % 3
    for _ in range(3):
        opt.zero_grad()
        _loss(model, x, y).backward()
        opt.step()
    state = ctrl.state_dict()
    # another valid state (flipped masks, a later step) with one corruption: nothing may load
    state["masks"] = {k: ~m for k, m in state["masks"].items()}
    state["step_count"] += 5
    names = sorted(state["masks"])
    name = names[which % len(names)]
    if corrupt == "shape":
        state["masks"][name] = state["masks"][name][:, :-1]
    elif corrupt == "name":
        state["masks"]["9.weight"] = state["masks"].pop(name)
    elif corrupt == "count":
        state["step_count"] = -1
    elif corrupt == "type":
        state["masks"][name] = state["masks"][name].tolist()
    else:
        del state["history"]
    before = snapshot(model, opt, ctrl)
    with pytest.raises(ValueError) as err:
        ctrl.load_state_dict(state)
    names_argument(err, "state_dict")
    assert snapshot(model, opt, ctrl) == before


@given(
    widths=st.lists(st.integers(1, 5), min_size=2, max_size=3),
    density=st.floats(0.05, 1.0),
    corrupt=st.sampled_from(["none", "shape", "unknown", "not a tensor"]),
    export=st.sampled_from(["dense", "sparse", "torch_prune"]),
)
def test_exports_compute_the_masked_function_or_refuse_the_mask(widths, density, corrupt, export):
    model = mlp(widths)
    masks = magnitude_masks(model, density)
    name = sorted(masks)[0]
    if corrupt == "shape":
        masks[name] = masks[name].reshape(-1)
    elif corrupt == "unknown":
        masks["7.weight"] = masks.pop(name)
    elif corrupt == "not a tensor":
        masks[name] = masks[name].tolist()
    before = snapshot(model)
    x = torch.randn(3, widths[0], generator=torch.Generator().manual_seed(2))
    try:
        if export == "torch_prune":
            target = mlp(widths)
            target.load_state_dict(model.state_dict())
            to_torch_prune(target, masks)
            out = target(x)
        else:
            out = (export_dense if export == "dense" else export_sparse)(model, masks)(x)
    except ValueError as e:
        assert corrupt != "none"
        assert repr(name) in str(e) or "'7.weight'" in str(e), str(e)
    else:
        assert corrupt == "none"
        with torch.no_grad():
            ref = mlp(widths)
            ref.load_state_dict(model.state_dict())
            for k, m in masks.items():
                dict(ref.named_parameters())[k].mul_(m)
            torch.testing.assert_close(out, ref(x))
    assert snapshot(model) == before


@given(value=special, rate=st.floats(0.0, 0.9), scope=st.sampled_from(["global", "layer"]))
def test_lottery_refuses_non_finite_weights_and_keeps_its_masks(value, rate, scope):
    model = mlp([3, 4, 2]).double()
    ticket = LotteryTicket(model, scope=scope)
    ticket.next_masks(0.5)
    with torch.no_grad():
        model[0].weight[0, 1] = value
    before = {k: m.clone() for k, m in ticket.masks.items()}
    try:
        masks = ticket.next_masks(rate)
    except ValueError as e:
        assert not math.isfinite(value) and "'0.weight'" in str(e), str(e)
        assert all(torch.equal(before[k], m) for k, m in ticket.masks.items())
    else:
        assert math.isfinite(value) or not before["0.weight"][0, 1]
        assert all(not (m & ~before[k]).any() for k, m in masks.items())  # never regrown
