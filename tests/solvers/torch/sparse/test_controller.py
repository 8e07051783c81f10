# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch.sparse.controller: the step hooks and StaticSparsity."""

import pytest
import torch

from solvers.torch import MaskedTraining, StaticSparsity


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


def test_bad_controller_input(mlp):
    model = mlp()
    with pytest.raises(TypeError, match=r"torch\.optim\.Optimizer"):
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
