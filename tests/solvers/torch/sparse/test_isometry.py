# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch.sparse.isometry: approximate and exact isometry of pruned weights."""

import torch

from solvers.torch import approximate_isometry_, magnitude_masks, orthogonalize_


def test_isometry_restoration(mlp):
    model = mlp(widths=(30,))
    masks = magnitude_masks(model, 0.5, scope="layer")
    a = (model[0].weight.detach() * masks["0.weight"]).T  # 20 x 40 -> its 20 x 20 Gram
    before = float(((a @ a.T - torch.eye(20)) ** 2).sum().sqrt())
    res = approximate_isometry_(model, masks, iterations=300, lr=1e-2)
    w = model[0].weight.detach()
    assert torch.all(w[~masks["0.weight"]] == 0)
    assert res["0.weight"] < before / 5
    dense = mlp(widths=(30,))
    orthogonalize_(dense)
    w = dense[0].weight.detach().double()  # 30 x 20: orthonormal columns
    torch.testing.assert_close(w.T @ w, torch.eye(20, dtype=torch.float64), atol=1e-5, rtol=0)
