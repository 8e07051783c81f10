# SPDX-License-Identifier: BSD-3-Clause
"""eigenpro.model_selection: bandwidth and penalty by leave-one-out on a subsample."""

import numpy as np
import pytest
from sklearn.datasets import load_diabetes
from sklearn.preprocessing import StandardScaler

from eigenpro import EigenProRegressor
from eigenpro.kernels import Gaussian, Laplacian, make_kernel
from eigenpro.model_selection import (
    BANDWIDTH_FACTORS,
    RELATIVE_ALPHAS,
    choose_kernel,
)
from solvers.ridge import kernel_ridge_loo


def _problem(n=120, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    Y = np.sin(X[:, :1] * 2) + 0.3 * rng.normal(size=(n, 1))
    return X, Y


@pytest.mark.parametrize("kernel", [Gaussian(), Laplacian()])
def test_the_choice_is_the_grid_argmin_of_the_leave_one_out_error(kernel):
    X, Y = _problem()
    choice = choose_kernel(kernel, X, Y)
    rule = kernel.default_bandwidth(X)
    best = (np.inf, None, None)
    for f in BANDWIDTH_FACTORS:
        K = kernel.with_bandwidth(rule * f)(X)
        alphas = [a * np.mean(np.diag(K)) for a in RELATIVE_ALPHAS]
        scores = kernel_ridge_loo(K, Y, alphas)
        i = int(np.argmin(scores))
        if scores[i] < best[0]:
            best = (scores[i], rule * f, alphas[i])
    assert choice.kernel.bandwidth == pytest.approx(best[1], rel=1e-12)
    assert choice.alpha == pytest.approx(best[2], rel=1e-12)
    assert len(choice.scores) == len(BANDWIDTH_FACTORS) * len(RELATIVE_ALPHAS)
    assert min(choice.scores.values()) == pytest.approx(best[0], rel=1e-12)


def test_given_settings_are_kept():
    X, Y = _problem()
    kernel = Gaussian(2.0)
    choice = choose_kernel(kernel, X, Y, search_bandwidth=False, alpha=0.5)
    assert choice.kernel is kernel and choice.alpha == 0.5 and len(choice.scores) == 1
    # a kernel without a bandwidth: only the penalty is searched
    fn = make_kernel(lambda A, B: (A @ B.T + 1.0) ** 2)
    choice = choose_kernel(fn, X, Y)
    assert choice.kernel is fn and len(choice.scores) == len(RELATIVE_ALPHAS)


def test_the_subsample_follows_the_memory_budget():
    X, Y = _problem(n=400)
    # six m x m float64 arrays: 48 m^2 bytes -> m = 100 rows for 480 kB, drawn
    # with a fixed seed; the bandwidths follow the whole X's rule of thumb
    small = choose_kernel(Gaussian(), X, Y, max_bytes=48 * 100**2)
    rows = np.sort(np.random.default_rng(0).choice(400, 100, replace=False))
    rule = Gaussian().default_bandwidth(X)
    assert sorted({s for s, _ in small.scores}) == pytest.approx(
        [rule * f for f in BANDWIDTH_FACTORS], rel=1e-12
    )
    for (s, a), score in small.scores.items():
        expected = kernel_ridge_loo(Gaussian(s)(X[rows]), Y[rows], [a])[0]
        assert score == pytest.approx(expected, rel=1e-10)


def test_auto_bandwidth_refuses_data_without_a_finite_spread():
    X, Y = _problem()
    X[0, 0] = 1e300
    with pytest.raises(ValueError, match=r"bandwidth='auto' cannot be derived from X"):
        choose_kernel(Gaussian(), X, Y)


def test_auto_defaults_beat_the_interpolating_rule_of_thumb_on_noisy_data():
    # issue 20: diabetes (442 rows, 10 standardised features, noisy targets); the former
    # defaults (the rule-of-thumb bandwidth, alpha = 0) reached R^2 0.29 in 5-fold CV
    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    train, test = np.arange(0, 442, 2), np.arange(1, 442, 2)
    auto = EigenProRegressor(random_state=0).fit(X[train], y[train])
    old = EigenProRegressor(bandwidth=Gaussian().default_bandwidth(X[train]), alpha=0.0,
                            random_state=0).fit(X[train], y[train])  # fmt: skip
    assert auto.alpha_ > 0.0 and auto.bandwidth_ > old.bandwidth_
    assert auto.score(X[test], y[test]) > max(0.4, old.score(X[test], y[test]) + 0.05)


def test_the_choice_is_timed_as_part_of_fit():
    X, Y = _problem()
    auto = EigenProRegressor(n_epochs=2, random_state=0).fit(X, Y[:, 0])
    chosen = auto.timings_["model_selection"]
    assert chosen > 0.0 and auto.history_["time"][0] >= chosen
    fixed = EigenProRegressor(bandwidth=1.0, alpha=0.0, n_epochs=2, random_state=0).fit(X, Y[:, 0])
    assert fixed.alpha_ == 0.0 and fixed.bandwidth_ == 1.0
    assert fixed.timings_["model_selection"] < chosen
