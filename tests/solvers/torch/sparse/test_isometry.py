# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch.sparse.isometry: approximate and exact isometry of pruned weights."""

import pytest
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


def _one_layer(rows, cols, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(cols, rows, bias=False))


def test_approximate_isometry_defaults_are_the_documented_ones():
    masks = magnitude_masks(_one_layer(6, 9), 0.6, scope="layer")
    default, explicit = _one_layer(6, 9), _one_layer(6, 9)
    res = approximate_isometry_(default, masks)
    same = approximate_isometry_(explicit, masks, iterations=1000, lr=1e-3, gain=1.0)
    assert res == same and torch.equal(default[0].weight, explicit[0].weight)


@pytest.mark.parametrize(("rows", "cols"), [(5, 9), (9, 5)])
def test_approximate_isometry_reaches_the_gain(rows, cols):
    """Wide layers: W_m W_m^T -> gain^2 I; tall ones: W_m^T W_m; the masked entries stay 0."""
    model = _one_layer(rows, cols)
    masks = magnitude_masks(model, 0.8, scope="layer")
    res = approximate_isometry_(model, masks, iterations=800, lr=2e-2, gain=1.5)
    w = model[0].weight.detach()
    assert torch.all(w[~masks["0.weight"]] == 0)
    singular = torch.linalg.svdvals(w)
    torch.testing.assert_close(singular, torch.full_like(singular, 1.5), atol=0.05, rtol=0)
    gram = w @ w.T if rows <= cols else w.T @ w
    assert res["0.weight"] == pytest.approx(float(torch.linalg.norm(gram - 2.25 * torch.eye(5))),
                                            abs=0.05)  # fmt: skip


def test_approximate_isometry_masks_a_tied_weight_named_by_its_second_name():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4, bias=False), torch.nn.Linear(4, 4))
    model[1].weight = model[0].weight
    mask = torch.rand(4, 4, generator=torch.Generator().manual_seed(1)) < 0.7
    approximate_isometry_(model, {"1.weight": mask}, iterations=5)
    assert torch.all(model[0].weight.detach()[~mask] == 0)


def test_approximate_isometry_names_a_bad_iteration_count():
    model = _one_layer(3, 3)
    with pytest.raises(ValueError, match="'iterations'"):
        approximate_isometry_(model, {}, iterations=0)


@pytest.mark.parametrize(("rows", "cols", "gain"), [(7, 4, 1.0), (4, 7, 0.5), (5, 5, 2.0)])
def test_orthogonalize_is_the_scaled_orthogonal_factor_of_the_weights(rows, cols, gain):
    """W = QR (W^T for a wide W) replaced by gain Q diag(sign diag R): orthonormal rows or
    columns times gain, each one positively aligned with the weight it replaces; only the
    named weights change."""
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(cols, rows), torch.nn.Linear(rows, 2))
    model = model.double()
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    orthogonalize_(model, ["0.weight"], gain=gain)
    w, a = model[0].weight.detach(), before["0.weight"]
    small = min(rows, cols)
    gram = w.T @ w if rows >= cols else w @ w.T
    torch.testing.assert_close(gram, gain**2 * torch.eye(small, dtype=torch.float64))
    along = (w * a).sum(0) if rows >= cols else (w * a).sum(1)  # <q_j, a_j> = r_jj > 0
    assert torch.all(along > 0)
    for k in ("0.bias", "1.weight", "1.bias"):
        assert torch.equal(model.state_dict()[k], before[k])
    assert model[0].weight.requires_grad and model[0].weight.grad_fn is None


@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_orthogonalize_a_square_weight_is_the_q_of_its_own_qr(gain):
    """A square weight is not wide: Q of W = QR itself (not of W^T), columns signed by diag R;
    a zero column (r_jj = 0) keeps its unit column instead of vanishing."""
    torch.manual_seed(4)
    model = torch.nn.Sequential(torch.nn.Linear(5, 5, bias=False)).double()
    with torch.no_grad():
        model[0].weight[:, 2] = 0.0
    a = model[0].weight.detach().clone()
    orthogonalize_(model, gain=gain)
    q, r = torch.linalg.qr(a)
    signs = torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, 1.0)
    torch.testing.assert_close(model[0].weight.detach(), gain * q * signs, rtol=0, atol=1e-12)
    w = model[0].weight.detach()
    torch.testing.assert_close(w.T @ w, gain**2 * torch.eye(5, dtype=torch.float64))


def test_orthogonalize_a_tied_weight_named_by_its_second_name():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4, bias=False), torch.nn.Linear(4, 4))
    model[1].weight = model[0].weight
    orthogonalize_(model, ["1.weight"])
    w = model[0].weight.detach().double()
    torch.testing.assert_close(w.T @ w, torch.eye(4, dtype=torch.float64), atol=1e-6, rtol=0)
