# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch.sparse.ssgd: the normalised affine scaling."""

import pytest
import torch
from torch import nn

from solvers.torch import SSGD


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
