# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch.sparse.optimizer_state: masking an optimizer's element-wise state."""

import pytest
import torch

from solvers.torch.sparse.optimizer_state import ZERO_PRESERVING, zero_optimizer_state_

#: the options of each zero-preserving optimizer that add state or decay to its step
OPTIONS = {
    torch.optim.SGD: {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-2},
    torch.optim.Adam: {"lr": 0.1, "amsgrad": True, "weight_decay": 1e-2},
    torch.optim.AdamW: {"lr": 0.1, "amsgrad": True, "weight_decay": 1e-1},
    torch.optim.Adagrad: {"lr": 0.1, "weight_decay": 1e-2},
    torch.optim.Adamax: {"lr": 0.1, "weight_decay": 1e-2},
    torch.optim.NAdam: {"lr": 0.1, "weight_decay": 1e-2, "decoupled_weight_decay": True},
    torch.optim.RAdam: {"lr": 0.1, "weight_decay": 1e-2},
    torch.optim.RMSprop: {"lr": 0.01, "momentum": 0.9, "centered": True, "weight_decay": 1e-2},
}


def _step(param, opt, keep, generator):
    opt.zero_grad()
    (param * torch.randn(param.shape, generator=generator)).sum().backward()
    param.grad.mul_(keep)  # what the controller's pre-hook does
    opt.step()


def test_every_optimizer_listed_is_covered():
    assert set(OPTIONS) == set(ZERO_PRESERVING)


@pytest.mark.parametrize("kind", ZERO_PRESERVING, ids=lambda k: k.__name__)
def test_zero_preserving_optimizers_leave_a_zeroed_weight_at_zero(kind):
    # after a few dense steps (state everywhere), zero the value, the gradient and the
    # state of some weights: the listed optimizers' steps must leave them exactly 0
    g = torch.Generator().manual_seed(0)
    param = torch.nn.Parameter(torch.randn(6, 5, generator=g))
    opt = kind([param], **OPTIONS[kind])
    dense = torch.ones(6, 5, dtype=torch.bool)
    for _ in range(3):
        _step(param, opt, dense, g)
    keep = torch.rand(6, 5, generator=g) < 0.5
    with torch.no_grad():
        param.mul_(keep)
    zero_optimizer_state_(opt, param, keep)
    for _ in range(4):
        _step(param, opt, keep, g)
    assert torch.all(param[~keep] == 0)
    assert torch.all(param[keep] != 0)


def test_every_element_wise_state_is_masked_and_the_rest_left_alone():
    g = torch.Generator().manual_seed(1)
    param = torch.nn.Parameter(torch.randn(4, 3, generator=g))
    opt = torch.optim.Adam([param], lr=0.1, amsgrad=True)
    for _ in range(2):
        _step(param, opt, torch.ones(4, 3, dtype=torch.bool), g)
    state = opt.state[param]
    state["visits"] = torch.ones(4, 3, dtype=torch.int64)  # not a float: not a moment
    state["row_scale"] = torch.ones(3)  # another shape: not element-wise
    state["note"] = "kept"
    before = {k: v.clone() if torch.is_tensor(v) else v for k, v in state.items()}
    keep = torch.rand(4, 3, generator=g) < 0.5
    zero_optimizer_state_(opt, param, keep)
    for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
        assert torch.equal(state[key], before[key] * keep), key
        assert torch.all(before[key][~keep] != 0), f"{key}: the test zeroes nothing"
    for key in ("step", "visits", "row_scale"):
        assert torch.equal(state[key], before[key]), key
    assert state["note"] == "kept"


def test_low_precision_state_is_masked_in_its_own_dtype():
    param = torch.nn.Parameter(torch.ones(2, 3, dtype=torch.bfloat16))
    opt = torch.optim.SGD([param], lr=0.1, momentum=0.9)
    buf = torch.full((2, 3), 3.0, dtype=torch.bfloat16)
    opt.state[param]["momentum_buffer"] = buf
    keep = torch.tensor([[True, False, True], [False, True, False]])
    zero_optimizer_state_(opt, param, keep)
    assert buf.dtype == torch.bfloat16
    assert torch.equal(buf, 3.0 * keep.to(torch.bfloat16))


def test_a_weight_without_state_gets_none():
    # before the first step (or for a weight the optimizer has not stepped yet)
    param = torch.nn.Parameter(torch.ones(2, 2))
    opt = torch.optim.Adam([param], lr=0.1)
    before = opt.state_dict()
    zero_optimizer_state_(opt, param, torch.zeros(2, 2, dtype=torch.bool))
    assert param not in opt.state
    assert opt.state_dict() == before
