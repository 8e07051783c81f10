# SPDX-License-Identifier: BSD-3-Clause
"""closedform._base: the pieces the manifold networks share."""

import numpy as np
import pytest
from sklearn.utils import check_random_state

from closedform._base import check_weights, select_rows, split_validation, training_weights


def test_split_validation_is_seeded_by_the_generator_and_stratified():
    y = np.repeat([0, 1, 2], [50, 30, 20])
    train, val = split_validation(100, 0.2, check_random_state(0), stratify=y)
    again = split_validation(100, 0.2, check_random_state(0), stratify=y)
    np.testing.assert_array_equal(train, again[0])
    np.testing.assert_array_equal(val, again[1])
    assert len(val) == 20 and np.intersect1d(train, val).size == 0
    assert np.bincount(y[val]).tolist() == [10, 6, 4]
    other = split_validation(100, 0.2, check_random_state(1))[1]
    assert not np.array_equal(np.sort(other), np.sort(val))


def test_check_weights_refuses_negative_weights_and_an_empty_total():
    y = np.zeros(4)
    np.testing.assert_array_equal(check_weights([1, 0, 2, 1], y, positive_sum=True), [1, 0, 2, 1])
    with pytest.raises(ValueError, match="non-negative with a positive sum"):
        check_weights([1, -1, 0, 0], y, positive_sum=True)
    with pytest.raises(ValueError, match=r"non-zero|positive sum"):
        check_weights(np.zeros(4), y, positive_sum=True)
    with pytest.raises(ValueError, match=r"must be non-negative\.$"):
        check_weights([1, -1, 1, 1], y, positive_sum=False)
    with pytest.raises(ValueError, match=r"inconsistent|shape"):
        check_weights([1, 1], y, positive_sum=False)


def test_training_weights_and_rows():
    w = np.array([1.0, 3.0, 2.0, 2.0])
    # as given (they count repetitions in the decision layer's choice of alpha)
    kept = training_weights(w, np.array([1, 3]), np.zeros((4, 2)))
    np.testing.assert_array_equal(kept, [3.0, 2.0])
    assert training_weights(None, np.arange(4), np.zeros((4, 2))) is None
    X = np.arange(8.0).reshape(4, 2)
    np.testing.assert_array_equal(select_rows(X, np.array([2, 0])), X[[2, 0]])
