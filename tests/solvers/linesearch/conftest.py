# SPDX-License-Identifier: BSD-3-Clause
"""Problems for the array-level line-search tests."""

import numpy as np
import pytest


def _least_squares(n=200, p=10, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, p))
    x_star = rng.normal(size=p)
    return A, A @ x_star, x_star


@pytest.fixture
def least_squares():
    """``least_squares(n, p, seed) -> (A, b, x_star)`` with ``A x_star = b``."""
    return _least_squares
