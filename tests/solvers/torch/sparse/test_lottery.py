# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch.sparse.lottery: iterative magnitude pruning with rewinding."""

import copy

import torch

from solvers.torch import LotteryTicket


def test_lottery_ticket_rounds_nest_and_rewind(mlp, data, train):
    model = mlp()
    init = copy.deepcopy(model.state_dict())
    ticket = LotteryTicket(model)
    X, y = data()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train(model, opt, X, y, 10)
    m1 = ticket.next_masks(0.2)
    total = sum(m.numel() for m in m1.values())
    assert sum(int(m.sum()) for m in m1.values()) == round(0.8 * total)
    ticket.rewind()
    for k, v in model.state_dict().items():
        expected = init[k] * m1[k] if k in m1 else init[k]
        assert torch.equal(v, expected)
    m2 = ticket.next_masks(0.5)
    assert all(not (m2[k] & ~m1[k]).any() for k in m1)
    assert sum(int(m.sum()) for m in m2.values()) == round(0.4 * total)
