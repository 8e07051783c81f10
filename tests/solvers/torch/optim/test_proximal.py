# SPDX-License-Identifier: BSD-3-Clause
"""Proximal: the reference update written out, equality with the regularised loss under SGD,
Adam and AdaSLS (closures, trial points), the schedules, checkpoints and bad input."""

import copy
import math

import pytest
import torch
from torch import nn

from solvers.torch import AdaSLS, Proximal


def make_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def make_data(n=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g, dtype=torch.float64), torch.randint(
        0, 3, (n,), generator=g
    )


def batch(X, y, k, size=8):
    i = (k * size) % len(X)
    return X[i : i + size], y[i : i + size]


def loss_fn(model, X, y):
    return nn.functional.cross_entropy(model(X), y)


OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2),
    "adasls": lambda p: AdaSLS(p, n_batches_per_epoch=8),
}


def run_hooked(kind, steps, lam, n, **kwargs):
    """The wrapper on the optimizer (closures for AdaSLS, backward-then-step otherwise)."""
    X, y = make_data()
    model = make_model()
    opt = OPTIMIZERS[kind](model.parameters())
    prox = Proximal(opt, lam=lam, anchor_every=n, **kwargs)
    for k in range(steps):
        xb, yb = batch(X, y, k)

        def closure():
            opt.zero_grad()
            loss = loss_fn(model, xb, yb)
            loss.backward()
            return loss

        if kind == "adasls":
            opt.step(closure)
        else:
            closure()
            opt.step()
    return model, opt, prox


def run_explicit(kind, steps, lam, n):
    """The same objective written into the loss: f_B(w) + lam |w - w~|^2, anchor every n steps."""
    X, y = make_data()
    model = make_model()
    opt = OPTIMIZERS[kind](model.parameters())
    anchors = None
    for k in range(steps):
        if k % n == 0:
            anchors = [p.detach().clone() for p in model.parameters()]
        xb, yb = batch(X, y, k)

        def closure():
            opt.zero_grad()
            reg = sum(
                ((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchors, strict=True)
            )
            loss = loss_fn(model, xb, yb) + lam * reg
            loss.backward()
            return loss

        if kind == "adasls":
            opt.step(closure)
        else:
            closure()
            opt.step()
    return model, opt


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_equals_the_regularised_loss(kind):
    """Gradient added in the pre-hook (SGD, Adam) or in the wrapped closure, whose value the
    line search compares at trial points (AdaSLS): the same iterates as adding the term to the
    loss."""
    a, opt_a, _ = run_hooked(kind, 23, lam=0.5, n=5)
    b, opt_b = run_explicit(kind, 23, lam=0.5, n=5)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)
    if kind == "adasls":
        assert opt_a.totals == opt_b.totals  # the same accepted steps and backtracks
        assert opt_a.totals["backtracks"] > 0


def test_the_reference_update_with_harmonic_decay_and_momentum():
    """TRSGD written out: g = grad + 2 lam (w - w~), momentum buffer, step lr / (k + 1)."""
    X, y = make_data()
    lam, n, lr, mom = 0.3, 4, 0.2, 0.9
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=mom)
    Proximal(opt, lam=lam, anchor_every=n, lr_decay="harmonic")
    ref = make_model()
    w = [p.detach().clone() for p in ref.parameters()]
    bufs = [None] * len(w)
    anchors = None
    for k in range(11):
        xb, yb = batch(X, y, k)
        opt.zero_grad()
        loss_fn(model, xb, yb).backward()
        opt.step()
        # the reference, by hand
        j = k % n
        if j == 0:
            anchors = [t.clone() for t in w]
        ref_params = list(ref.parameters())
        with torch.no_grad():
            for p, t in zip(ref_params, w, strict=True):
                p.copy_(t)
        ref.zero_grad()
        loss_fn(ref, xb, yb).backward()
        for i, p in enumerate(ref_params):
            g = p.grad + 2 * lam * (w[i] - anchors[i])
            bufs[i] = g.clone() if bufs[i] is None else bufs[i].mul(mom).add(g)
            w[i] = w[i] - lr / (j + 1) * bufs[i]
        assert opt.param_groups[0]["lr"] == lr  # the scheduler's lr is back after each step
    for p, t in zip(model.parameters(), w, strict=True):
        torch.testing.assert_close(p.detach(), t, rtol=1e-12, atol=1e-14)


def test_harmonic_steps_and_the_mean_step_factor():
    """A linear loss <c, w>: step k of a cycle moves w by exactly lr / (k + 1) * c (lam = 0)."""
    w = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    c = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    opt = torch.optim.SGD([w], lr=0.6)
    Proximal(opt, lam=0.0, anchor_every=4, lr_decay="harmonic")
    moves = []
    for _ in range(8):
        before = w.detach().clone()
        opt.zero_grad()
        (c * w).sum().backward()
        opt.step()
        moves.append(float(((before - w.detach()) / c).mean()))
    expected = [0.6 / (k % 4 + 1) for k in range(8)]
    assert moves == pytest.approx(expected, rel=1e-12)
    assert Proximal.mean_step_factor(4) == pytest.approx(sum(expected) / 8 / 0.6)
    assert Proximal.mean_step_factor(10) == pytest.approx(0.2928968, abs=1e-7)
    assert Proximal.mean_step_factor(10, "none") == 1.0


def test_lam_follows_the_learning_rate_decay():
    X, y = make_data()
    model = make_model()
    groups = [
        {"params": model[0].parameters(), "lr": 0.1},
        {"params": model[2].parameters(), "lr": 0.05},
    ]
    opt = torch.optim.SGD(groups, lr=0.1)
    prox = Proximal(opt, lam=0.1, anchor_every=3, lam_schedule="inverse_lr")
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.1)
    assert prox.group_lams() == pytest.approx([0.1, 0.1])
    for k in range(9):
        opt.zero_grad()
        loss_fn(model, *batch(X, y, k)).backward()
        opt.step()
        sched.step()
    assert prox.group_lams() == pytest.approx([10.0, 10.0])  # two 10x decays: lam 0.1 -> 10
    assert Proximal(opt, lam=0.1, lam_schedule="constant").group_lams() == [0.1, 0.1]


def test_anchor_every_one_is_the_plain_optimizer_bit_for_bit():
    a, _, prox = run_hooked("sgd", 9, lam=3.0, n=1)
    b, _ = run_explicit("sgd", 0, lam=0.0, n=1)
    X, y = make_data()
    opt = OPTIMIZERS["sgd"](b.parameters())
    for k in range(9):
        opt.zero_grad()
        loss_fn(b, *batch(X, y, k)).backward()
        opt.step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert prox.step_count == 9


def test_closure_without_backward_gets_the_loss_gradient_too():
    """A closure that leaves backward to the line search: the wrapper runs it, then adds."""
    X, y = make_data()
    out = []
    for backward in (True, False):
        model = make_model()
        opt = AdaSLS(model.parameters(), n_batches_per_epoch=8)
        Proximal(opt, lam=0.5, anchor_every=3)
        for k in range(7):
            xb, yb = batch(X, y, k)

            def closure(backward=backward):
                opt.zero_grad()
                loss = loss_fn(model, xb, yb)
                if backward:
                    loss.backward()
                return loss

            opt.step(closure)
        out.append([p.detach().clone() for p in model.parameters()])
    for p, q in zip(*out, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def test_state_dict_resumes_bit_for_bit():
    X, y = make_data()

    def build(seed):
        model = make_model(seed)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        prox = Proximal(
            opt, lam=0.2, anchor_every=4, lr_decay="harmonic", lam_schedule="inverse_lr"
        )
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
        return model, opt, prox, sched

    def steps(model, opt, sched, first, count):
        for k in range(first, first + count):
            opt.zero_grad()
            loss_fn(model, *batch(X, y, k)).backward()
            opt.step()
            sched.step()

    model, opt, prox, sched = build(0)
    steps(model, opt, sched, 0, 14)
    model2, opt2, prox2, sched2 = build(0)
    steps(model2, opt2, sched2, 0, 6)  # mid-cycle: the anchor matters
    ckpt = copy.deepcopy(
        {"m": model2.state_dict(), "o": opt2.state_dict(), "p": prox2.state_dict(),
         "s": sched2.state_dict()}
    )  # fmt: skip
    model3, opt3, prox3, sched3 = build(5)
    model3.load_state_dict(ckpt["m"])
    opt3.load_state_dict(ckpt["o"])
    prox3.load_state_dict(ckpt["p"])
    sched3.load_state_dict(ckpt["s"])
    steps(model3, opt3, sched3, 6, 8)
    for p, q in zip(model.parameters(), model3.parameters(), strict=True):
        assert torch.equal(p, q)
    assert prox3.step_count == prox.step_count == 14
    assert all(torch.equal(a, b) for a, b in zip(prox.anchors, prox3.anchors, strict=True))
    assert opt3.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"anchor_every": 0}, "anchor_every"),
        ({"anchor_every": 2.5}, "anchor_every"),
        ({"lam": -0.1}, "lam"),
        ({"lam": math.nan}, "lam"),
        ({"lam": math.inf}, "lam"),
        ({"lam_schedule": "cosine"}, "lam_schedule"),
        ({"lr_decay": "linear"}, "lr_decay"),
    ],
)
def test_bad_settings_name_the_argument_and_attach_nothing(kwargs, name):
    opt = torch.optim.SGD(make_model().parameters(), lr=0.1)
    with pytest.raises(ValueError, match=repr(name)):
        Proximal(opt, **kwargs)
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
    with pytest.raises(TypeError, match="optimizer"):
        Proximal(make_model())


def test_bad_state_dict_changes_nothing():
    _, _, prox = run_hooked("sgd", 3, lam=0.1, n=2)
    good = copy.deepcopy(prox.state_dict())
    shapes = copy.deepcopy(good)
    shapes["anchors"][0] = torch.zeros(2)
    short = {**good, "anchors": good["anchors"][:-1]}
    for bad in (shapes, short, {"step_count": 1}, {**good, "step_count": -1}, "x",
                {**good, "initial_lrs": [0.1, 0.2]}):  # fmt: skip
        with pytest.raises(ValueError):
            prox.load_state_dict(bad)
        assert prox.step_count == good["step_count"]
        assert all(torch.equal(a, b) for a, b in zip(prox.anchors, good["anchors"], strict=True))


def test_a_group_added_after_attaching_is_refused_before_the_step():
    model = make_model()
    opt = torch.optim.SGD(model[0].parameters(), lr=0.1)
    Proximal(opt, lam=0.1)
    opt.add_param_group({"params": model[2].parameters()})
    before = [p.detach().clone() for p in model.parameters()]
    loss_fn(model, *make_data()).backward()
    with pytest.raises(RuntimeError, match="parameter groups"):
        opt.step()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))


def test_a_step_that_raises_gets_its_lr_back_at_the_next_step():
    model = make_model()
    X, y = make_data()
    opt = AdaSLS(model.parameters(), lr=1.0, n_batches_per_epoch=8)
    prox = Proximal(opt, lam=0.1, anchor_every=4, lr_decay="harmonic")
    for k in range(2):
        xb, yb = batch(X, y, k)

        def closure():
            opt.zero_grad()
            loss = loss_fn(model, xb, yb)
            loss.backward()
            return loss

        opt.step(closure)

    def nan_closure():
        opt.zero_grad()
        loss = loss_fn(model, X[:8], y[:8]) * math.nan
        loss.backward()
        return loss

    with pytest.raises(ValueError, match="not finite"):
        opt.step(nan_closure)
    assert opt.param_groups[0]["lr"] == pytest.approx(1.0 / 3)  # scaled for the failed step
    prox.remove()
    assert opt.param_groups[0]["lr"] == 1.0
    assert prox.step_count == 2


@pytest.mark.gpu
def test_hooks_on_cuda_never_wait_for_the_device():
    model = make_model().cuda()
    X, y = (t.cuda() for t in make_data())
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    Proximal(opt, lam=0.1, anchor_every=3, lam_schedule="inverse_lr", lr_decay="harmonic")
    opt.zero_grad()
    loss_fn(model, X, y).backward()
    opt.step()  # warm-up (lazy state creation)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for k in range(5):
            opt.zero_grad()
            loss_fn(model, *batch(X, y, k)).backward()
            opt.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_defaults_are_the_reference_settings():
    """TRSGD's lam = 0.1 and anchor every 10 steps; mean_step_factor's default is harmonic."""
    prox = Proximal(torch.optim.SGD(make_model().parameters(), lr=0.1))
    assert (prox.lam, prox.anchor_every) == (0.1, 10)
    assert Proximal.mean_step_factor(3) == pytest.approx((1 + 1 / 2 + 1 / 3) / 3, rel=1e-15)


def _sgd_closure_run(lam, n, steps, groups, *, as_float=False, keyword=False, **kwargs):
    """SGD driven through ``step(closure)``: the returned losses and the final weights."""
    X, y = make_data()
    model = make_model()
    opt = torch.optim.SGD(groups(model), lr=0.1)
    prox = Proximal(opt, lam=lam, anchor_every=n, **kwargs)
    returned = []
    for k in range(steps):
        xb, yb = batch(X, y, k)

        def closure():
            opt.zero_grad()
            loss = loss_fn(model, xb, yb)
            loss.backward()
            return loss.item() if as_float else loss

        returned.append(opt.step(closure=closure) if keyword else opt.step(closure))
    return model, prox, returned


def _groups(model):
    """Four groups of 2, 1, 0 and 1 parameters (an empty one too), at two learning rates."""
    return [
        {"params": model[0].parameters()},
        {"params": [model[2].weight], "lr": 0.05},
        {"params": []},
        {"params": [model[2].bias]},
    ]


@pytest.mark.parametrize(("as_float", "keyword"), [(False, False), (True, False), (False, True)])
def test_a_closure_returns_the_regularised_loss_and_steps_on_its_gradient(as_float, keyword):
    """Four groups, SGD through a closure (positional or keyword, tensor or float loss): each
    returned value is f_B(w) + lam |w - w~|^2 and the iterates are those of the written-out
    objective."""
    lam, n, steps = 0.4, 3, 7
    model, _, returned = _sgd_closure_run(
        lam, n, steps, _groups, as_float=as_float, keyword=keyword
    )
    X, y = make_data()
    ref = make_model()
    opt = torch.optim.SGD(_groups(ref), lr=0.1)
    expected = []
    for k in range(steps):
        if k % n == 0:
            anchors = [p.detach().clone() for p in ref.parameters()]
        opt.zero_grad()
        reg = sum(((p - a) ** 2).sum() for p, a in zip(ref.parameters(), anchors, strict=True))
        loss = loss_fn(ref, *batch(X, y, k)) + lam * reg
        loss.backward()
        expected.append(loss.item())
        opt.step()
    assert [float(v) if as_float else v.item() for v in returned] == pytest.approx(
        expected, rel=1e-6
    )
    assert isinstance(returned[-1], float) == as_float
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)


def test_penalty_is_the_sum_over_groups_of_lam_times_the_squared_distance():
    """With ``inverse_lr`` and a harmonic step the closure's value uses the scheduler's lr, not
    the decayed one; ``penalty()`` adds every group (a group at lr = 0 gets lam = 0)."""
    model, prox, returned = _sgd_closure_run(
        0.3, 4, 3, _groups, lam_schedule="inverse_lr", lr_decay="harmonic"
    )
    params = list(model.parameters())
    dist = [float(((p.detach() - a) ** 2).sum()) for p, a in zip(params, prox.anchors, strict=True)]
    assert dist[0] > 0 and dist[-1] > 0
    assert float(prox.penalty()) == pytest.approx(0.3 * sum(dist), rel=1e-6)
    assert float(prox.penalty([0.0, 0.5, 0.5, 0.0])) == pytest.approx(0.5 * dist[2], rel=1e-6)
    assert float(prox.penalty([0.0, 0.0, 0.5, 0.5])) == pytest.approx(0.5 * dist[3], rel=1e-6)
    assert prox.penalty([0.0] * 4).shape == ()
    # the third step's value: lam (not lam * (k + 1)) at the harmonic step k = 2
    X, y = make_data()
    ref = make_model()
    ref_opt = torch.optim.SGD(_groups(ref), lr=0.1)
    base = [g["lr"] for g in ref_opt.param_groups]
    for k in range(3):
        ref_opt.zero_grad()
        reg = sum(((p - a) ** 2).sum() for p, a in zip(ref.parameters(), prox.anchors, strict=True))
        loss = loss_fn(ref, *batch(X, y, k)) + 0.3 * reg
        loss.backward()
        for g, lr in zip(ref_opt.param_groups, base, strict=True):
            g["lr"] = lr / (k + 1)
        ref_opt.step()
    assert float(returned[2]) == pytest.approx(loss.item(), rel=1e-6)
    # a group at lr = 0 under inverse_lr gets no term
    opt = torch.optim.SGD(
        [{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.0}], lr=0.1
    )
    assert Proximal(opt, lam=0.2, lam_schedule="inverse_lr").group_lams() == pytest.approx(
        [0.2, 0.0]
    )


def test_constant_lam_ignores_the_learning_rate():
    opt = torch.optim.SGD(make_model().parameters(), lr=torch.tensor(0.1))  # a tensor lr too
    prox = Proximal(opt, lam=0.3)
    opt.param_groups[0]["lr"] = torch.tensor(0.01)
    assert prox.group_lams() == [0.3]
    assert Proximal(opt, lam=0.3, lam_schedule="inverse_lr").initial_lrs == pytest.approx([0.01])


def test_frozen_and_gradient_free_parameters_are_left_out():
    """A frozen first layer (no .grad, a group of its own) changes nothing for the others: the
    same iterates as the written-out objective on the trained layer, through a closure too."""
    X, y = make_data()
    out = []
    for hooked in (True, False):
        model = make_model()
        model[0].requires_grad_(False)
        opt = torch.optim.SGD(
            [{"params": model[0].parameters()}, {"params": model[2].parameters()}], lr=0.1
        )
        if hooked:
            Proximal(opt, lam=0.5, anchor_every=3)
        anchors = None
        for k in range(5):
            if k % 3 == 0:
                anchors = [p.detach().clone() for p in model[2].parameters()]

            def closure(k=k, anchors=anchors, model=model, opt=opt, hooked=hooked):
                opt.zero_grad()
                loss = loss_fn(model, *batch(X, y, k))
                if not hooked:
                    loss = loss + 0.5 * sum(
                        ((p - a) ** 2).sum()
                        for p, a in zip(model[2].parameters(), anchors, strict=True)
                    )
                loss.backward()
                return loss

            if k % 2:
                opt.step(closure)
            else:
                closure()
                opt.step()
        out.append([p.detach().clone() for p in model.parameters()])
    for p, q in zip(*out, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "mode",
    [
        "zero_in_place_then_backward",
        "no_zero_grad_no_backward",
        "zero_in_place_no_backward",
    ],
)
def test_closures_on_gradients_that_are_kept(mode):
    """.grad tensors that outlive a step: a closure that zeroes them in place and runs backward,
    one that leaves both to the wrapper (the previous step's gradients are replaced, not
    accumulated into), and one that zeroes in place and leaves backward: the iterates of the
    written-out objective under AdaSLS; the loss gradient neither doubled nor missing."""
    X, y = make_data()
    out = []
    for hooked in (True, False):
        model = make_model()
        opt = AdaSLS(model.parameters(), n_batches_per_epoch=8)
        if hooked:
            Proximal(opt, lam=0.5, anchor_every=3)
        anchors = None
        for k in range(5):
            if k % 3 == 0:
                anchors = [p.detach().clone() for p in model.parameters()]

            def closure(k=k, anchors=anchors, model=model, opt=opt, hooked=hooked):
                if hooked and mode == "no_zero_grad_no_backward":
                    return loss_fn(model, *batch(X, y, k))
                opt.zero_grad(set_to_none=False)
                loss = loss_fn(model, *batch(X, y, k))
                if not hooked:
                    loss = loss + 0.5 * sum(
                        ((p - a) ** 2).sum()
                        for p, a in zip(model.parameters(), anchors, strict=True)
                    )
                    loss.backward()
                elif mode == "zero_in_place_then_backward":
                    loss.backward()
                return loss

            opt.step(closure)
        out.append([p.detach().clone() for p in model.parameters()])
    for p, q in zip(*out, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def test_gradscaler_with_a_fused_optimizer():
    """Fused SGD unscales inside its kernel: the term is added at the loss scale (same iterates
    as the unscaled written-out objective), and a step GradScaler skips (inf gradients) neither
    counts nor moves the anchor."""
    X, y = make_data()
    out = []
    for hooked in (True, False):
        model = make_model()
        opt = torch.optim.SGD(_groups(model), lr=0.1, fused=True)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
        prox = Proximal(opt, lam=0.3, anchor_every=3) if hooked else None
        anchors = None
        for k in range(5):
            if k % 3 == 0:
                anchors = [p.detach().clone() for p in model.parameters()]
            opt.zero_grad()
            loss = loss_fn(model, *batch(X, y, k))
            if not hooked:
                reg = sum(
                    ((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchors, strict=True)
                )
                loss = loss + 0.3 * reg
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        out.append([p.detach().clone() for p in model.parameters()])
        if hooked:
            assert prox.step_count == 5
            anchors_before = [a.clone() for a in prox.anchors]
            before = [p.detach().clone() for p in model.parameters()]
            opt.zero_grad()
            scaler.scale(loss_fn(model, *batch(X, y, 5)) * math.inf).backward()
            scaler.step(opt)
            assert prox.step_count == 5
            assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))
            opt.zero_grad()
            scaler.update()
            scaler.scale(loss_fn(model, *batch(X, y, 6))).backward()
            scaler.step(opt)  # k = 5 of the count: not a cycle start, the anchor stays
            assert prox.step_count == 6
            assert all(torch.equal(a, b) for a, b in zip(prox.anchors, anchors_before, strict=True))
    for p, q in zip(*out, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)


def test_error_messages_name_what_is_wrong():
    model = make_model()
    opt = torch.optim.SGD(model[0].parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"of Proximal must be"):
        Proximal(opt, lam=-1.0)
    with pytest.raises(TypeError, match="got Sequential"):
        Proximal(model)
    prox = Proximal(opt, lam=0.1)
    good = prox.state_dict()
    a0, a1 = good["anchors"]
    cases = [
        ("x", r"must be a dict; got str"),
        ({"step_count": 1}, r"lacks \['anchors', 'initial_lrs'\]"),
        ({**good, "step_count": True}, r"step_count must be an int >= 0; got True"),
        ({**good, "anchors": [a0]}, r"anchors hold 1 tensors; the optimizer has 2 parameters"),
        ({**good, "anchors": {"a": 1}}, r"anchors hold dict tensors"),
        ({**good, "anchors": [a0, [0.0]]}, r"anchors\[1\] has shape list; expected \(8,\)"),
        ({**good, "anchors": [torch.zeros(2), a1]}, r"anchors\[0\] has shape \(2,\); expected"),
        ({**good, "initial_lrs": [0.1, 0.2]}, r"per parameter group \(1\); got \[0.1, 0.2\]"),
    ]  # fmt: skip
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            prox.load_state_dict(bad)
    prox.load_state_dict({**good, "step_count": 0})  # 0 is a valid count
    assert prox.step_count == 0
    opt.add_param_group({"params": model[2].parameters()})
    with pytest.raises(RuntimeError, match="attach Proximal after add_param_group"):
        opt.step()
    prox.remove()
    prox.remove()  # twice is harmless
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks


def test_a_closure_keeps_the_dtype_of_its_loss():
    """A bfloat16 loss (autocast) plus the float32 penalty is still bfloat16."""
    model = make_model().float()
    X, y = (t.float() if t.is_floating_point() else t for t in make_data())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    Proximal(opt, lam=0.5, anchor_every=3)
    for k in range(2):

        def closure(k=k):
            opt.zero_grad()
            loss = loss_fn(model, *batch(X, y, k))
            loss.backward()
            return loss.to(torch.bfloat16)

        assert opt.step(closure).dtype == torch.bfloat16
