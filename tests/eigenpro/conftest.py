# SPDX-License-Identifier: BSD-3-Clause
"""Shared data and set-ups of the eigenpro tests."""

import numpy as np
import pytest
from sklearn.utils import check_random_state

from eigenpro._iteration import SolverSettings, check_inputs, make_plan


@pytest.fixture(scope="module")
def regression_data():
    """400 points in 5-D with two smooth targets."""
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(400, 5))
    Y = np.stack([np.sin(3 * X[:, 0]) + X[:, 1], np.cos(2 * X[:, 2])], axis=1)
    return X, Y


@pytest.fixture
def make_small_plan(regression_data):
    """``make_small_plan(**settings) -> (settings, data, plan)`` on ``regression_data``."""

    def build(coef0=None, seed=0, **kwargs):
        kwargs = {"kernel": "gaussian", "bandwidth": 0.6, "subsample_size": 100, **kwargs}
        settings = SolverSettings(**kwargs)
        data = check_inputs(*regression_data, coef0)
        return settings, data, make_plan(settings, data, check_random_state(seed))

    return build
