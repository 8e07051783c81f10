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
