# SPDX-License-Identifier: BSD-3-Clause
"""The contract every line-search optimizer keeps, checked for each of them.

Closure protocol, parameter groups, LR schedulers, bit-for-bit ``state_dict``
resume and non-finite losses and gradients, over AdaSLS in its preconditioner
and momentum variants, SLS (Armijo and Goldstein) and SPS.
"""

import copy

import pytest
import torch

from solvers.torch.optim import SLS, SPS, AdaSLS

OPTIMIZERS = {
    "adasls-amsgrad-ema": lambda p, **kw: AdaSLS(p, **kw),
    "adasls-amsgrad-heavy-ball": lambda p, **kw: AdaSLS(p, momentum="heavy_ball", **kw),
    "adasls-amsgrad-none": lambda p, **kw: AdaSLS(p, momentum="none", **kw),
    "adasls-adagrad": lambda p, **kw: AdaSLS(p, preconditioner="adagrad", **kw),
    "adasls-adagrad-ema": lambda p, **kw: AdaSLS(p, preconditioner="adagrad", momentum="ema", **kw),
    "sls-armijo": lambda p, **kw: SLS(p, **kw),
    "sls-goldstein": lambda p, **kw: SLS(p, line_search="goldstein", c=0.2, **kw),
    "sps": lambda p, **kw: SPS(p, **kw),
    "sps-amsgrad": lambda p, **kw: SPS(p, preconditioner="amsgrad", momentum="ema", **kw),
}


@pytest.fixture(params=list(OPTIMIZERS), ids=list(OPTIMIZERS))
def make_opt(request):
    """``make_opt(params, **kwargs)``: one optimizer of :data:`OPTIMIZERS`."""
    return OPTIMIZERS[request.param]


def test_step_returns_the_closure_loss_and_counts(make_opt, mlp, data, make_closure):
    X, y = data()
    model = mlp()
    opt = make_opt(model.parameters(), n_batches_per_epoch=4)
    closure = make_closure(model, opt, X, y)
    for _ in range(5):
        with torch.no_grad():
            expected = torch.nn.functional.cross_entropy(model(X), y)
        assert torch.equal(opt.step(closure).detach(), expected)
    assert opt.totals["steps"] == 5 and opt.totals["forwards"] >= 5
    assert sorted(opt.last_step) == ["backtracks", "forwards", "status", "step_size"]


def test_closure_without_backward_is_accepted(make_opt, mlp, data):
    X, y = data()
    model = mlp()
    opt = make_opt(model.parameters())

    def closure():
        return torch.nn.functional.cross_entropy(model(X), y)

    l0 = opt.step(closure).item()
    for _ in range(10):
        opt.zero_grad()
        opt.step(closure)
    assert closure().item() < l0


CLOSURE_STYLES = {
    "zero_grad and backward": (True, True),
    "loss only": (False, None),
    "zero_grad, no backward": (False, True),
    "zero in place, no backward": (False, False),
    "zero in place and backward": (True, False),
}


@pytest.mark.parametrize("style", [s for s in CLOSURE_STYLES if s != "zero_grad and backward"])
def test_every_closure_style_takes_the_same_steps(make_opt, mlp, data, style):
    """A closure may zero the gradients (to None or in place) or not, and run backward or leave
    it to the optimizer: the iterates are those of ``zero_grad(); loss.backward()``, the loss
    gradient neither missing nor added to the previous step's."""
    X, y = data()

    def run(style):
        backward, set_to_none = CLOSURE_STYLES[style]
        torch.manual_seed(0)
        model = mlp()
        opt = make_opt(model.parameters(), n_batches_per_epoch=4)
        for k in range(4):
            xb, yb = X[k::4], y[k::4]

            def closure():
                if set_to_none is not None:
                    opt.zero_grad(set_to_none=set_to_none)
                loss = torch.nn.functional.cross_entropy(model(xb), yb)
                if backward:
                    loss.backward()
                return loss

            opt.step(closure)
        return [p.detach().clone() for p in model.parameters()]

    for a, b in zip(run("zero_grad and backward"), run(style), strict=True):
        assert torch.equal(a, b)


def test_param_groups_cap_their_own_steps(make_opt, mlp, data, make_closure):
    X, y = data()
    torch.manual_seed(0)
    model = mlp()
    head = list(model[-1].parameters())
    body = [p for p in model.parameters() if all(p is not q for q in head)]
    opt = make_opt([{"params": body}, {"params": head, "lr": 1e-4}], n_batches_per_epoch=4)
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(3):
        opt.step(make_closure(model, opt, X, y))
    assert opt.param_groups[1]["lr"] == 1e-4
    moved = [
        (a - p.detach()).abs().max().item() for a, p in zip(before, model.parameters(), strict=True)
    ]
    assert max(moved[-2:]) > 0.0 and max(moved[:-2]) > max(moved[-2:])


def test_schedulers_scale_the_maximum_step(make_opt, mlp, data, make_closure):
    X, y = data()
    torch.manual_seed(0)
    model = mlp()
    opt = make_opt(model.parameters(), n_batches_per_epoch=4)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=1e-3)
    lr0 = opt.param_groups[0]["initial_lr"]
    opt.step(make_closure(model, opt, X, y))
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(lr0 * 1e-3)
    for _ in range(3):
        opt.step(make_closure(model, opt, X, y))
        assert opt.last_step["step_size"] <= opt.param_groups[0]["lr"] * (1 + 1e-12)


def test_state_dict_resume_is_bit_for_bit(make_opt, mlp, data, make_closure):
    X, y = data()
    torch.manual_seed(1)
    model = mlp(dropout=0.2)
    opt = make_opt(model.parameters(), n_batches_per_epoch=4)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    for k in range(5):
        opt.step(make_closure(model, opt, X[k::4], y[k::4]))
        sched.step()
    saved = (
        copy.deepcopy(model.state_dict()),
        copy.deepcopy(opt.state_dict()),
        copy.deepcopy(sched.state_dict()),
        torch.get_rng_state(),
    )
    assert "line_search_totals" in saved[1]

    def continue_run(model, opt, sched):
        for k in range(6):
            opt.step(make_closure(model, opt, X[k % 4 :: 4], y[k % 4 :: 4]))
            sched.step()
        return [p.detach().clone() for p in model.parameters()]

    first = continue_run(model, opt, sched)
    model2 = mlp(dropout=0.2)
    model2.load_state_dict(saved[0])
    opt2 = make_opt(model2.parameters(), n_batches_per_epoch=4)
    opt2.load_state_dict(saved[1])
    sched2 = torch.optim.lr_scheduler.StepLR(opt2, step_size=3, gamma=0.5)
    sched2.load_state_dict(saved[2])
    torch.set_rng_state(saved[3])
    second = continue_run(model2, opt2, sched2)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)
    assert opt.totals == opt2.totals


def test_nonfinite_loss_raises_and_leaves_everything_unchanged(make_opt, mlp, data):
    model = mlp()
    X, y = data()
    opt = make_opt(model.parameters())
    before = [p.detach().clone() for p in model.parameters()]

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(X), y) * float("nan")
        loss.backward()
        return loss

    with pytest.raises(ValueError, match="not finite"):
        opt.step(closure)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert len(opt.state) == 0


def test_nonfinite_gradient_skips_the_step(make_opt, mlp, data, make_closure):
    model = mlp()
    X, y = data()
    opt = make_opt(model.parameters())
    loss = torch.nn.functional.cross_entropy(model(X), y)
    loss.backward()
    model[0].weight.grad[0, 0] = float("inf")
    before = [p.detach().clone() for p in model.parameters()]
    step_size = opt.param_groups[0]["step_size"]
    opt.step(make_closure(model, opt, X, y), loss=loss)
    assert opt.last_step["status"] == "nonfinite_gradient"
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert len(opt.state) == 0 and opt.param_groups[0]["step_size"] == step_size
    assert opt.totals["skipped"] == 1


def test_step_hooks_fire(make_opt, mlp, data, make_closure):
    X, y = data()
    model = mlp()
    opt = make_opt(model.parameters())
    fired = []
    opt.register_step_pre_hook(lambda o, a, k: fired.append("pre"))
    opt.register_step_post_hook(lambda o, a, k: fired.append("post"))
    opt.step(make_closure(model, opt, X, y))
    assert fired == ["pre", "post"]
