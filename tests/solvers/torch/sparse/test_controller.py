# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch.sparse.controller: the step hooks and StaticSparsity."""

import pytest
import torch

from solvers.torch import MaskedTraining, StaticSparsity
from solvers.torch.sparse.controller import MaskChange, MaskUpdate


def test_sparse_init_restores_the_dense_unit_variance(mlp):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sparse = StaticSparsity(model, opt, 0.1, distribution="uniform")
    before = {k: p.detach().clone() for k, p in sparse.params.items()}
    sparse.rescale_init_()
    for k, p in sparse.params.items():
        m = sparse.masks[k]
        scale = (m.shape[1] / m.sum(1).clamp_min(1)).sqrt()[:, None]
        torch.testing.assert_close(p.detach(), before[k] * scale)
        assert torch.all(p[~m] == 0)


def test_sparse_init_scale_is_exact_in_the_weights_precision():
    """float64 conv weights: each output channel scaled by sqrt(fan_in / active fan_in) computed
    in float64 (fan_in = in_channels x kernel size)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    model = model.double()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sparse = StaticSparsity(model, opt, 0.3, distribution="uniform")
    before = {k: p.detach().clone() for k, p in sparse.params.items()}
    sparse.rescale_init_()
    for k, p in sparse.params.items():
        rows = sparse.masks[k].reshape(p.shape[0], -1)
        active = rows.sum(1).clamp_min(1).double()
        scale = torch.sqrt(rows.shape[1] / active).reshape(-1, *[1] * (p.dim() - 1))
        assert torch.equal(p.detach(), before[k] * scale)


def test_bad_controller_input(mlp):
    model = mlp()
    with pytest.raises(TypeError, match=r"torch\.optim\.Optimizer, got str"):
        StaticSparsity(model, "sgd")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"'nope\.weight' is not a parameter of the model"):
        MaskedTraining(model, opt, {"nope.weight": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"mask of '0\.weight' has shape \(3,\)"):
        MaskedTraining(model, opt, {"0.weight": torch.ones(3, dtype=torch.bool)})


def test_given_masks_are_applied_and_hooks_detach(mlp, data, train):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    mask = torch.rand(model[0].weight.shape) < 0.5
    sparse = StaticSparsity(model, opt, masks={"0.weight": mask})
    X, y = data()
    train(model, opt, X, y, 3)
    assert torch.all(model[0].weight[~mask] == 0) and sparse.step_count == 3
    assert sparse.densities() == {"0.weight": int(mask.sum()) / mask.numel()}
    sparse.remove()
    train(model, opt, X, y, 1)
    assert sparse.step_count == 3 and bool((model[0].weight[~mask] != 0).any())


def test_load_state_dict_refuses_other_layers(mlp):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    sparse = StaticSparsity(model, opt, 0.3)
    state = sparse.state_dict()
    assert set(state) == {"step_count", "masks", "history"}
    del state["masks"]["0.weight"]
    with pytest.raises(ValueError, match="do not match the controller's layers"):
        sparse.load_state_dict(state)


# -- issue 21: what the mutation review of controller.py found untested ------------------------


class Langevin(torch.optim.Optimizer):
    """SGD plus Gaussian noise (Welling & Teh 2011): moves a weight whose gradient is 0."""

    def __init__(self, params, lr=0.01, seed=0):
        super().__init__(params, {"lr": lr})
        self.generator = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                noise = torch.randn(p.shape, generator=self.generator)
                p.add_(p.grad, alpha=-group["lr"]).add_(noise, alpha=(2 * group["lr"]) ** 0.5)


class TwoEvaluations(torch.optim.Optimizer):
    """A sharpness-aware step (Foret et al. 2021): the gradient at ``w + rho g / |g|``.

    Calls ``closure(backward)`` twice, first with a positional, then with a keyword
    argument, the weights moved between the calls.
    """

    def __init__(self, params, lr=0.1, rho=0.5):
        super().__init__(params, {"lr": lr, "rho": rho})

    @torch.no_grad()
    def step(self, closure):
        with torch.enable_grad():
            loss = closure(True)
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
        moves = [self.param_groups[0]["rho"] * p.grad / norm for p in params]
        torch._foreach_add_(params, moves)
        with torch.enable_grad():
            closure(backward=True)
        torch._foreach_sub_(params, moves)
        torch._foreach_add_(params, [p.grad for p in params], alpha=-self.param_groups[0]["lr"])
        return loss


class DenseGradients(MaskedTraining):
    """Records what the subclass hook sees: the dense gradients, once per step."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def _before_masking_grads(self):
        self.seen.append({k: p.grad.clone() for k, p in self.params.items()})


def _closure(model, X, y, grads=None):
    def closure(backward):
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(X), y)
        if backward:
            loss.backward()
            if grads is not None:
                grads.append({k: p.grad.clone() for k, p in model.named_parameters()})
        return loss

    return closure


def _large_weights(model, threshold):
    """Masks of the weights (not biases) with ``|w| > threshold``."""
    return {k: p.detach().abs() > threshold for k, p in model.named_parameters() if p.dim() > 1}


def _outside_is_zero(sparse, opt):
    for k, m in sparse.masks.items():
        p = sparse.params[k]
        assert torch.all(p[~m] == 0), f"{k}: a masked weight moved"
        for key, v in opt.state[p].items():
            if torch.is_tensor(v) and v.shape == p.shape:
                assert torch.all(v[~m] == 0), f"{k}: {key} outside the mask"


def test_masks_of_any_dtype_are_stored_as_booleans(mlp, data, train):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    given = {
        "0.weight": (torch.rand(40, 20, generator=g) < 0.3).float(),  # 0./1. floats
        "2.weight": (torch.rand(30, 40, generator=g) < 0.3).to(torch.uint8),
    }
    sparse = MaskedTraining(model, opt, given)
    X, y = data()
    train(model, opt, X, y, 3)
    for k, m in sparse.masks.items():
        assert m.dtype == torch.bool and sparse.state_dict()["masks"][k].dtype == torch.bool
        assert torch.equal(m, given[k].bool())
    assert sparse.densities() == {k: int(m.sum()) / m.numel() for k, m in given.items()}
    _outside_is_zero(sparse, opt)


def test_state_left_by_earlier_steps_is_masked_on_attach(mlp, data, train):
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, amsgrad=True)
    X, y = data()
    train(model, opt, X, y, 2)  # dense steps: moments everywhere
    before = {
        k: {s: v.clone() for s, v in opt.state[p].items()} for k, p in model.named_parameters()
    }
    sparse = StaticSparsity(model, opt, 0.3, distribution="uniform")
    _outside_is_zero(sparse, opt)
    for k, m in sparse.masks.items():
        for s, v in opt.state[sparse.params[k]].items():
            if v.shape == m.shape:
                assert torch.equal(v[m], before[k][s][m]), f"{k}: {s} inside the mask changed"
                assert bool((before[k][s][~m] != 0).any()), "no state to mask: vacuous"


@pytest.mark.parametrize("how", ["positional", "keyword"])
def test_a_closure_step_masks_the_gradients_the_closure_computes(how, mlp, data):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sparse = StaticSparsity(model, opt, 0.3)
    X, y = data()
    closure = _closure(model, X, y)
    for _ in range(3):
        loss = (
            opt.step(closure=lambda: closure(True))
            if how == "keyword"
            else opt.step(lambda: closure(True))
        )
        assert torch.is_tensor(loss) and loss.ndim == 0
    assert sparse.step_count == 3
    _outside_is_zero(sparse, opt)


def test_closure_arguments_pass_through_and_the_hook_sees_the_first_dense_gradient(mlp, data):
    # an optimizer that evaluates its closure twice per step, with arguments, between
    # moves of the weights: the closure gets the arguments, the gradients of both
    # evaluations are masked, and the subclass hook runs once, on the first dense gradient
    model = mlp()
    opt = TwoEvaluations(model.parameters())
    masks = _large_weights(model, 0.05)
    sparse = DenseGradients(model, opt, masks)
    X, y = data()
    grads = []
    for step in range(2):
        opt.step(_closure(model, X, y, grads))
        assert len(sparse.seen) == step + 1 and len(grads) == 2 * (step + 1)
        for k, seen in sparse.seen[-1].items():
            assert torch.equal(seen, grads[-2][k])  # the first evaluation's, dense
            assert bool((seen[~sparse.masks[k]] != 0).any())
            assert not torch.equal(grads[-2][k], grads[-1][k])  # the two differ
            assert torch.all(sparse.params[k].grad[~sparse.masks[k]] == 0)
    _outside_is_zero(sparse, opt)
    # a plain step runs the hook once too, before the gradients are masked
    opt2 = torch.optim.SGD(model.parameters(), lr=0.1)
    plain = DenseGradients(model, opt2, masks)
    _closure(model, X, y, grads)(True)
    opt2.step()
    assert len(plain.seen) == 1
    assert all(torch.equal(plain.seen[0][k], grads[-1][k]) for k in masks)


def test_an_optimizer_that_moves_zero_weights_is_re_masked_after_every_step(mlp, data, train):
    model = mlp()
    opt = Langevin(model.parameters())
    sparse = StaticSparsity(model, opt, 0.3)
    X, y = data()
    for _ in range(3):
        train(model, opt, X, y, 1)
        _outside_is_zero(sparse, opt)
    sparse.remove()
    train(model, opt, X, y, 1)
    assert all(bool((sparse.params[k][~m] != 0).all()) for k, m in sparse.masks.items())


def test_remove_is_idempotent(mlp, data, train):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    sparse = StaticSparsity(model, opt, 0.3)
    sparse.remove()
    sparse.remove()
    train(model, opt, *data(), 1)
    assert sparse.step_count == 0


def test_load_state_dict_names_what_does_not_fit(mlp):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    sparse = StaticSparsity(model, opt, 0.3)
    state = sparse.state_dict()
    with pytest.raises(ValueError, match=r"state_dict must be a dict; got list"):
        sparse.load_state_dict([state])
    lacking = {k: v for k, v in state.items() if k != "history"}
    with pytest.raises(
        ValueError, match=r"lacks \['history'\] \(not from StaticSparsity\.state_dict\(\)\)"
    ):
        sparse.load_state_dict(lacking)
    two = {k: v for k, v in state["masks"].items() if k != "4.weight"}
    with pytest.raises(
        ValueError,
        match=r"state_dict masks do not match the controller's layers: expected "
        r"\['0\.weight', '2\.weight', '4\.weight'\], got \['0\.weight', '2\.weight'\]",
    ):
        sparse.load_state_dict({**state, "masks": two})
    with pytest.raises(ValueError, match=r"masks do not match .* got None"):
        sparse.load_state_dict({**state, "masks": None})
    flat = {**state["masks"], "2.weight": state["masks"]["2.weight"].flatten()}
    with pytest.raises(
        ValueError,
        match=r"state_dict masks\['2\.weight'\] has shape \(1200,\); expected \(30, 40\)",
    ):
        sparse.load_state_dict({**state, "masks": flat})
    listed = {**state["masks"], "2.weight": state["masks"]["2.weight"].tolist()}
    with pytest.raises(ValueError, match=r"masks\['2\.weight'\] has shape list; expected"):
        sparse.load_state_dict({**state, "masks": listed})
    for count in (True, 2.5, "3", -1):
        with pytest.raises(ValueError, match=r"state_dict step_count must be an int >= 0"):
            sparse.load_state_dict({**state, "step_count": count})


def test_a_fresh_state_loads_and_its_masks_rule_the_next_steps(mlp, data, train):
    # step 0 is a valid step count; loading re-applies the masks to dense weights and
    # the next gradients are masked with the loaded masks
    other = mlp()
    source = StaticSparsity(other, torch.optim.SGD(other.parameters(), lr=0.1), 0.3, seed=5)
    state = source.state_dict()
    assert state["step_count"] == 0
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sparse = StaticSparsity(model, opt, 0.3, seed=0)
    assert any(not torch.equal(m, state["masks"][k]) for k, m in sparse.masks.items())
    with torch.no_grad():
        for p in sparse.params.values():
            p.add_(1.0)  # dense again
    sparse.load_state_dict(state)
    assert sparse.step_count == 0
    for k, m in sparse.masks.items():
        assert torch.equal(m, state["masks"][k])
    _outside_is_zero(sparse, opt)
    train(model, opt, *data(), 2)
    _outside_is_zero(sparse, opt)


def test_masks_may_name_any_name_of_a_tied_weight(data):
    model = torch.nn.Sequential(torch.nn.Linear(5, 5), torch.nn.Tanh(), torch.nn.Linear(5, 5))
    model[2].weight = model[0].weight
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    mask = torch.eye(5, dtype=torch.bool)
    sparse = MaskedTraining(model, opt, {"2.weight": mask})
    assert sparse.params["2.weight"] is model[0].weight
    X = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        opt.zero_grad()
        model(X).square().sum().backward()
        opt.step()
    assert torch.all(model[0].weight[~mask] == 0) and torch.all(model[0].weight[mask] != 0)


def test_static_sparsity_passes_its_layer_and_mask_arguments_on(mlp):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def masks(**kwargs):
        sparse = StaticSparsity(model, opt, 0.3, **kwargs)
        sparse.remove()
        return sparse.masks

    default = masks()
    assert all(torch.equal(m, masks(seed=0)[k]) for k, m in default.items())  # seed=0
    assert all(torch.equal(m, masks(distribution="erk")[k]) for k, m in default.items())
    other = masks(seed=3)
    assert all(torch.equal(m, masks(seed=3)[k]) for k, m in other.items())
    assert any(not torch.equal(m, default[k]) for k, m in other.items())
    assert set(masks(exclude=r"^2\.")) == {"0.weight", "4.weight"}
    assert set(masks(min_numel=1000)) == {"2.weight"}  # 1200 weights; 800 and 90 stay dense
    uniform = StaticSparsity(model, opt, 0.3, distribution="uniform")
    assert uniform.densities() == {"0.weight": 0.3, "2.weight": 0.3, "4.weight": 0.3}
    assert len(set(StaticSparsity(model, opt, 0.3).densities().values())) == 3  # ERK


class RollRows(MaskedTraining):
    """Every step, each mask's rows move down by one; the moved-in positions restart."""

    def _due(self, step):
        return True

    def _update(self, step):
        changes = {}
        for k, m in self.masks.items():
            new = m.roll(1, 0)
            changes[k] = MaskChange(new, new & ~m)
        return MaskUpdate(changes, {"step": step} if step % 2 else None)

    def _masks_changed(self, record):
        if record is not None:
            record["density"] = self.density


def test_the_update_protocol_installs_new_masks_and_restarts_the_reset_positions(mlp, data):
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    masks = _large_weights(model, 0.1)
    sparse = RollRows(model, opt, masks)
    X, y = data()
    after_step = {}

    def snapshot(optimizer, args, kwargs):  # runs before the controller's post-hook
        for k, p in sparse.params.items():
            after_step[k] = (p.detach().clone(), optimizer.state[p]["exp_avg"].clone())

    opt.register_step_post_hook(snapshot)
    for _ in range(3):
        before = {k: m.clone() for k, m in sparse.masks.items()}
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
        for k, m in sparse.masks.items():
            assert torch.equal(m, before[k].roll(1, 0))
            p, exp_avg = sparse.params[k], opt.state[sparse.params[k]]["exp_avg"]
            w, a = after_step[k]
            reset, kept = m & ~before[k], m & before[k]
            assert reset.any() and torch.all(p[reset] == 0) and torch.all(exp_avg[reset] == 0)
            assert torch.equal(p[kept], w[kept]) and torch.equal(exp_avg[kept], a[kept])
            assert torch.equal(sparse._float_masks[k], m.float())
        _outside_is_zero(sparse, opt)
    assert [h["step"] for h in sparse.history] == [1, 3]  # None records are not kept
    assert sparse.history[0]["density"] == sparse.density


def test_masks_are_the_group_first_ranks_before_anything_uses_them(first_rank_broadcast, mlp, data):
    # the controller must install what the broadcast returns, at construction and at every
    # update, and pass the broadcast its process group
    group, calls = first_rank_broadcast()
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    mine = _large_weights(model, 0.1)
    static = StaticSparsity(model, opt, masks=mine, process_group=group)
    assert calls == [(3, group)]
    for k, m in static.masks.items():
        assert torch.equal(m, mine[k].roll(1, 0))
    _outside_is_zero(static, opt)
    static.remove()
    calls.clear()
    rolling = RollRows(model, opt, mine, process_group=group)
    X, y = data()
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(X), y).backward()
    opt.step()
    assert calls == [(3, group), (6, group)]  # the masks, then each layer's new and reset
    for k, m in rolling.masks.items():
        assert torch.equal(m, mine[k].roll(3, 0))  # synced, rolled, synced
    _outside_is_zero(rolling, opt)


@pytest.mark.parametrize("distribution", ["uniform", "erk", "er"])
def test_a_layer_of_width_zero_is_left_alone(distribution):
    """An empty weight (a layer of width 0) has nothing to mask: ERK's fan-in ratio would divide
    by its zero size, and its density would be 0 / 0."""
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Linear(5, 0), torch.nn.Linear(0, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sparse = StaticSparsity(model, opt, 0.5, distribution=distribution)
    assert list(sparse.masks) == ["0.weight"] and sparse.densities() == {"0.weight": 0.5}
