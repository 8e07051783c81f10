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


def _nested(bias=True):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Sequential(torch.nn.Linear(6, 5, bias=bias), torch.nn.Tanh()),
        torch.nn.Linear(5, 3, bias=bias),
    )


def _masks(model, density=0.4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        k: torch.rand(p.shape, generator=g) < density
        for k, p in model.named_parameters()
        if k.endswith("weight")
    }


@pytest.mark.parametrize("bias", [True, False])
def test_nested_layers_export_to_frozen_csr_layers(bias):
    """Layers inside nested containers ('0.0.weight') are replaced where they sit; the CSR
    layers hold frozen copies (no gradient: inference only), with or without a bias, and
    take inputs with any leading dimensions."""
    model = _nested(bias)
    masks = _masks(model)
    csr = export_sparse(model, masks)
    assert type(csr[0][0]).__name__ == "SparseLinear" and type(csr[1]).__name__ == "SparseLinear"
    for layer in (csr[0][0], csr[1]):
        assert not layer.weight.requires_grad
        assert layer.bias is None if not bias else not layer.bias.requires_grad
    x = torch.randn(2, 4, 6)  # (batch, sequence, features)
    torch.testing.assert_close(csr(x), export_dense(model, masks)(x), atol=1e-6, rtol=1e-6)
    nnz = int(masks["0.0.weight"].sum())
    assert repr(csr[0][0]) == (
        f"SparseLinear(in_features=6, out_features=5, nnz={nnz} ({nnz / 30:.2%}))"
    )


def test_a_bare_linear_round_trips_through_torch_prune():
    """The root module's weight is named 'weight'; its export is the SparseLinear itself."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 3)
    masks = _masks(layer)
    assert list(masks) == ["weight"]
    back = from_torch_prune(to_torch_prune(copy.deepcopy(layer), masks))
    assert list(back) == ["weight"] and torch.equal(back["weight"], masks["weight"])
    csr = export_sparse(layer, masks)
    assert type(csr).__name__ == "SparseLinear"


def test_a_tied_weight_is_masked_under_its_second_name():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4, bias=False), torch.nn.Linear(4, 4))
    model[1].weight = model[0].weight
    mask = _masks(model[:1])["0.weight"]
    dense = export_dense(model, {"1.weight": mask})
    assert torch.equal(dense[0].weight, model[0].weight.detach() * mask)


def test_export_errors_name_the_problem():
    model = _nested()
    with pytest.raises(TypeError, match=r"^masks must be a dict of tensors or a controller; "
                                        r"got <class 'list'>$"):  # fmt: skip
        export_dense(model, [])
    with pytest.raises(ValueError, match=r"^mask of '1.weight' has shape list; the parameter "
                                         r"has \(3, 5\)$"):  # fmt: skip
        export_dense(model, {"1.weight": [1, 0]})
    with pytest.raises(ValueError, match=r"^mask of '1.weight' has shape \(5, 3\); the "
                                         r"parameter has \(3, 5\)$"):  # fmt: skip
        export_dense(model, {"1.weight": torch.ones(5, 3, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"^only module weights can be exported, got '1.bias'$"):
        export_sparse(model, {"1.bias": torch.ones(3, dtype=torch.bool)})
    no_masks = r"^the model has no torch\.nn\.utils\.prune weight masks$"
    with pytest.raises(ValueError, match=no_masks):
        from_torch_prune(model)
