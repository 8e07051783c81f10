# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch.sparse.topk: exact counts, ties by index, NaN last."""

import torch

from solvers.torch.sparse.topk import (
    bottom_k_mask,
    global_top_k_masks,
    layer_top_k_masks,
    random_masks,
    top_k_mask,
)


def test_top_k_is_exact_and_breaks_ties_by_index():
    s = torch.tensor([1.0, 3.0, 3.0, 3.0, 0.0, 3.0])
    assert top_k_mask(s, 2).tolist() == [False, True, True, False, False, False]
    assert top_k_mask(s, 0).sum() == 0 and top_k_mask(s, 6).all()
    assert top_k_mask(s, 2, largest=False).tolist() == [True, False, False, False, True, False]
    assert torch.equal(bottom_k_mask(s, 2), top_k_mask(s, 2, largest=False))
    big = torch.randint(0, 5, (1000,)).float()
    for k in (1, 17, 500, 999):
        m = top_k_mask(big, k)
        assert int(m.sum()) == k
        assert big[m].min() >= big[~m].max()


def test_nan_scores_never_displace_real_ones():
    s = torch.tensor([0.5, float("nan"), 0.1, 0.9])
    assert top_k_mask(s, 2).tolist() == [True, False, False, True]
    assert top_k_mask(s, 2, largest=False).tolist() == [True, False, True, False]


def test_global_and_layer_masks_keep_exact_counts():
    scores = {"a": torch.arange(10.0), "b": torch.arange(10.0, 30.0).reshape(4, 5)}
    glob = global_top_k_masks(scores, 0.25)  # the 8 largest are all in "b"
    assert int(glob["a"].sum()) == 0 and int(glob["b"].sum()) == 8
    per_layer = layer_top_k_masks(scores, {"a": 0.5, "b": 0.25})
    assert per_layer["a"].tolist() == [False] * 5 + [True] * 5
    assert int(per_layer["b"].sum()) == 5


def test_random_masks_are_seeded_and_exact():
    params = {"a": torch.zeros(7, 9), "b": torch.zeros(30)}
    m1 = random_masks(params, {"a": 0.3, "b": 0.5}, seed=4)
    m2 = random_masks(params, {"a": 0.3, "b": 0.5}, seed=4)
    assert all(torch.equal(m1[k], m2[k]) for k in params)
    assert int(m1["a"].sum()) == round(0.3 * 63) and int(m1["b"].sum()) == 15
    assert not torch.equal(random_masks(params, {"a": 0.3, "b": 0.5}, seed=5)["a"], m1["a"])
