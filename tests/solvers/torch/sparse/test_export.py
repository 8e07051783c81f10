# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch.sparse.export: dense, CSR and torch.nn.utils.prune copies."""

import copy

import pytest
import torch

from solvers.torch import (
    StaticSparsity,
    export_dense,
    export_sparse,
    from_torch_prune,
    to_torch_prune,
)


def test_exports_compute_the_masked_function(mlp, data, train):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    sparse = StaticSparsity(model, opt, 0.1)
    X, y = data()
    train(model, opt, X, y, 5)
    ref = model(X)
    plain = export_dense(model, sparse)
    torch.testing.assert_close(plain(X), ref)
    csr = export_sparse(model, sparse)
    assert type(csr[0]).__name__ == "SparseLinear"
    assert csr[0].weight.layout == torch.sparse_csr
    assert csr[0].weight._nnz() == int(sparse.masks["0.weight"].sum())
    torch.testing.assert_close(csr(X), ref, atol=1e-5, rtol=1e-5)
    pruned = to_torch_prune(copy.deepcopy(model), sparse.masks)
    assert hasattr(pruned[0], "weight_orig") and hasattr(pruned[0], "weight_mask")
    torch.testing.assert_close(pruned(X), ref)
    back = from_torch_prune(pruned)
    for k, m in sparse.masks.items():
        assert torch.equal(back[k], m)
    with pytest.raises(ValueError, match=r"no torch\.nn\.utils\.prune"):
        from_torch_prune(mlp())


@pytest.mark.parametrize("export", [export_dense, export_sparse, to_torch_prune])
def test_masks_that_do_not_fit_the_model_are_refused_before_any_change(export, mlp):
    model = mlp()
    before = copy.deepcopy(model.state_dict())
    name, weight = next((k, p) for k, p in model.named_parameters() if k.endswith("weight"))
    good = torch.ones_like(weight, dtype=torch.bool)
    cases = {
        "not a parameter of the model": {name: good, "9.weight": good},
        "has shape": {name: good.T},  # (40, 20) transposed
    }
    for match, masks in cases.items():
        with pytest.raises(ValueError, match=match):
            export(model, masks)
        after = model.state_dict()
        assert after.keys() == before.keys()  # to_torch_prune attached nothing
        assert all(torch.equal(after[k], v) for k, v in before.items())
