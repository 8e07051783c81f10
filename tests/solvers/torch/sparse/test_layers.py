# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch.sparse.layers: which weights are sparse."""

import re

import pytest
from torch import nn

from solvers.torch import select_layers


def test_select_layers_skips_biases_norms_and_filters():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2), nn.LayerNorm(2))
    assert list(select_layers(model)) == ["0.weight", "2.weight"]
    assert list(select_layers(model, exclude=r"^2\.")) == ["0.weight"]
    assert list(select_layers(model, exclude=re.compile(r"^2\."))) == ["0.weight"]
    assert list(select_layers(model, min_numel=20)) == ["0.weight"]
    assert list(select_layers(model, include=r"^2")) == ["2.weight"]
    with pytest.raises(ValueError, match="no layer to sparsify"):
        select_layers(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)))
    with pytest.raises(ValueError, match="no layer to sparsify"):
        select_layers(model, include=(nn.Conv2d,))
    with pytest.raises(TypeError, match=r"'model' parameter of select_layers"):
        select_layers("not a model")


def test_tied_embedding_head_stays_dense():
    class TiedLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(50, 8)
            self.fc = nn.Linear(8, 8)
            self.head = nn.Linear(8, 50, bias=False)
            self.head.weight = self.emb.weight

    assert list(select_layers(TiedLM())) == ["fc.weight"]


@pytest.mark.parametrize(
    "make, dense",
    [
        (lambda: nn.Sequential(nn.LSTM(4, 8), nn.Linear(8, 3)), "0.weight_ih_l0"),
        (lambda: nn.TransformerEncoderLayer(8, 2, 16), "self_attn.in_proj_weight"),
    ],
)
def test_recurrent_and_attention_matrices_left_dense_are_named(make, dense):
    # they are not a module's `weight`: a "90 % sparse" LSTM would have only its head sparse
    with pytest.warns(UserWarning, match=rf"leaves .*{re.escape(dense)}.* dense"):
        selected = select_layers(make())
    assert dense not in selected


def test_no_warning_without_recurrent_or_attention_layers(recwarn):
    select_layers(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)))
    assert not [w for w in recwarn if "dense" in str(w.message)]


def test_include_by_type_predicate_or_pattern():
    model = nn.Sequential(nn.Linear(4, 8), nn.PReLU(), nn.Linear(8, 2))
    assert list(select_layers(model, include=nn.Linear)) == ["0.weight", "2.weight"]
    seen = []

    def wide(name, module):
        seen.append((name, type(module).__name__))
        return module.weight.dim() > 1 and module.weight.shape[1] == 8

    assert list(select_layers(model, include=wide)) == ["2.weight"]
    assert seen == [("0.weight", "Linear"), ("1.weight", "PReLU"), ("2.weight", "Linear")]
    # a pattern selects matrices only: PReLU's 1-D weight matches "weight" but stays dense
    assert list(select_layers(model, include="weight")) == ["0.weight", "2.weight"]


def test_names_sizes_and_tied_weights():
    root = nn.Linear(3, 4)
    selected = select_layers(root)
    assert list(selected) == ["weight"] and selected["weight"] is root.weight
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2), nn.Linear(0, 2), nn.Linear(1, 1))
    # min_numel=0: a one-element weight is selected, an empty one never (nothing to mask)
    assert list(select_layers(model)) == ["0.weight", "1.weight", "3.weight"]
    assert list(select_layers(model, min_numel=32)) == ["0.weight"]  # 32 is not smaller
    tied = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    tied[1].weight = tied[0].weight
    assert list(select_layers(tied)) == ["0.weight"]
    named = nn.ModuleDict(
        {"bn1": nn.Linear(4, 4), "layernorm_out": nn.Linear(4, 4), "fc": nn.Linear(4, 4)}
    )
    assert list(select_layers(named)) == ["fc.weight"]


def test_bad_arguments_and_the_empty_selection_name_what_is_wrong():
    model = nn.Sequential(nn.Linear(4, 8))
    with pytest.raises(ValueError, match=r"'exclude' parameter of select_layers"):
        select_layers(model, exclude=3)
    with pytest.raises(ValueError, match=r"'min_numel' parameter of select_layers"):
        select_layers(model, min_numel=-1)
    with pytest.raises(ValueError, match=r"^no layer to sparsify: the model has no weight"):
        select_layers(model, min_numel=100)


@pytest.mark.parametrize(
    "make, shown",
    [
        (lambda: nn.Sequential(nn.LSTM(4, 8, num_layers=2), nn.Linear(8, 3)),
         "0.weight_ih_l0, 0.weight_hh_l0, 0.weight_ih_l1, 0.weight_hh_l1"),
        (lambda: nn.Sequential(nn.LSTM(4, 8, num_layers=3), nn.Linear(8, 3)),
         "0.weight_ih_l0, 0.weight_hh_l0, 0.weight_ih_l1, 0.weight_hh_l1 and 2 more"),
        (lambda: nn.Sequential(nn.LSTM(4, 8, num_layers=2), nn.MultiheadAttention(8, 2)),
         "0.weight_ih_l0, 0.weight_hh_l0, 0.weight_ih_l1, 0.weight_hh_l1 and 1 more"),
        (lambda: nn.MultiheadAttention(8, 2), "MultiheadAttention.in_proj_weight"),
    ],
)  # fmt: skip
def test_the_dense_matrices_warning_lists_them(make, shown):
    """Matrices only (no biases, no submodule's weight such as out_proj), four at most."""
    with pytest.warns(UserWarning) as record:
        select_layers(make())
    (message,) = [str(w.message) for w in record if "leaves" in str(w.message)]
    assert message == (
        f"select_layers leaves {shown} dense: it sparsifies a module's `weight` only, and "
        "recurrent and attention matrices are other parameters (nn.LSTM/GRU/RNN, "
        "nn.MultiheadAttention's in_proj_weight). Their share of the model is not in the "
        "target density."
    )
