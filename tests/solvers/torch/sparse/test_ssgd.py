# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch.sparse.ssgd: the normalised affine scaling."""

import pytest
import torch
from torch import nn

from solvers.torch import SSGD
from solvers.torch.sparse.densities import active_count, layer_densities


@pytest.mark.parametrize("reweighting", ["l2", "l1"])
def test_ssgd_transform_is_the_normalised_affine_scaling(reweighting, mlp, data):
    model = mlp(widths=(10,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    SSGD(model, opt, lam=1e-3, eps=1e-4, reweighting=reweighting)
    X, y = data()
    opt.zero_grad()
    nn.functional.cross_entropy(model(X), y).backward()
    w = model[0].weight.detach().clone()
    g = model[0].weight.grad.clone()
    b_grad = model[0].bias.grad.clone()
    opt.step()
    if reweighting == "l2":
        w2, dg = w * w + 1e-4, 2 * w / (w * w + 1e-4)
    else:
        w2, dg = (w.abs() + 1e-4) ** 2, torch.sign(w) / (w.abs() + 1e-4)
    s = w2 / w2.mean()
    torch.testing.assert_close(model[0].weight.grad, s * (g + 1e-3 * dg))
    torch.testing.assert_close(model[0].bias.grad, b_grad)  # biases are not scaled
    with pytest.raises(ValueError, match="reweighting"):
        SSGD(model, opt, reweighting="l0")


@pytest.mark.parametrize("reweighting", ["l2", "l1"])
def test_ssgd_under_grad_scaler_with_a_fused_optimizer_matches_the_unscaled_step(
    reweighting, mlp, data, steps_with_scaler
):
    # a fused optimizer unscales in its kernel: the penalty must be scaled like the gradient
    X, y = data()
    params = []
    for fused, scaler in ((False, None), (True, torch.amp.GradScaler("cpu", init_scale=2.0**10))):
        model = mlp(widths=(10,))
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, fused=fused)
        SSGD(model, opt, lam=1e-2, eps=1e-4, reweighting=reweighting)
        steps_with_scaler(model, opt, X, y, 3, scaler)
        params.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    torch.testing.assert_close(params[1], params[0])


def transformed(model, ssgd_kwargs, grads):
    """The gradients SSGD leaves for an SGD step (lr = 0) from the given ``.grad`` values."""
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    SSGD(model, opt, **ssgd_kwargs)
    for p, g in zip(model.parameters(), grads, strict=True):
        p.grad = None if g is None else g.clone()
    opt.step()
    return [None if p.grad is None else p.grad.clone() for p in model.parameters()]


def test_defaults_are_the_l2_log_sum_with_lam_1e_5_and_eps_1e_4():
    torch.manual_seed(0)
    model = nn.Linear(6, 4)
    w = model.weight.detach().clone()
    w2 = w * w + 1e-4  # the l2 scaling theta^2 + eps
    # a zero loss gradient leaves the penalty alone: s * lam * 2 theta / (theta^2 + eps)
    g, b = transformed(model, {}, [torch.zeros(4, 6), torch.zeros(4)])
    torch.testing.assert_close(g, 2e-5 * w / w2.mean(), rtol=1e-6, atol=0)
    assert torch.equal(b, torch.zeros(4))
    g, _ = transformed(model, {}, [torch.ones(4, 6), torch.zeros(4)])
    torch.testing.assert_close(g, (w2 + 2e-5 * w) / w2.mean(), rtol=1e-6, atol=0)


def test_a_layer_without_gradient_is_skipped_and_the_next_one_still_scaled(mlp):
    model = mlp(widths=(10,))  # 0.weight (10 x 20), 2.weight (3 x 10)
    w = model[2].weight.detach().clone()
    g = torch.linspace(-1, 1, 30).reshape(3, 10)
    grads = [None, None, g, torch.zeros(3)]
    out = transformed(model, {"lam": 1e-3, "reweighting": "l1"}, grads)
    w2 = (w.abs() + 1e-4) ** 2
    expected = (w2 * g + 1e-3 * torch.sign(w) * (w.abs() + 1e-4)) / w2.mean()
    assert out[0] is None
    torch.testing.assert_close(out[2], expected)


def test_layer_selection_decides_which_gradients_are_scaled(mlp):
    # mlp(): 0.weight (40 x 20), 2.weight (30 x 40), 4.weight (3 x 30)
    model = mlp()
    grads = [torch.ones_like(p) for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    ssgd = SSGD(model, opt, lam=1e-3, exclude=r"^0\.", min_numel=91)
    assert list(ssgd.params) == ["2.weight"]
    for p, g in zip(model.parameters(), grads, strict=True):
        p.grad = g.clone()
    opt.step()
    names = [k for k, _ in model.named_parameters()]
    for k, p in zip(names, model.parameters(), strict=True):
        assert torch.equal(p.grad, torch.ones_like(p)) == (k != "2.weight"), k


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lam": -1e-3}, "'lam' parameter of SSGD"),
        ({"eps": 0.0}, "'eps' parameter of SSGD"),
        ({"reweighting": "l0"}, "'reweighting' parameter of SSGD"),
    ],
)
def test_invalid_arguments_are_named_and_attach_nothing(kwargs, message, mlp):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=message):
        SSGD(model, opt, **kwargs)
    assert not opt._optimizer_step_pre_hooks


def test_a_weight_outside_the_optimizer_is_named(mlp):
    model = mlp()
    opt = torch.optim.SGD([*model[0].parameters(), *model[4].parameters()], lr=0.1)
    with pytest.raises(ValueError, match=r"'2\.weight' is not optimised by the optimizer"):
        SSGD(model, opt)
    assert not opt._optimizer_step_pre_hooks


def test_prune_masks_keep_the_largest_magnitudes(mlp):
    model = mlp()
    ssgd = SSGD(model, torch.optim.SGD(model.parameters(), lr=0.1))
    w = {k: p.detach().abs() for k, p in ssgd.params.items()}
    masks = ssgd.prune_masks(0.1)  # default: one threshold over all layers
    flat = torch.cat([v.reshape(-1) for v in w.values()])
    threshold = flat.sort(descending=True).values[active_count(flat.numel(), 0.1) - 1]
    for k, m in masks.items():
        assert torch.equal(m, w[k] >= threshold), k
    counts = {k: int(m.sum()) for k, m in ssgd.prune_masks(0.1, scope="layer").items()}
    assert counts == {k: active_count(v.numel(), 0.1) for k, v in w.items()}  # uniform
    shapes = {k: tuple(v.shape) for k, v in w.items()}
    erk = layer_densities(shapes, 0.1, "erk")
    masks = ssgd.prune_masks(0.1, scope="layer", distribution="erk")
    assert {k: int(m.sum()) for k, m in masks.items()} == {
        k: active_count(v.numel(), erk[k]) for k, v in w.items()
    }
    assert erk != dict.fromkeys(erk, 0.1)
