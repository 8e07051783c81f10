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
