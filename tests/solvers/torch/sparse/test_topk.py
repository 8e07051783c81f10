# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch.sparse.topk: exact counts, ties by index, NaN last."""

import re

import pytest
import torch

from solvers.torch.sparse.topk import (
    bottom_k_mask,
    check_scores,
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


def test_masks_are_boolean_of_the_scores_shape_and_device_at_every_count():
    # k <= 0 and k >= numel return early; the masks must still match the scores
    s = torch.arange(12.0).reshape(3, 4)
    for k in (-1, 0, 5, 12, 13):
        m = top_k_mask(s, k)
        assert m.dtype == torch.bool and m.shape == (3, 4)
        assert int(m.sum()) == min(max(k, 0), 12)
        meta = top_k_mask(torch.empty(3, 4, device="meta"), k)
        assert meta.device.type == "meta" and meta.dtype == torch.bool and meta.shape == (3, 4)


def test_bottom_k_breaks_ties_at_the_threshold_by_index():
    # the threshold value 2 is held by three entries, one of which is kept
    s = torch.tensor([2.0, 5.0, 1.0, 2.0, 2.0])
    assert bottom_k_mask(s, 2).tolist() == [True, False, True, False, False]
    assert top_k_mask(-s, 2).tolist() == bottom_k_mask(s, 2).tolist()


def test_random_masks_draw_layer_i_from_step_minus_one_minus_i():
    # the documented streams: negative steps, never those of a training step t >= 0
    from solvers.torch.sparse.densities import active_count
    from solvers.torch.sparse.seeding import step_generator

    params = {"a": torch.zeros(6, 5), "b": torch.zeros(6, 5), "c": torch.zeros(40)}
    densities = {"a": 0.3, "b": 0.3, "c": 0.6}
    for seed in (0, 7):
        masks = random_masks(params, densities, seed) if seed else random_masks(params, densities)
        for i, (name, p) in enumerate(params.items()):
            u = torch.rand(p.shape, generator=step_generator(seed, -1 - i))
            assert torch.equal(masks[name], top_k_mask(u, active_count(p.numel(), densities[name])))
        assert not torch.equal(masks["a"], masks["b"])  # layers of one shape differ
    meta = random_masks({"a": torch.empty(4, 4, device="meta")}, {"a": 0.5})
    assert meta["a"].device.type == "meta"


def test_global_masks_of_three_layers_are_the_slices_of_one_top_k():
    scores = {
        "a": torch.tensor([5.0, 0.0, 9.0]),
        "b": torch.tensor([[1.0, 8.0], [2.0, 7.0]]),
        "c": torch.tensor([6.0, 3.0, 4.0]),
    }
    masks = global_top_k_masks(scores, 0.5)  # the 5 largest of 10: 9, 8, 7, 6, 5
    assert masks["a"].tolist() == [True, False, True]
    assert masks["b"].tolist() == [[False, True], [False, True]]
    assert masks["c"].tolist() == [True, False, False]


def test_check_scores_names_the_layer_and_the_bad_value():
    good = {"a": torch.ones(3), "n": torch.tensor([1, 2])}
    assert check_scores(good) is good
    tail = re.escape(
        " (from non-finite weights, data, loss or gradients): masks from them would be arbitrary"
    )
    with pytest.raises(ValueError, match=f"^the pruning scores of 'b' hold NaN{tail}$"):
        check_scores({"a": torch.ones(2), "b": torch.tensor([1.0, float("nan"), float("inf")])})
    with pytest.raises(ValueError, match=f"^the pruning scores of 'c' hold inf{tail}$"):
        check_scores({"c": torch.tensor([1.0, -float("inf")])})
