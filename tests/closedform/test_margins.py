# SPDX-License-Identifier: BSD-3-Clause
"""closedform.margins: label coding, temperature, and the shared restore guard."""

import numpy as np
import pytest

import solvers._estimator
from closedform.margins import encode_labels, fit_temperature, one_vs_rest_codes, restore_on_error


def test_restore_on_error_is_the_shared_one():
    assert restore_on_error is solvers._estimator.restore_on_error


def test_codes_use_one_output_for_two_classes():
    np.testing.assert_array_equal(one_vs_rest_codes(np.array([0, 1, 1]), 2), [[-1], [1], [1]])
    np.testing.assert_array_equal(
        one_vs_rest_codes(np.array([2, 0]), 3), [[-1, -1, 1], [1, -1, -1]]
    )
    classes, indices, codes, weights = encode_labels(np.array(["b", "a", "b"]))
    assert classes.tolist() == ["a", "b"] and indices.tolist() == [1, 0, 1]
    assert codes.shape == (3, 1) and weights is None


def test_encode_labels_checks_the_weights():
    y = np.array([0, 1, 1, 0])
    with pytest.raises(ValueError, match="positive sum"):
        encode_labels(y, np.array([-1.0, 1.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match="only 1 class"):
        encode_labels(y, np.array([0.0, 1.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match="at least 2 classes"):
        encode_labels(np.zeros(3))


def test_temperature_maximises_the_likelihood():
    rng = np.random.default_rng(0)
    indices = rng.integers(0, 3, size=500)
    F = 3.0 * np.eye(3)[indices] + rng.normal(size=(500, 3))

    def nll(t):
        S = F / t
        return -np.mean(S[np.arange(500), indices] - np.log(np.exp(S).sum(axis=1)))

    T = fit_temperature(F, indices)
    assert T > 0 and nll(T) <= min(nll(0.9 * T), nll(1.1 * T))
    # two classes: one score, the two-column softmax of (-F/2, F/2)
    F1 = F[:, 1] - F[:, 0]
    assert fit_temperature(F1, (indices == 1).astype(int)) > 0
