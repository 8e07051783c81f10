# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch.optim.line_search: AdaSLS, SLS, SPS as torch.optim optimizers."""

import copy
import math
import os
import re

import numpy as np
import pytest
import torch

from solvers import GLMObjective, minimize
from solvers.torch.optim import SLS, SPS, AdaSLS


def logistic_loss(w, X, y):
    return torch.nn.functional.softplus(-y * (X @ w)).mean()


def run_torch(opt_factory, X, y, batch_size, epochs):
    Xt, yt = torch.tensor(X), torch.tensor(y)
    w = torch.zeros(X.shape[1], dtype=torch.float64, requires_grad=True)
    opt = opt_factory([w])
    for _ in range(epochs):
        for i in range(0, len(X), batch_size):
            xb, yb = Xt[i : i + batch_size], yt[i : i + batch_size]

            def closure():
                opt.zero_grad()
                loss = logistic_loss(w, xb, yb)
                loss.backward()
                return loss

            opt.step(closure)
    return w.detach().numpy(), opt


SETTINGS = [
    # (torch optimizer factory, minimize kwargs)
    (lambda nb: lambda p: AdaSLS(p, c=0.5, n_batches_per_epoch=nb), dict(c=0.5)),
    (
        lambda nb: lambda p: AdaSLS(p, c=0.5, preconditioner="adagrad", n_batches_per_epoch=nb),
        dict(c=0.5, preconditioner="adagrad"),
    ),
    (
        lambda nb: lambda p: SLS(p, c=0.2, line_search="goldstein", n_batches_per_epoch=nb),
        dict(c=0.2, preconditioner="identity", line_search="goldstein"),
    ),
    (
        lambda nb: lambda p: SPS(p, n_batches_per_epoch=nb),
        dict(c=0.2, preconditioner="identity", line_search="polyak", lr=1.0),
    ),
    (
        lambda nb: lambda p: AdaSLS(p, c=0.5, momentum="heavy_ball", n_batches_per_epoch=nb),
        dict(c=0.5, momentum="heavy_ball"),
    ),
    (  # settings away from their defaults reach the preconditioner and the momentum
        lambda nb: (
            lambda p: AdaSLS(
                p,
                c=0.5,
                momentum="heavy_ball",
                heavy_ball=0.5,
                eps=0.1,
                betas=(0.5, 0.8),
                n_batches_per_epoch=nb,
            )
        ),
        dict(c=0.5, momentum="heavy_ball", heavy_ball=0.5, eps=0.1, betas=(0.5, 0.8)),
    ),
    (
        lambda nb: (
            lambda p: AdaSLS(p, c=0.5, momentum="ema", betas=(0.5, 0.8), n_batches_per_epoch=nb)
        ),
        dict(c=0.5, momentum="ema", betas=(0.5, 0.8)),
    ),
    (  # EMA momentum without a preconditioner: no denominator for the fused final step
        lambda nb: (
            lambda p: AdaSLS(
                p, c=0.5, preconditioner="identity", momentum="ema", n_batches_per_epoch=nb
            )
        ),
        dict(c=0.5, preconditioner="identity", momentum="ema"),
    ),
]


@pytest.mark.parametrize("factory, kwargs", SETTINGS)
def test_torch_and_array_versions_give_the_same_iterates(factory, kwargs, separable):
    X, y = separable(n=400, p=10, margin=0.05)
    w_torch, opt = run_torch(factory(8), X, y, 50, 3)
    res = minimize(
        GLMObjective("logistic"),
        np.zeros(10),
        (X, y),
        batch_size=50,
        epochs=3,
        shuffle=False,
        **kwargs,
    )
    np.testing.assert_allclose(w_torch, res.x, rtol=1e-9, atol=1e-12)
    assert opt.totals["forwards"] == res.nfev
    assert opt.param_groups[0]["step_size"] == pytest.approx(res.step_size, rel=1e-9)


@pytest.mark.parametrize(
    "make",
    [
        lambda p: AdaSLS(p, c=0.5, n_batches_per_epoch=10),
        lambda p: AdaSLS(p, c=0.5, preconditioner="adagrad", n_batches_per_epoch=10),
        lambda p: SLS(p, c=0.5, n_batches_per_epoch=10),
        lambda p: SPS(p, c=0.5, n_batches_per_epoch=10),
    ],
)
def test_converges_on_quadratic_and_separable_logistic(make, separable):
    torch.manual_seed(0)
    A = torch.randn(100, 5, dtype=torch.float64)
    x_star = torch.randn(5, dtype=torch.float64)
    b = A @ x_star
    x = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    opt = make([x])
    for _ in range(60):
        for i in range(0, 100, 10):

            def closure(i=i):
                opt.zero_grad()
                loss = 0.5 * ((A[i : i + 10] @ x - b[i : i + 10]) ** 2).mean()
                loss.backward()
                return loss

            opt.step(closure)
    assert torch.linalg.norm(x.detach() - x_star) < 1e-4 * torch.linalg.norm(x_star)

    X, y = separable(n=200, p=5, margin=0.2)
    w, _ = run_torch(make, X, y, 20, 40)
    assert np.all(np.sign(X @ w) == y)
    assert logistic_loss(torch.tensor(w), torch.tensor(X), torch.tensor(y)) < 0.02


@pytest.mark.parametrize("preconditioner", ["identity", "adagrad"])
def test_every_accepted_step_satisfies_armijo(preconditioner, separable):
    X, y = separable(n=300, p=6, margin=0.05)
    Xt, yt = torch.tensor(X), torch.tensor(y)
    w = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    c, eps = 0.5, 1e-8
    opt = AdaSLS([w], c=c, preconditioner=preconditioner, momentum="none", n_batches_per_epoch=10)
    sum_sq = torch.full((6,), torch.finfo(torch.float64).tiny, dtype=torch.float64)
    checked = 0
    for _ in range(5):
        for i in range(0, 300, 30):
            xb, yb = Xt[i : i + 30], yt[i : i + 30]

            def closure():
                opt.zero_grad()
                loss = logistic_loss(w, xb, yb)
                loss.backward()
                return loss

            w0 = w.detach().clone()
            # the direction, computed here from the gradient and the AdaGrad formula
            g = torch.autograd.functional.jacobian(lambda v: logistic_loss(v, xb, yb), w0)
            sum_sq += g * g
            d = g if preconditioner == "identity" else g / (sum_sq.sqrt() + eps)
            f0 = opt.step(closure).item()
            eta = opt.last_step["step_size"]
            if eta == 0.0:
                assert torch.equal(w.detach(), w0)
                continue
            torch.testing.assert_close(w.detach(), w0 - eta * d, rtol=1e-12, atol=1e-14)
            f1 = logistic_loss(w.detach(), xb, yb).item()
            tol = 8 * np.finfo(np.float64).eps * abs(f0)
            assert f1 <= f0 - c * eta * torch.dot(g, d).item() + tol
            checked += 1
    assert checked >= 45


def test_lr_scheduler_caps_the_step_and_param_groups_work(mlp, data, make_closure):
    X, y = data()
    torch.manual_seed(0)
    model = mlp()
    head = list(model[-1].parameters())
    body = [p for p in model.parameters() if all(p is not q for q in head)]
    opt = AdaSLS([{"params": body}, {"params": head, "lr": 1e-3}], n_batches_per_epoch=4)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.1)
    assert [g["initial_lr"] for g in opt.param_groups] == [100.0, 1e-3]
    before = [p.detach().clone() for p in head]
    opt.step(make_closure(model, opt, X, y))
    assert opt.last_step["step_size"] > 1e-3  # the body's step is not capped by the head's lr
    for _ in range(4):
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-2)
    for _ in range(3):
        opt.step(make_closure(model, opt, X, y))
        assert opt.last_step["step_size"] <= 1e-2 * (1 + 1e-12)
    assert any(not torch.equal(a, b) for a, b in zip(before, head, strict=False))


def test_param_groups_must_agree_on_search_settings(mlp, data, make_closure):
    model = mlp()
    opt = AdaSLS([{"params": model[0].parameters()}, {"params": model[-1].parameters(), "c": 0.3}])
    X, y = data()
    with pytest.raises(ValueError, match="disagree on 'c'"):
        opt.step(make_closure(model, opt, X, y))


@pytest.mark.parametrize(
    "other, match",
    [
        (lambda params: torch.optim.Adam(params), "not from a line-search optimizer"),
        (lambda params: SLS(params), "preconditioner='identity'"),
        (lambda params: SPS(params), "line_search='polyak'"),
        (lambda params: AdaSLS(params, momentum="heavy_ball"), "momentum='heavy_ball'"),
    ],
)
def test_loading_another_optimizers_state_is_refused_and_changes_nothing(
    other, match, mlp, data, make_closure
):
    X, y = data()
    model = mlp()
    opt = AdaSLS(model.parameters(), n_batches_per_epoch=4)
    opt.step(make_closure(model, opt, X, y))
    foreign = other(model.parameters())
    foreign.step(make_closure(model, foreign, X, y))
    before = copy.deepcopy(opt.state_dict())
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(foreign.state_dict())
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"]
    assert after["line_search_totals"] == before["line_search_totals"]
    for k, state in before["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(after["state"][k][name]), torch.as_tensor(value))
    opt.load_state_dict(before)  # its own state still loads


def test_an_lr_made_nan_after_construction_is_reported_not_skipped(mlp, data, make_closure):
    X, y = data()
    model = mlp()
    opt = AdaSLS(model.parameters(), n_batches_per_epoch=4)
    opt.param_groups[0]["lr"] = float("nan")
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"'lr' parameter of AdaSLS.param_groups\[0\]"):
        opt.step(make_closure(model, opt, X, y))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    opt.param_groups[0]["lr"] = 1.0
    opt.step(make_closure(model, opt, X, y))
    assert opt.last_step["step_size"] > 0


def test_amp_grad_scaler_flow(mlp, data):
    X, y = data()
    torch.manual_seed(0)
    model = mlp()
    opt = AdaSLS(model.parameters(), n_batches_per_epoch=4)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(X), y)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)

        def closure():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return torch.nn.functional.cross_entropy(model(X), y)

        opt.step(closure, loss=loss)
        scaler.update()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    # SPS needs no closure: GradScaler.step passes loss= through
    sps = SPS(model.parameters())
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(X), y)
    scaler.scale(loss).backward()
    scaler.step(sps, loss=loss)
    scaler.update()
    assert sps.last_step["forwards"] == 1 and sps.last_step["step_size"] > 0


def test_sps_takes_one_forward_per_step_and_accepts_loss_keyword(mlp, data):
    X, y = data()
    model = mlp()
    opt = SPS(model.parameters())
    calls = []

    def closure():
        calls.append(1)
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(X), y)
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    assert len(calls) == 5 and opt.totals["forwards"] == 5
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(X), y)
    loss.backward()
    opt.step(loss=loss)
    assert opt.totals["steps"] == 6


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(c=1.2), r"'c' parameter.* must be a float in the range \(0.0, 1.0\)"),
        (dict(c=0.0), r"'c' parameter.* must be a float in the range \(0.0, 1.0\)"),
        (dict(lr=-1.0), "'lr' parameter of AdaSLS"),
        (dict(line_search="goldstein", c=0.7), r"\(0.0, 0.5\)"),
        (dict(beta_b=0.0), "beta_b"),
        (dict(reset="never"), "reset"),
        (dict(preconditioner="adam"), "preconditioner"),
        (dict(betas=(0.9, 1.5)), "betas"),
        (dict(gamma=0.5), "'gamma' parameter of AdaSLS"),
        (dict(momentum="nesterov"), "'momentum' parameter of AdaSLS"),
        (dict(f_star=float("nan")), "'f_star' parameter of AdaSLS"),
        (dict(max_backtracks=0), "max_backtracks"),
    ],
)
def test_bad_hyperparameters_raise(kwargs, match, mlp):
    with pytest.raises(ValueError, match=match):
        AdaSLS(mlp().parameters(), **kwargs)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (AdaSLS, r"^AdaSLS with line_search='armijo' needs a closure \(step\(closure\) with"),
        (SPS, r"^SPS with line_search='polyak' needs a closure or loss= \(step\(closure\) with"),
    ],
)
def test_a_step_without_closure_names_what_it_needs(mlp, make, message):
    """A line search needs a closure for its trials; a rule without trials (SPS) takes the
    loss instead."""
    opt = make(mlp().parameters())
    with pytest.raises(ValueError, match=message):
        opt.step()


# -- DDP: two gloo processes on CPU ---------------------------------------------------------


def _ddp_worker(rank, world, init_file, out_dir, mlp, data):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(mlp(dropout=0.3))
    opt = AdaSLS(model.parameters(), n_batches_per_epoch=5)
    X, y = data(n=64, seed=10 + rank)  # different data on each rank
    torch.manual_seed(100 + rank)  # different dropout masks too
    sizes = []
    for k in range(6):
        xb, yb = X[k * 10 : (k + 1) * 10], y[k * 10 : (k + 1) * 10]

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            return loss

        opt.step(closure)
        sizes.append((opt.last_step["step_size"], opt.last_step["forwards"]))
    params = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    torch.save({"sizes": sizes, "params": params}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_ddp_ranks_take_the_same_decisions(tmp_path, mlp, data):
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available():
        pytest.skip("this torch build has no torch.distributed (some macOS/Windows wheels)")
    args = (2, str(tmp_path / "init"), str(tmp_path), mlp, data)
    mp.spawn(_ddp_worker, args=args, nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    assert r0["sizes"] == r1["sizes"]
    assert any(f > 1 for _, f in r0["sizes"])
    assert torch.equal(r0["params"], r1["params"])


def fail_trials(closure, extra=1.0):
    """The closure, with every trial (call after the first) reporting a higher loss."""
    calls = []

    def wrapped():
        loss = closure()
        calls.append(1)
        return loss if len(calls) == 1 else loss + extra

    return wrapped


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("momentum", ["ema", "none"])
def test_a_failed_search_restores_the_parameters_exactly(dtype, momentum, mlp, data, make_closure):
    X, y = data()
    torch.manual_seed(0)
    model = mlp().to(dtype)
    opt = AdaSLS(model.parameters(), momentum=momentum, max_backtracks=7, polyak_init=False)
    before = [p.detach().clone() for p in model.parameters()]
    opt.step(fail_trials(make_closure(model, opt, X.to(dtype), y)))
    assert opt.last_step["status"] == "max_backtracks"
    assert opt.last_step["forwards"] == 9 and opt.last_step["step_size"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    # the gradient was observed: the preconditioner state advanced, the next step starts lower
    assert all(opt.state[p]["step"] == 1 for p in model.parameters())
    assert opt.param_groups[0]["step_size"] == pytest.approx(100.0 * 0.9**8)


def test_zero_lr_warmup_skips_steps_and_then_searches(mlp, data, make_closure):
    X, y = data()
    torch.manual_seed(0)
    model = mlp()
    opt = AdaSLS(model.parameters(), n_batches_per_epoch=4)
    warmup = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, k / 2))
    assert opt.param_groups[0]["lr"] == 0.0
    before = [p.detach().clone() for p in model.parameters()]
    opt.step(make_closure(model, opt, X, y))
    assert opt.last_step["status"] == "zero_lr" and opt.last_step["step_size"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    warmup.step()
    for _ in range(3):
        opt.step(make_closure(model, opt, X, y))
        assert 0.0 < opt.last_step["step_size"] <= opt.param_groups[0]["lr"]
        warmup.step()
    assert opt.param_groups[0]["step_size"] > 0.0
    # lr=0 from the start is allowed too (torch's optimizers accept it): steps are skipped
    # until lr is raised, then the search starts from the new lr (not from the step size
    # 0 the optimizer was built with)
    torch.manual_seed(0)
    model = mlp()
    opt = AdaSLS(model.parameters(), lr=0.0, n_batches_per_epoch=4)
    before = [p.detach().clone() for p in model.parameters()]
    opt.step(make_closure(model, opt, X, y))
    assert opt.last_step["status"] == "zero_lr" and opt.last_step["step_size"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    opt.param_groups[0]["lr"] = 1.0
    opt.step(make_closure(model, opt, X, y))
    assert opt.last_step["status"] == "accepted"
    assert 0.0 < opt.last_step["step_size"] <= 1.0
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize("line_search", ["armijo", "goldstein"])
def test_negative_losses_still_search(line_search):
    torch.manual_seed(0)
    A = torch.randn(50, 4, dtype=torch.float64)
    x_star = torch.randn(4, dtype=torch.float64)
    b = A @ x_star
    x = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    # f* of this loss is -10, below the default f_star=0
    opt = SLS([x], c=0.2, line_search=line_search, n_batches_per_epoch=5)

    def closure():
        opt.zero_grad()
        loss = 0.5 * ((A @ x - b) ** 2).mean() - 10.0
        loss.backward()
        return loss

    for _ in range(200):
        opt.step(closure)
    assert opt.totals["skipped"] == 0
    torch.testing.assert_close(x.detach(), x_star, rtol=1e-5, atol=1e-6)


def test_half_precision_inner_products_do_not_overflow():
    w = torch.full((400,), 1.0, dtype=torch.float16, requires_grad=True)
    opt = SLS([w], lr=1e-3)

    def closure():
        opt.zero_grad()
        loss = 20.0 * w.float().sum()  # gradient 20 per entry: <g, g> = 160000 > 65504
        loss.backward()
        return loss

    opt.step(closure)
    assert opt.last_step["status"] == "accepted"
    assert opt.last_step["step_size"] > 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_final_step_matches_the_momentums_own_bit_for_bit(dtype, mlp, data, monkeypatch):
    # AMSGrad's EMA step after a trial is written from the saved w in one pass
    # (_functional.finish); it must be the EMAMomentum.finish_foreach_ result exactly,
    # through accepted first trials and backtracks alike
    from solvers.torch.optim import _functional as F

    def generic(part, states, eta):
        F.group_transforms(part.group)[1].finish_foreach_(part, states, eta)

    X, y = data(n=96)
    runs = []
    for fused in (True, False):
        if not fused:
            monkeypatch.setattr(F, "finish", generic)
        torch.manual_seed(0)
        model = mlp().to(dtype)
        opt = AdaSLS(model.parameters(), n_batches_per_epoch=3)
        for k in range(24):
            xb, yb = X[k % 3 :: 3].to(dtype), y[k % 3 :: 3]

            def closure():
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(xb), yb)
                loss.backward()
                return loss

            w0 = [p.detach().clone() for p in model.parameters()]
            opt.step(closure)
        runs.append((model, opt))
    (fused_model, fused_opt), (model, opt) = runs
    assert fused_opt.totals == opt.totals and opt.totals["backtracks"] > 0
    for a, b in zip(fused_model.parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b)
    # and it is the AMSGrad step w - eta m / (1 - beta1^k) / (sqrt(vmax / (1 - beta2^k)) + eps)
    eta = opt.last_step["step_size"]
    for p, w in zip(model.parameters(), w0, strict=True):
        st = opt.state[p]
        k = st["step"]
        denom = (st["max_exp_avg_sq"].sqrt() / (1 - 0.99**k) ** 0.5).add(1e-8)
        expected = w + (-eta / (1 - 0.9**k)) * st["exp_avg"] / denom
        torch.testing.assert_close(p.detach(), expected)


def test_every_accepted_amsgrad_step_size_satisfies_armijo_along_the_search_direction(mlp, data):
    # AdaSLS's default (AMSGrad + EMA momentum) searches along d = A^-1 g and then moves
    # along A^-1 m_hat: the accepted eta must satisfy Armijo at w - eta d on the minibatch
    X, y = data(n=96)
    torch.manual_seed(0)
    model = mlp().double()
    X = X.double()
    opt = AdaSLS(model.parameters(), n_batches_per_epoch=3)
    params = list(model.parameters())
    checked = 0
    for k in range(30):
        xb, yb = X[k % 3 :: 3], y[k % 3 :: 3]

        def loss_at(ws):
            with torch.no_grad():
                saved = [p.detach().clone() for p in params]
                for p, w in zip(params, ws, strict=True):
                    p.copy_(w)
                f = torch.nn.functional.cross_entropy(model(xb), yb).item()
                for p, w in zip(params, saved, strict=True):
                    p.copy_(w)
            return f

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            return loss

        w0 = [p.detach().clone() for p in params]
        f0 = opt.step(closure).item()
        eta = opt.last_step["step_size"]
        if eta == 0.0:
            continue
        d, pp = [], 0.0
        for p in params:
            st = opt.state[p]
            denom = st["max_exp_avg_sq"].sqrt() / math.sqrt(1 - 0.99 ** st["step"]) + 1e-8
            d.append(p.grad / denom)
            pp += torch.dot(p.grad.flatten(), d[-1].flatten()).item()
        f1 = loss_at([w - eta * di for w, di in zip(w0, d, strict=True)])
        assert f1 <= f0 - 0.1 * eta * pp + 8 * np.finfo(np.float64).eps * abs(f0) + 1e-12
        checked += 1
    assert checked >= 25 and opt.totals["backtracks"] > 0


def test_parameters_without_gradients_are_skipped_not_the_rest_of_the_group():
    frozen = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = SLS([frozen, w], lr=1.0)

    def closure():
        opt.zero_grad()
        loss = ((w - 1.0) ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    assert frozen.grad is None and torch.equal(frozen, torch.zeros(3, dtype=torch.float64))
    assert torch.all(w > 0.0)
    emb = torch.nn.Embedding(4, 2, sparse=True)
    opt = SLS(emb.parameters())
    emb(torch.tensor([1])).sum().backward()
    with pytest.raises(RuntimeError, match=r"^SLS does not support sparse gradients\.$"):
        opt.step(lambda: emb(torch.tensor([1])).sum())


def test_inner_products_are_float64_whatever_the_tensors_dtype():
    from solvers.torch.optim._functional import inner

    a = [torch.full((3,), 1.0 + 2**-20), torch.ones(2, dtype=torch.float16)]
    b = [torch.full((3,), 1.0 + 2**-20), torch.full((2,), 300.0, dtype=torch.float16)]
    value = inner(a, b)
    assert value.dtype == torch.float64
    assert value.item() == pytest.approx(3 * (1.0 + 2**-20) ** 2 + 600.0, rel=1e-7)


def test_origin_buffers_are_reused_until_the_parameter_changes_dtype_or_shape():
    from solvers.torch.optim._functional import origin_buffers

    p = torch.randn(4)
    buffers = {}
    (first,) = origin_buffers(buffers, [p])
    p.data.add_(1.0)
    (again,) = origin_buffers(buffers, [p])
    assert again is first and buffers[p] is first and torch.equal(again, p)
    p.data = p.data.double() + 2**-40  # not representable in float32
    (wider,) = origin_buffers(buffers, [p])
    assert wider is not first and wider.dtype == torch.float64 and torch.equal(wider, p)
    p.data = torch.randn(2, 3, dtype=torch.float64)
    (reshaped,) = origin_buffers(buffers, [p])
    assert reshaped.shape == (2, 3) and torch.equal(reshaped, p)


# -- issue 21: the optimizer classes' unchecked settings and messages -------------------------


def _quadratic_closure(w, opt, dtype=None):
    def closure():
        opt.zero_grad()
        loss = ((w - 1.0) ** 2).sum()
        loss.backward()
        return loss if dtype is None else loss.to(dtype)

    return closure


def test_documented_defaults_and_fresh_counters():
    from solvers.torch.optim import LineSearchOptimizer

    w = torch.zeros(2, requires_grad=True)
    opt = LineSearchOptimizer([w])
    expected = dict(
        lr=100.0, preconditioner="amsgrad", momentum="ema", line_search="armijo", c=0.1,
        beta_f=2.0, max_backtracks=100, n_batches_per_epoch=500,
    )  # fmt: skip
    assert {k: opt.defaults[k] for k in expected} == expected
    assert opt.last_step == {} and opt.process_group is None
    assert opt.totals == {"steps": 0, "forwards": 0, "backtracks": 0, "skipped": 0}
    sls = SLS([w])
    assert (sls.defaults["lr"], sls.defaults["preconditioner"]) == (100.0, "identity")
    assert sls.defaults["line_search"] == "armijo" and sls.defaults["c"] == 0.1
    sls = SLS([w], line_search="goldstein", preconditioner="adagrad", c=0.3)
    assert (sls.defaults["line_search"], sls.defaults["preconditioner"]) == ("goldstein", "adagrad")
    assert sls.defaults["c"] == 0.3
    assert SPS([w]).defaults["c"] == 0.2 and SPS([w], c=0.4).defaults["c"] == 0.4
    assert AdaSLS([w]).defaults["line_search"] == "armijo"


def test_betas_are_checked_in_the_half_open_unit_interval_naming_the_class():
    w = torch.zeros(2, requires_grad=True)
    AdaSLS([w], betas=(0.0, 0.0))  # [0, 1)
    first, second = r"The 'betas\[0\]' parameter of AdaSLS", r"The 'betas\[1\]' parameter of AdaSLS"
    for betas, which in [((1.0, 0.9), first), ((1.5, 0.9), first), ((0.9, 1.0), second)]:
        with pytest.raises(ValueError, match=which):
            AdaSLS([w], betas=betas)
    opt = AdaSLS([w])
    with pytest.raises(ValueError, match=first):
        opt.add_param_group({"params": [torch.zeros(1)], "betas": (2.0, 0.9)})
    state = opt.state_dict()
    state["param_groups"][0]["betas"] = (0.9, 2.0)
    with pytest.raises(ValueError, match=second):
        opt.load_state_dict(state)
    with pytest.raises(
        TypeError, match=r"^state_dict must be the dict of AdaSLS\.state_dict\(\); got a str\.$"
    ):
        opt.load_state_dict("state")


@pytest.mark.parametrize("lr", [True, math.inf, math.nan, -1.0])
def test_an_lr_set_after_construction_is_checked_at_the_step(lr):
    w = torch.zeros(2, requires_grad=True)
    opt = SLS([w])
    opt.param_groups[0]["lr"] = lr
    with pytest.raises((ValueError, TypeError), match=r"lr"):
        opt.step(_quadratic_closure(w, opt))


def test_disagreeing_groups_and_a_non_finite_loss_are_explained():
    w, v = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    opt = SLS([{"params": [w]}, {"params": [v], "c": 0.3}])
    with pytest.raises(ValueError, match=r"the step size is searched once for the whole model, so "
                       r"its settings must be the same in every group\.$"):  # fmt: skip
        opt.step(_quadratic_closure(w, opt))
    opt = SLS([w])
    message = (
        "The loss at the current point is not finite (nan); no step was taken and the "
        "parameters and optimizer state are unchanged. Check the data and the model for "
        "NaN/inf (or lower the maximum step lr)."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        opt.step(lambda: torch.tensor(math.nan, requires_grad=True))


@pytest.mark.parametrize(
    "dtype, eps",
    [
        (None, 2.0**-23),
        (torch.float64, 2.0**-52),
        (torch.float16, 2.0**-10),
        (torch.int64, 2.0**-52),
    ],
)
def test_the_searchs_rounding_slack_is_the_losss_epsilon(monkeypatch, dtype, eps):
    from solvers.torch.optim import _functional

    seen = []
    search_step = _functional.search_step
    monkeypatch.setattr(
        _functional, "search_step", lambda *a, **kw: seen.append(kw["eps"]) or search_step(*a, **kw)
    )
    w = torch.zeros(2, requires_grad=True)
    opt = SLS([w], lr=0.1)
    opt.step(_quadratic_closure(w, opt, dtype))
    assert seen == [eps]


def test_skipped_steps_are_counted():
    w = torch.zeros(2, requires_grad=True)
    opt = SLS([w], lr=0.0)
    for _ in range(3):
        opt.step(_quadratic_closure(w, opt))
    assert opt.totals["skipped"] == 3 and opt.totals["steps"] == 3


def test_the_old_rule_helper_gives_the_array_rule():
    from solvers.linesearch.config import make_step_rule
    from solvers.torch.line_search import _rule

    for name in ("armijo", "goldstein"):
        rule = _rule(name, 0.2, 0.5, 3.0, 7)
        ref = make_step_rule(name, c=0.2, beta_b=0.5, beta_f=3.0, max_backtracks=7)
        assert type(rule) is type(ref) and vars(rule) == vars(ref)
