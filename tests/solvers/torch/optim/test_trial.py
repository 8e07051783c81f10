# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch.optim.trial: trial forwards see the same function and touch nothing."""

import copy
import re
import weakref
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from solvers.torch.optim import SLS, TrialEvaluator
from solvers.torch.optim.trial import GradientWrites, call_with_gradients


def test_dropout_masks_are_identical_in_all_trials_and_rng_advances_once(mlp, data, make_closure):
    X, y = data()
    torch.manual_seed(0)
    model = mlp(dropout=0.5)
    # no Polyak cap and a huge first trial: several backtracks per step
    opt = SLS(model.parameters(), lr=1e4, polyak_init=False, beta_b=0.3, reset="max")
    masks = []
    dropout = next(m for m in model if isinstance(m, torch.nn.Dropout))
    h = dropout.register_forward_hook(lambda m, i, o: masks[-1].append((o == 0).clone()))
    for _ in range(2):
        masks.append([])
        start = torch.get_rng_state()
        opt.step(make_closure(model, opt, X, y))
        assert len(masks[-1]) == opt.last_step["forwards"] >= 3
        # the global generator moved exactly as much as one forward pass
        after = torch.get_rng_state()
        torch.set_rng_state(start)
        with torch.no_grad():
            model(X)
        assert torch.equal(torch.get_rng_state(), after)
    h.remove()
    for step_masks in masks:
        assert all(torch.equal(step_masks[0], m) for m in step_masks[1:])
    assert masks[0][0].float().mean() > 0.3  # dropout was active
    assert not torch.equal(masks[0][0], masks[1][0])  # a new mask at the next step


def test_batchnorm_buffers_change_once_per_step(mlp, data, make_closure):
    X, y = data()
    torch.manual_seed(0)
    model = mlp(batchnorm=True)
    reference = copy.deepcopy(model)
    opt = SLS(model.parameters(), lr=1e4, polyak_init=False, beta_b=0.3, reset="max")
    opt.step(make_closure(model, opt, X, y))
    assert opt.last_step["forwards"] >= 3
    bn = model[1]
    assert int(bn.num_batches_tracked) == 1
    with torch.no_grad():
        reference(X)  # one forward at the starting point
    assert torch.allclose(bn.running_mean, reference[1].running_mean)
    assert torch.allclose(bn.running_var, reference[1].running_var)


def test_an_exception_in_a_trial_restores_parameters_buffers_and_state(mlp, data, make_closure):
    X, y = data()
    torch.manual_seed(0)
    model = mlp(batchnorm=True)
    opt = SLS(model.parameters(), lr=1e4, polyak_init=False, reset="max")
    opt.step(make_closure(model, opt, X, y))
    params = [p.detach().clone() for p in model.parameters()]
    buffers = [b.clone() for b in model.buffers()]
    state = copy.deepcopy(opt.state_dict())
    calls = []

    class Interrupt(Exception):
        pass

    def boom(module, args, output):
        calls.append(1)
        if len(calls) == 3:  # inside the second trial, after BatchNorm ran
            raise Interrupt

    h = model[2].register_forward_hook(boom)
    with pytest.raises(Interrupt):
        opt.step(make_closure(model, opt, X, y))
    h.remove()
    assert all(torch.equal(a, b) for a, b in zip(params, model.parameters(), strict=True))
    # the first forward of the failed step updated BatchNorm once, the trials did not
    reference = copy.deepcopy(model)
    for b, b0 in zip(reference.buffers(), buffers, strict=True):
        b.copy_(b0)
    with torch.no_grad():
        reference(X)
    for b, r in zip(model.buffers(), reference.buffers(), strict=True):
        assert torch.equal(b, r)
    after = opt.state_dict()
    assert after["param_groups"] == state["param_groups"]
    for k, st in state["state"].items():
        for key, v in st.items():
            assert torch.equal(torch.as_tensor(after["state"][k][key]), torch.as_tensor(v))


def test_loss_keyword_path_forks_the_rng_for_trials(mlp, data, make_closure):
    X, y = data()
    torch.manual_seed(0)
    model = mlp(dropout=0.5)
    opt = SLS(model.parameters(), lr=1e4, polyak_init=False, beta_b=0.3, reset="max")
    masks = []
    dropout = model[3]
    h = dropout.register_forward_hook(lambda m, i, o: masks.append((o == 0).clone()))
    loss = torch.nn.functional.cross_entropy(model(X), y)
    loss.backward()
    start = torch.get_rng_state()
    masks.clear()
    opt.step(make_closure(model, opt, X, y), loss=loss)
    h.remove()
    assert len(masks) == opt.last_step["forwards"] - 1 >= 2
    assert all(torch.equal(masks[0], m) for m in masks[1:])
    assert torch.equal(torch.get_rng_state(), start)


def test_trials_leave_other_gradients_alone(mlp, data, make_closure):
    X, y = data()
    torch.manual_seed(0)
    model = mlp()
    head = list(model[-1].parameters())
    opt = SLS(head, lr=1e4, polyak_init=False, reset="max", beta_b=0.3)
    opt.step(make_closure(model, opt, X, y))  # the closure zeroes the whole model's gradients
    assert opt.last_step["forwards"] >= 3
    # the body's gradients are those of the first call at the starting point
    assert all(p.grad is not None for p in model[0].parameters())
    ref = copy.deepcopy(model)
    for p, q in zip(ref[-1].parameters(), opt.param_groups[0]["params"], strict=True):
        p.data.copy_(opt._origins[q])
    ref.zero_grad()
    torch.nn.functional.cross_entropy(ref(X), y).backward()
    for p, q in zip(model[0].parameters(), ref[0].parameters(), strict=True):
        assert torch.equal(p.grad, q.grad)


# -- the pieces, one at a time -----------------------------------------------------------------


class FakeRanks:
    """A process group of ``world`` ranks whose other ranks hold ``others`` (no backend)."""

    def __init__(self, monkeypatch, world, others=(), fail=None):
        import torch.distributed as dist

        self.world, self.others, self.fail, self.calls = world, list(others), fail, []
        monkeypatch.setattr(dist, "is_available", lambda: True)
        monkeypatch.setattr(dist, "is_initialized", lambda: True)
        monkeypatch.setattr(dist, "get_world_size", self.get_world_size)
        monkeypatch.setattr(dist, "all_reduce", self.all_reduce)

    def get_world_size(self, group=None):
        return self.world if group == "group" else 1

    def all_reduce(self, tensor, op=None, group=None):
        import torch.distributed as dist

        self.calls.append((tensor.clone(), op, group))
        if self.fail is not None:
            raise self.fail
        assert op == dist.ReduceOp.SUM
        tensor += sum(self.others)


def test_distributed_group_reads_the_world_size_of_the_given_group(monkeypatch):
    from solvers.torch.optim.trial import distributed_group

    assert distributed_group("group") == (None, 1)  # no process group initialised
    ranks = FakeRanks(monkeypatch, world=2)
    assert distributed_group("group") == ("group", 2)
    assert distributed_group("other") == (None, 1)  # a group of one rank: nothing to average
    ranks.world = 5
    assert distributed_group("group") == ("group", 5)


def test_average_over_ranks_is_the_mean_and_leaves_its_input(monkeypatch):
    from solvers.torch.optim.trial import average_over_ranks

    ranks = FakeRanks(monkeypatch, world=2, others=[torch.tensor(5.0, dtype=torch.float64)])
    value = torch.tensor(1.0, dtype=torch.float64)
    mean = average_over_ranks(value, "group", 2)
    assert mean.item() == 3.0 and value.item() == 1.0
    ((sent, _, group),) = ranks.calls
    assert sent.item() == 1.0 and group == "group"
    ranks.others = [torch.tensor(2.0), torch.tensor(6.0)]
    assert average_over_ranks(torch.tensor(1.0), "group", 3).item() == 3.0
    assert average_over_ranks(value, None, 1) is value and len(ranks.calls) == 2  # one rank


def test_a_failed_all_reduce_names_the_ranks_and_chains_the_backend_error(monkeypatch):
    from solvers.torch.optim.trial import average_over_ranks

    cause = RuntimeError("Connection closed by peer")
    FakeRanks(monkeypatch, world=4, fail=cause)
    message = (
        "Averaging the line search's loss over 4 ranks (torch.distributed.all_reduce) failed: "
        "another rank of the process group raised, exited or stalled past the group's "
        "timeout; no step was taken and the parameters are as before it. "
        "Backend error: Connection closed by peer"
    )
    with pytest.raises(RuntimeError, match=re.escape(message)) as info:
        average_over_ranks(torch.tensor(1.0), "group", 4)
    assert info.value.__cause__ is cause


def test_check_loss_accepts_one_number_and_names_what_it_got():
    from solvers.torch.optim.trial import check_loss

    for loss in (2, 1.5, np.float64(0.25), torch.tensor(3.0), torch.ones(1, 1)):
        assert check_loss(loss) is loss
    with pytest.raises(ValueError, match=r"^The closure returned None; it must return the loss\.$"):
        check_loss(None)
    message = (
        "The closure returned a tensor of shape (4, 2); the loss must be a scalar "
        "(reduce per-sample losses with .mean() or .sum())."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        check_loss(torch.zeros(4, 2))
    for bad, name in (("1.0", "str"), (True, "bool"), ([1.0], "list")):
        message = (
            f"The closure returned a {name}; the loss must be a real number or a "
            "one-element tensor."
        )
        with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
            check_loss(bad)
    with pytest.raises(ValueError, match=r"^step\(loss=\.\.\.\) got None"):
        check_loss(None, "step(loss=...) got")


def test_a_trial_returns_float64_keeps_the_gradients_and_runs_no_backward():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    calls = []

    def closure():
        calls.append(torch.is_grad_enabled())
        w.grad = None  # what zero_grad(set_to_none=True) does
        loss = (w**2).sum()
        loss.backward()
        return loss

    trial = TrialEvaluator([w], closure)  # one rank by default: no all-reduce
    first = trial.first()
    grad = w.grad
    assert torch.equal(grad, torch.tensor([2.0, -4.0]))
    with torch.no_grad():
        w.mul_(3.0)
    loss = trial()
    assert loss.dtype == torch.float64 and loss.item() == 45.0 and first.item() == 5.0
    assert w.grad is grad and torch.equal(grad, torch.tensor([2.0, -4.0]))
    assert calls == [True, False]


def test_trials_without_a_first_call_leave_the_rng_alone():
    w = torch.zeros(2, requires_grad=True)
    trial = TrialEvaluator([w], lambda: torch.rand(()))
    torch.manual_seed(3)
    a, b = trial(), trial()
    assert a != b  # nothing forked: the draws follow the global stream
    trial.finish()
    torch.manual_seed(3)
    assert torch.rand(()).item() == pytest.approx(a.item())


def test_finish_puts_back_the_rng_state_the_first_call_left():
    w = torch.zeros(2, requires_grad=True)
    sizes = iter([1, 3, 5])  # trials draw more than the first call

    def closure():
        return torch.rand(next(sizes))[0]

    torch.manual_seed(4)
    trial = TrialEvaluator([w], closure)
    first = trial.first()
    after_first = torch.get_rng_state()
    assert trial().item() == pytest.approx(first.item())  # the same draw
    assert trial().item() == pytest.approx(first.item())
    assert not torch.equal(torch.get_rng_state(), after_first)
    trial.finish()
    assert torch.equal(torch.get_rng_state(), after_first)


def test_the_rng_of_each_cuda_device_holding_parameters_is_forked(monkeypatch):
    # no GPU needed: the CUDA generators are stood in for, and the parameters only need a device
    states = {0: torch.tensor([10]), 1: torch.tensor([11]), 2: torch.tensor([12])}
    restored = []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda i: states[i].clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, i: restored.append((int(s), i)))
    params = [
        SimpleNamespace(device=torch.device("cuda", 2), grad=None, requires_grad=False),
        SimpleNamespace(
            device=torch.device("cuda"), grad=None, requires_grad=False
        ),  # index None: device 0
        SimpleNamespace(device=torch.device("cpu"), grad=None, requires_grad=False),
        SimpleNamespace(device=torch.device("cuda", 2), grad=None, requires_grad=False),
    ]

    def closure():
        if torch.is_grad_enabled():  # the first call draws on both devices
            states[0], states[2] = torch.tensor([20]), torch.tensor([22])
        return torch.tensor(1.0)

    trial = TrialEvaluator(params, closure)
    assert trial.cuda_devices == [0, 2]
    trial.first()
    trial()
    assert restored == [(10, 0), (12, 2)]
    trial.finish()
    assert restored[2:] == [(20, 0), (22, 2)]


def test_trial_losses_are_averaged_over_the_given_group(monkeypatch):
    ranks = FakeRanks(monkeypatch, world=2, others=[torch.tensor(3.0, dtype=torch.float64)])
    w = torch.zeros(1, requires_grad=True)
    trial = TrialEvaluator([w], lambda: torch.tensor(1.0), "group", 2)
    assert trial().item() == 2.0
    assert ranks.calls[0][2] == "group"


def _two_params():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    b = torch.nn.Parameter(torch.tensor(0.5))
    return w, b


def _loss(w, b):
    return ((w * 3.0 + b) ** 2).sum()


@pytest.mark.parametrize(
    ("action", "written"),
    [
        ("nothing", False),
        ("zero_grad to None", False),
        ("zero_grad in place", False),
        ("autograd.grad, no accumulation", False),
        ("backward", True),
        ("zero in place, then backward", True),
        ("backward into one parameter only", True),
        ("new .grad tensor assigned", True),
    ],
)
def test_gradient_writes_tell_backward_from_zeroing(action, written):
    w, b = _two_params()
    _loss(w, b).backward()  # a previous step's gradients
    old = w.grad
    with GradientWrites([w, b]) as writes:
        if action == "zero_grad to None":
            w.grad = b.grad = None
        elif action.startswith("zero") and "in place" in action:
            w.grad.zero_(), b.grad.zero_()
        if action == "autograd.grad, no accumulation":
            torch.autograd.grad(_loss(w, b), [w, b])
        elif action.endswith("backward"):
            _loss(w, b).backward()
        elif action == "backward into one parameter only":
            (w.sum() * 2).backward()
        elif action == "new .grad tensor assigned":
            w.grad = torch.ones(2)
    assert writes.written is written
    assert w.grad is None if action == "zero_grad to None" else w.grad is old or written
    assert not w._post_accumulate_grad_hooks and not b._post_accumulate_grad_hooks  # removed


def test_gradient_writes_keep_no_old_gradient_alive():
    w, _ = _two_params()
    w.grad = torch.ones(2)
    with GradientWrites([w]):
        ref = weakref.ref(w.grad)
        w.grad = None
        assert ref() is None  # the closure's zero_grad() frees the old gradient at once


@pytest.mark.parametrize("zero", [None, "to None", "in place"])
def test_call_with_gradients_leaves_exactly_the_loss_gradient(zero):
    """A closure that returns its loss without backward gets the loss's gradient (not the
    previous step's plus it, not the zeros of an in-place zeroing); one that runs backward and
    then clips in place keeps its clipped gradient (backward is not run again)."""
    w, b = _two_params()
    _loss(w, b).backward()
    _loss(w, b).backward()  # stale, doubled gradients
    expected = torch.autograd.grad(_loss(w, b), [w, b])

    def leaves_backward():
        if zero == "to None":
            w.grad = b.grad = None
        elif zero == "in place":
            w.grad.zero_(), b.grad.zero_()
        return _loss(w, b)

    loss = call_with_gradients(leaves_backward, [w, b])
    assert torch.equal(loss, _loss(w, b))
    assert torch.equal(w.grad, expected[0]) and torch.equal(b.grad, expected[1])

    def clips():
        w.grad = b.grad = None
        loss = _loss(w, b)
        loss.backward()
        w.grad.clamp_(-1.0, 1.0)
        return loss

    call_with_gradients(clips, [w, b])
    assert torch.equal(w.grad, expected[0].clamp(-1.0, 1.0))


def test_call_with_gradients_returns_numbers_and_detached_losses_as_they_are():
    w, b = _two_params()
    assert call_with_gradients(lambda k, *, scale: scale * k, [w, b], 2, scale=2.5) == 5.0
    detached = call_with_gradients(lambda: _loss(w, b).detach(), [w, b])
    assert torch.equal(detached, _loss(w, b).detach()) and w.grad is None


def test_a_closure_that_raises_propagates_and_leaves_no_hook():
    w, b = _two_params()

    def fails():
        _loss(w, b).backward()
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        call_with_gradients(fails, [w, b])
    assert not w._post_accumulate_grad_hooks and not b._post_accumulate_grad_hooks
