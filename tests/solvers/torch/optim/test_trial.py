# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch.optim.trial: trial forwards see the same function and touch nothing."""

import copy

import pytest
import torch

from solvers.torch.optim import SLS


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
