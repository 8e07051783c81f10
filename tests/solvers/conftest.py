# SPDX-License-Identifier: BSD-3-Clause
"""Data shared by the array-level and torch line-search tests."""

import numpy as np
import pytest


def _separable(n=1000, p=20, margin=0.1, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=p)
    w /= np.linalg.norm(w)
    X = rng.normal(size=(n, p))
    s = X @ w
    X += np.outer(np.sign(s) * margin, w)  # push every point at least `margin` away
    y = np.sign(X @ w)
    return X, y


@pytest.fixture
def separable():
    """``separable(n, p, margin, seed) -> (X, y)``: linearly separable labels in {-1, +1}."""
    return _separable
