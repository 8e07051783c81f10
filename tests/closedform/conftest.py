# SPDX-License-Identifier: BSD-3-Clause
"""Data shared by the closedform tests."""

import pytest
from sklearn.datasets import load_digits, make_classification


def _problem(n=300, p=12, classes=3, seed=0):
    return make_classification(
        n_samples=n,
        n_features=p,
        n_informative=6,
        n_redundant=0,
        n_classes=classes,
        n_clusters_per_class=1,
        random_state=seed,
    )


@pytest.fixture
def make_problem():
    """``make_problem(n=300, p=12, classes=3, seed=0) -> (X, y)``: well separated classes."""
    return _problem


@pytest.fixture(scope="module")
def digits():
    """Digits scaled to [0, 1]: 1500 training rows, the rest for testing."""
    X, y = load_digits(return_X_y=True)
    return X[:1500] / 16, y[:1500], X[1500:] / 16, y[1500:]
