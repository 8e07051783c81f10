# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch.sparse.dynamic: SET, RigL and momentum growth, ITOP rate, schedule."""

import copy
import math
from itertools import pairwise

import pytest
import torch
from torch import nn

from solvers.torch import AdaSLS, DropSchedule, DynamicSparsity, StaticSparsity
from solvers.torch.sparse.dynamic import ITOP_UPDATES, default_update_every


def test_drop_schedule_is_cosine_until_the_horizon():
    s = DropSchedule(0.4, every=10, end=50, horizon=100)
    assert [s.due(t) for t in (10, 15, 50, 60)] == [True, False, True, False]
    assert s.fraction_at(0) == pytest.approx(0.4)
    assert s.fraction_at(50) == pytest.approx(0.2)
    assert s.fraction_at(150) == pytest.approx(0.0)
    assert DropSchedule(0.4, every=10, decay="constant").fraction_at(70) == 0.4
    with pytest.raises(ValueError, match=r"'decay' parameter of DropSchedule"):
        DropSchedule(0.4, decay="linear", end=10)


def test_default_update_interval_is_the_itop_one():
    # the sparse benchmark's schedule: 1/24 of training for RigL (500 of 12,000 steps),
    # 1/65 for SET (184); RigL's 100 steps without total_steps; never below 1
    assert default_update_every("rigl", 12_000) == 500
    assert default_update_every("momentum", 12_000) == 500
    assert default_update_every("set", 12_000) == 184
    assert default_update_every("rigl", None) == 100
    assert default_update_every("set", 10) == 1
    assert set(ITOP_UPDATES) == {"rigl", "set", "momentum"}


@pytest.mark.parametrize("grow", ["rigl", "set", "momentum"])
def test_defaults_follow_total_steps_and_explore_to_the_end(grow, mlp, data, train):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    total = 130
    sparse = DynamicSparsity(model, opt, 0.3, grow=grow, total_steps=total)
    every = total // ITOP_UPDATES[grow]
    s = sparse.schedule
    assert (s.every, s.fraction, s.end, s.horizon, s.decay) == (every, 0.5, None, total, "cosine")
    assert s.fraction_at(total // 2) == pytest.approx(0.25 * (1 + math.cos(math.pi * 65 / 130)))
    X, y = data()
    train(model, opt, X, y, total)
    steps = [h["step"] for h in sparse.history]
    assert steps == list(range(every, total + 1, every))  # past 75 %, up to the last step
    fractions = [h["drop_fraction"] for h in sparse.history]
    assert all(a > b for a, b in pairwise(fractions)) and fractions[-1] < 1e-3
    assert sparse.history[0]["moved"] > 0


def test_explicit_schedule_arguments_override_the_defaults(mlp):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    rigl = DynamicSparsity(
        model, opt, 0.3, drop_fraction=0.3, update_every=7, end=0.75, total_steps=200
    )
    s = rigl.schedule
    assert (s.every, s.fraction, s.end, s.horizon) == (7, 0.3, 150, 150)
    assert not s.due(154) and s.due(147)
    rigl.remove()
    constant = DynamicSparsity(model, opt, 0.3, update_every=5, decay="constant")
    assert (constant.schedule.every, constant.schedule.end) == (5, None)


def test_bad_controller_input(mlp):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"'grow' parameter of DynamicSparsity must be a str"):
        DynamicSparsity(model, opt, grow="magic", total_steps=10)
    with pytest.raises(ValueError, match=r"cosine drop schedule needs total_steps"):
        DynamicSparsity(model, opt, end=None)
    with pytest.raises(ValueError, match=r"'distribution' parameter of layer_densities"):
        DynamicSparsity(model, opt, distribution="zipf", total_steps=10)
    other = torch.optim.SGD(model[0].parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"'2\.weight' is not optimised by the optimizer"):
        DynamicSparsity(model, other, total_steps=10)
    with pytest.raises(ValueError, match=r"'drop_fraction' parameter of DynamicSparsity"):
        DynamicSparsity(model, opt, drop_fraction=1.0, total_steps=10)
    with pytest.raises(ValueError, match=r"'update_every' parameter of DynamicSparsity"):
        DynamicSparsity(model, opt, update_every=0, total_steps=10)
    with pytest.raises(ValueError, match=r"total_steps is required: end=0\.5"):
        DynamicSparsity(model, opt, end=0.5)
    with pytest.raises(ValueError, match=r"'end' parameter of DynamicSparsity"):
        DynamicSparsity(model, opt, end=1.5, total_steps=10)
    with pytest.raises(ValueError, match=r"'momentum' parameter of DynamicSparsity"):
        DynamicSparsity(model, opt, grow="momentum", momentum=1.0, total_steps=10)


@pytest.mark.parametrize("grow", ["rigl", "set", "momentum"])
@pytest.mark.parametrize("opt_name", ["sgd", "adam", "adamw"])
def test_dst_exact_counts_and_zeroed_state_after_every_update(
    grow, opt_name, mlp, data, train, optimizers
):
    model = mlp()
    opt = optimizers[opt_name](model.parameters())
    X, y = data()
    sparse = DynamicSparsity(
        model, opt, density=0.3, grow=grow, distribution="uniform", update_every=3,
        drop_fraction=0.5, total_steps=60, end=None,
    )  # fmt: skip
    counts = {k: int(m.sum()) for k, m in sparse.masks.items()}
    assert counts == {k: round(0.3 * p.numel()) for k, p in sparse.params.items()}
    rates = [sparse.itop_rate]
    for step in range(1, 31):
        before = {k: m.clone() for k, m in sparse.masks.items()}
        train(model, opt, X, y, 1)
        changed = False
        for k, m in sparse.masks.items():
            assert int(m.sum()) == counts[k], f"count of {k} drifted at step {step}"
            p = sparse.params[k]
            assert torch.all(p[~m] == 0)
            grown = m & ~before[k]
            changed |= bool(grown.any())
            for v in opt.state[p].values():
                if torch.is_tensor(v) and v.shape == p.shape:
                    assert torch.all(v[~m] == 0), "optimizer state outside the mask"
                    if step % 3 == 0:
                        assert torch.all(v[grown] == 0), "state of grown weights not reset"
            if step % 3 == 0:
                assert torch.all(p[grown] == 0), "grown weights must start at 0"
        if step % 3 == 0:
            assert changed, "an update must move weights"
        rates.append(sparse.itop_rate)
    assert all(b >= a for a, b in pairwise(rates))
    assert rates[-1] > 0.3
    assert len(sparse.history) == 10
    assert all(r["moved"] > 0 for r in sparse.history)
    frac = [r["drop_fraction"] for r in sparse.history]
    assert all(b < a for a, b in pairwise(frac))  # cosine decay


def _dropped(mask, weight, k):
    """The ``k`` active positions of smallest ``|w|`` (ties to the lower flat index)."""
    scores = torch.where(mask, weight.abs(), torch.full_like(weight, math.inf)).reshape(-1)
    order = torch.sort(scores, stable=True).indices[:k]
    out = torch.zeros(scores.numel(), dtype=torch.bool)
    out[order] = True
    return out.reshape(mask.shape)


@pytest.mark.parametrize("grow", ["rigl", "set", "momentum"])
@pytest.mark.parametrize("opt_name", ["sgd", "adam", "adamw"])
def test_a_weight_dropped_and_regrown_in_one_update_restarts_at_zero(
    grow, opt_name, mlp, data, train, optimizers
):
    # A position dropped (smallest |w|) and grown again in the same update is active
    # before and after it, so "grown = active now and not before" misses it; it must
    # restart like any grown weight: value 0, every optimizer state entry 0. Positions
    # kept through the update keep their value and state.
    model = mlp()
    opt = optimizers[opt_name](model.parameters())
    X, y = data()
    after_step = {}

    def snapshot(optimizer, args, kwargs):  # runs before the controller's post-hook
        for name, p in model.named_parameters():
            state = {k: v.clone() for k, v in optimizer.state[p].items() if torch.is_tensor(v)}
            after_step[name] = (p.detach().clone(), state)

    opt.register_step_post_hook(snapshot)
    sparse = DynamicSparsity(
        model, opt, density=0.5, grow=grow, distribution="uniform", update_every=2,
        drop_fraction=0.5, decay="constant", end=None,
    )  # fmt: skip
    regrown_total = 0
    for step in range(1, 13):
        before = {k: m.clone() for k, m in sparse.masks.items()}
        train(model, opt, X, y, 1)
        if step % 2:
            continue
        alpha = sparse.history[-1]["drop_fraction"]
        for name, m in sparse.masks.items():
            p = sparse.params[name]
            w, state = after_step[name]
            dropped = _dropped(before[name], w, math.floor(alpha * int(before[name].sum())))
            regrown = dropped & m
            kept = before[name] & ~dropped
            regrown_total += int(regrown.sum())
            assert torch.all(p[regrown] == 0), f"{name}: a regrown weight kept its value"
            assert torch.equal(p[kept], w[kept])
            for key, v in opt.state[p].items():
                if torch.is_tensor(v) and v.shape == p.shape:
                    assert torch.all(v[regrown] == 0), f"{name}: {key} of a regrown weight"
                    assert torch.equal(v[kept], state[key][kept])
    assert regrown_total > 0, "no position was dropped and regrown: the test checks nothing"


def test_momentum_growth_explores_beyond_the_static_mask(mlp, data, train):
    """The ITOP-code defect: reading zeroed optimizer momenta regrows what was dropped."""
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    X, y = data()
    sparse = DynamicSparsity(
        model, opt, density=0.2, grow="momentum", update_every=5, total_steps=50
    )
    train(model, opt, X, y, 50)
    assert sparse.itop_rate > 0.21


def test_rigl_grows_the_largest_dense_gradients(mlp, data):
    model = mlp(widths=(30,))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # weights fixed: only the masks move
    X, y = data()
    sparse = DynamicSparsity(
        model, opt, 0.2, distribution="uniform", update_every=1, drop_fraction=0.25,
        decay="constant", end=None,
    )  # fmt: skip
    before = {k: m.clone() for k, m in sparse.masks.items()}
    opt.zero_grad()
    nn.functional.cross_entropy(model(X), y).backward()
    dense = {k: p.grad.abs().clone() for k, p in sparse.params.items()}
    opt.step()
    for k, m in sparse.masks.items():
        grown = m & ~before[k]
        inactive = ~before[k]
        # every grown weight has a dense gradient at least as large as any inactive one left out
        assert dense[k][grown].min() >= dense[k][inactive & ~m].max()


def test_density_one_is_a_no_op(mlp, data, train):
    model = mlp()
    ref = copy.deepcopy(model)
    opt, opt_ref = (torch.optim.SGD(m.parameters(), lr=0.1) for m in (model, ref))
    DynamicSparsity(model, opt, density=1.0, update_every=2, total_steps=10)
    X, y = data()
    train(model, opt, X, y, 6)
    train(ref, opt_ref, X, y, 6)
    for a, b in zip(model.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("fused", [False, True])  # fused: the step runs and skips itself
def test_skipped_amp_steps_are_not_counted(fused, mlp, data):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, fused=fused)
    sparse = DynamicSparsity(model, opt, 0.3, update_every=2, total_steps=10)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    X, y = data()
    for poison in (False, True, False):
        opt.zero_grad()
        scaler.scale(nn.functional.cross_entropy(model(X), y)).backward()
        if poison:
            model[0].weight.grad[0, 0] = float("inf")
        scaler.step(opt)
        scaler.update()
    assert sparse.step_count == 2
    assert len(sparse.history) == 1


def test_torch_compile_and_line_search_optimizers(mlp, data):
    model = mlp()
    opt = AdaSLS(model.parameters(), n_batches_per_epoch=4)
    sparse = DynamicSparsity(model, opt, 0.3, update_every=2, total_steps=8, end=0.75)
    compiled = torch.compile(model, backend="eager")
    X, y = data()
    for _ in range(8):

        def closure():
            opt.zero_grad()
            loss = nn.functional.cross_entropy(compiled(X), y)
            loss.backward()
            return loss

        opt.step(closure)
    for k, m in sparse.masks.items():
        p = sparse.params[k]
        assert torch.all(p[~m] == 0)
        for v in opt.state[p].values():  # the closure's own gradients were masked
            if torch.is_tensor(v) and v.shape == p.shape:
                assert torch.all(v[~m] == 0)
    assert sparse.step_count == 8
    assert [h["step"] for h in sparse.history] == [2, 4, 6]  # end = 0.75 * total_steps


def test_momentum_growth_under_grad_scaler_with_a_fused_optimizer(mlp, data, steps_with_scaler):
    # the controller's EMA sees unscaled gradients and skips the step GradScaler skips
    X, y = data()
    runs = []
    for fused, scaler in ((False, None), (True, torch.amp.GradScaler("cpu", init_scale=2.0**10))):
        model = mlp()
        opt = torch.optim.SGD(model.parameters(), lr=0.05, fused=fused)
        sparse = DynamicSparsity(
            model, opt, 0.3, grow="momentum", update_every=3, end=None, decay="constant"
        )
        steps_with_scaler(model, opt, X, y, 7 if fused else 6, scaler, (2,) if fused else ())
        assert sparse.step_count == 6 and len(sparse.history) == 2
        runs.append(sparse)
    ema = [run.state_dict()["ema"] for run in runs]
    for k in runs[0].masks:
        assert torch.isfinite(ema[1][k]).all()
        torch.testing.assert_close(ema[1][k], ema[0][k])
        assert torch.equal(runs[1].masks[k], runs[0].masks[k])


# -- issue 21: what the mutation review of dynamic.py found untested ---------------------------


def test_momentum_growth_keeps_the_ema_of_the_dense_gradients(mlp, data):
    # m <- beta m + (1 - beta) g over the dense (unmasked) gradients, from m = 0
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    beta = 0.6
    sparse = DynamicSparsity(
        model, opt, 0.3, grow="momentum", momentum=beta, distribution="uniform",
        update_every=100, decay="constant",
    )  # fmt: skip
    X, y = data()
    expected = {k: torch.zeros_like(p) for k, p in sparse.params.items()}
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(X), y).backward()
        for k, p in sparse.params.items():
            expected[k] = beta * expected[k] + (1 - beta) * p.grad
        opt.step()
    ema = sparse.state_dict()["ema"]
    for k, m in sparse.masks.items():
        torch.testing.assert_close(ema[k], expected[k])
        assert bool((ema[k][~m] != 0).any())


@pytest.mark.parametrize("value", [math.nan, math.inf])
@pytest.mark.parametrize("grow", ["rigl", "momentum"])
def test_non_finite_dense_gradients_are_no_growth_signal(grow, value, mlp, data):
    # an overflowed or NaN gradient entry of an inactive weight must not make it the
    # first to grow: its score is 0 and the largest finite ones are grown
    model = mlp(widths=(30,))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    sparse = DynamicSparsity(
        model, opt, 0.2, grow=grow, distribution="uniform", update_every=1,
        drop_fraction=0.25, decay="constant", end=None,
    )  # fmt: skip
    before = {k: m.clone() for k, m in sparse.masks.items()}
    X, y = data()
    opt.zero_grad()
    nn.functional.cross_entropy(model(X), y).backward()
    planted = {}
    for k, m in before.items():
        grad = sparse.params[k].grad
        where = torch.zeros_like(m)
        where.view(-1)[(~m).reshape(-1).nonzero()[:5, 0]] = True
        grad[where] = value
        planted[k] = where
    opt.step()
    for k, m in sparse.masks.items():
        assert int(m.sum()) == int(before[k].sum())
        assert not (m & planted[k]).any(), f"{k}: a non-finite score was grown"


class _WithUnusedLayer(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.used = nn.Linear(20, 3)
        self.unused = nn.Linear(20, 10)

    def forward(self, x):
        return self.used(x)


def test_rigl_grows_a_layer_without_gradient_by_flat_index(data):
    # a layer the loss does not reach has no growth signal: all scores 0, ties to the
    # lowest flat index, counts kept
    model = _WithUnusedLayer()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sparse = DynamicSparsity(
        model, opt, 0.5, distribution="uniform", update_every=1, drop_fraction=0.5,
        decay="constant", end=None,
    )  # fmt: skip
    before = sparse.masks["unused.weight"].clone()
    w = model.unused.weight.detach().clone()
    X, y = data()
    opt.zero_grad()
    nn.functional.cross_entropy(model(X), y).backward()
    assert model.unused.weight.grad is None
    opt.step()
    after = sparse.masks["unused.weight"]
    k = math.floor(0.5 * int(before.sum()))
    kept = before & ~_dropped(before, w, k)
    free = (~kept).reshape(-1).nonzero()[:k, 0]
    expected = kept.clone()
    expected.view(-1)[free] = True
    assert torch.equal(after, expected)
    assert int(after.sum()) == int(before.sum())


def test_moved_counts_floor_alpha_nnz_in_every_layer_that_moves(mlp, data, train):
    # a dense layer moves nothing and does not stop the others; a layer with
    # floor(alpha * nnz) = 1 moves one weight
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    density = {r"^0\.": 1.0, r"^2\.": 0.3, r"^4\.": 0.3}
    sparse = DynamicSparsity(
        model, opt, density, grow="set", update_every=2, drop_fraction=0.05,
        decay="constant", end=None,
    )  # fmt: skip
    nnz = {k: int(m.sum()) for k, m in sparse.masks.items()}
    assert nnz == {"0.weight": 800, "2.weight": 360, "4.weight": 27}
    before = {k: m.clone() for k, m in sparse.masks.items()}
    train(model, opt, *data(), 2)
    assert sparse.history[0]["moved"] == 0 + 18 + 1  # floor(0.05 * 360), floor(0.05 * 27)
    assert torch.equal(sparse.masks["0.weight"], before["0.weight"])
    assert not torch.equal(sparse.masks["2.weight"], before["2.weight"])


def test_load_state_dict_names_what_does_not_fit(mlp, data, train):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    rigl = DynamicSparsity(model, opt, 0.3, update_every=2, total_steps=10)
    train(model, opt, *data(), 3)
    state = rigl.state_dict()
    snapshot = copy.deepcopy(state)

    def refused(bad, match):
        with pytest.raises(ValueError, match=match):
            rigl.load_state_dict(bad)
        now = rigl.state_dict()
        assert now["step_count"] == snapshot["step_count"] and now["seed"] == snapshot["seed"]
        for key in ("masks", "fired"):
            assert all(torch.equal(v, now[key][k]) for k, v in snapshot[key].items())

    other = "is not from a DynamicSparsity with the same growth criterion \\(grow='rigl'\\)"
    refused({k: v for k, v in state.items() if k != "seed"}, other)
    momentum_model = mlp()
    momentum = DynamicSparsity(
        momentum_model, torch.optim.SGD(momentum_model.parameters(), lr=0.1), 0.3,
        grow="momentum", total_steps=10, seed=4,
    )  # fmt: skip
    refused({**momentum.state_dict(), "masks": state["masks"]}, other)
    static = StaticSparsity(momentum_model, torch.optim.SGD(momentum_model.parameters()), 0.3)
    refused(static.state_dict(), other)  # no ema, fired or seed
    flat = {**state["fired"], "2.weight": state["fired"]["2.weight"].flatten()}
    refused({**state, "fired": flat}, r"state_dict fired\['2\.weight'\] has shape \(1200,\)")
    refused(
        {**state, "fired": {"0.weight": state["fired"]["0.weight"]}},
        r"state_dict fired do not match the controller's layers",
    )
    m_state = momentum.state_dict()
    flat = {**m_state["ema"], "4.weight": m_state["ema"]["4.weight"].flatten()}
    m_snapshot = copy.deepcopy(m_state)
    with pytest.raises(ValueError, match=r"state_dict ema\['4\.weight'\] has shape \(90,\)"):
        momentum.load_state_dict({**m_snapshot, "step_count": 5, "ema": flat})
    assert momentum.step_count == 0


def test_drop_schedule_defaults_and_the_argument_each_error_names():
    s = DropSchedule(end=200)
    assert (s.fraction, s.every, s.end, s.decay, s.horizon) == (0.3, 100, 200, "cosine", 200)
    assert DropSchedule(0.4, every=10, end=50).fraction_at(25) == pytest.approx(0.2)
    for name, kwargs in {
        "fraction": {"fraction": 1.5},
        "every": {"every": 0},
        "end": {"end": 0},
        "horizon": {"horizon": -1.0},
    }.items():
        with pytest.raises(ValueError, match=rf"'{name}' parameter of DropSchedule"):
            DropSchedule(**{"end": 100, **kwargs})
    with pytest.raises(
        ValueError, match=r"^a cosine drop schedule needs total_steps or an end step$"
    ):
        DropSchedule(0.4, every=10)


def test_dynamic_sparsity_names_each_bad_argument(mlp):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for name, kwargs in {
        "total_steps": {"total_steps": 0},
        "decay": {"decay": "linear", "total_steps": 10},
        "seed": {"seed": 1.5, "total_steps": 10},
    }.items():
        with pytest.raises(ValueError, match=rf"'{name}' parameter of DynamicSparsity"):
            DynamicSparsity(model, opt, **kwargs)
    with pytest.raises(
        ValueError,
        match=r"^total_steps is required: end=0\.5 is a fraction of it \(or pass end as an int "
        r"step, or end=None with decay='constant'\)$",
    ):
        DynamicSparsity(model, opt, end=0.5)
    # a fraction of a short run that rounds down to step 0 is the first step
    assert DynamicSparsity(model, opt, end=0.01, total_steps=10).schedule.end == 1


def test_dynamic_sparsity_passes_its_layer_and_seed_arguments_on(mlp):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def masks(**kwargs):
        sparse = DynamicSparsity(model, opt, 0.3, total_steps=10, **kwargs)
        sparse.remove()
        return sparse.masks

    default = masks()
    assert all(torch.equal(m, masks(seed=0)[k]) for k, m in default.items())
    other = masks(seed=3)
    assert all(torch.equal(m, masks(seed=3)[k]) for k, m in other.items())
    assert any(not torch.equal(m, default[k]) for k, m in other.items())
    assert set(masks(exclude=r"^2\.")) == {"0.weight", "4.weight"}
    assert set(masks(min_numel=1000)) == {"2.weight"}


def test_momentum_ema_is_float32_for_low_precision_weights(mlp, data):
    # bfloat16 cannot hold the small (1 - beta) g increments: the EMA is kept in float32
    model = mlp().to(torch.bfloat16)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    beta = 0.9
    sparse = DynamicSparsity(
        model, opt, 0.3, grow="momentum", momentum=beta, update_every=100, decay="constant"
    )
    X, y = data()
    expected = {k: torch.zeros(p.shape) for k, p in sparse.params.items()}
    for _ in range(4):
        opt.zero_grad()
        nn.functional.cross_entropy(model(X.to(torch.bfloat16)), y).backward()
        for k, p in sparse.params.items():
            expected[k] = beta * expected[k] + (1 - beta) * p.grad.float()
        opt.step()
    for k, e in sparse.state_dict()["ema"].items():
        assert e.dtype == torch.float32
        torch.testing.assert_close(e, expected[k])


def test_itop_rates_count_the_positions_ever_active(mlp, data, train):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sparse = DynamicSparsity(
        model, opt, 0.3, grow="set", distribution="uniform", update_every=2, total_steps=12
    )
    fired = {k: m.clone() for k, m in sparse.masks.items()}
    assert sparse.itop_rates() == pytest.approx(dict.fromkeys(fired, 0.3), abs=1e-3)
    X, y = data()
    for _ in range(6):
        train(model, opt, X, y, 2, start=sparse.step_count)
        for k, m in sparse.masks.items():
            fired[k] |= m
        rates = sparse.itop_rates()
        assert rates == {k: int(f.sum()) / f.numel() for k, f in fired.items()}
        total = sum(int(f.sum()) for f in fired.values()) / sum(f.numel() for f in fired.values())
        assert sparse.itop_rate == total == sparse.history[-1]["itop_rate"]
    assert all(r > 0.3 for r in rates.values())


def test_masks_are_the_group_first_ranks(first_rank_broadcast, mlp):
    # the process group reaches the broadcast: the masks are the broadcast ones
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mine = DynamicSparsity(model, opt, 0.3, total_steps=10, seed=2)
    mine.remove()
    group, calls = first_rank_broadcast()
    synced = DynamicSparsity(model, opt, 0.3, total_steps=10, seed=2, process_group=group)
    assert calls == [(3, group)]
    for k, m in synced.masks.items():
        assert torch.equal(m, mine.masks[k].roll(1, 0))
        assert torch.equal(synced.fired[k], m)
