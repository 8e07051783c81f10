# SPDX-License-Identifier: BSD-3-Clause
"""solvers.ridge: streamed ridge statistics and the GCV path."""

import numpy as np
import pytest
from sklearn.datasets import make_regression

from solvers.ridge import GramStatistics, ridge_gcv


def test_gram_statistics_stream_equals_one_pass_with_weights():
    rng = np.random.default_rng(0)
    H = rng.normal(size=(103, 7)) + 50.0
    T = rng.normal(size=(103, 3))
    w = rng.random(103)
    stats = GramStatistics().update(H[:40], T[:40], w[:40], block_rows=7)
    stats.update(H[40:], T[40:], w[40:], block_rows=11)
    m, t = w @ H / w.sum(), w @ T / w.sum()
    Hc, Tc = H - m, T - t
    np.testing.assert_allclose(stats.mean, m, rtol=1e-13)
    np.testing.assert_allclose(stats.scatter, (Hc * w[:, None]).T @ Hc, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(stats.cross, (Hc * w[:, None]).T @ Tc, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(stats.target_scatter, w @ Tc**2, rtol=1e-10)
    np.testing.assert_allclose(stats.covariance(), stats.scatter / w.sum(), rtol=1e-15)
    assert stats.n_samples == 103 and stats.weight_sum == pytest.approx(w.sum())
    with pytest.raises(ValueError, match="every update or on none"):
        stats.update(H[:5])


def test_gram_statistics_skip_leading_zero_weights_and_refuse_to_answer_empty():
    rng = np.random.default_rng(1)
    H = rng.normal(size=(20, 3))
    w = np.r_[np.zeros(5), np.ones(15)]
    stats = GramStatistics()
    stats.update(H[:5], sample_weight=w[:5])
    with pytest.raises(ValueError, match="No samples with positive weight"):
        stats.mean  # noqa: B018
    stats.update(H[5:], sample_weight=w[5:], block_rows=4)
    np.testing.assert_allclose(stats.mean, H[5:].mean(axis=0), rtol=1e-13)
    assert stats.n_samples == 20 and stats.weight_sum == 15.0


def test_gram_statistics_float32_blocks_keep_float64_accuracy():
    rng = np.random.default_rng(2)
    # a mean 1000x the spread: the shifted sums keep the scatter's digits in float32 products
    H = (rng.normal(size=(500, 4)) + 1000.0).astype(np.float32)
    stats = GramStatistics().update(H, block_rows=64)
    H64 = H.astype(np.float64)
    Hc = H64 - H64.mean(axis=0)
    assert stats.scatter.dtype == np.float64
    np.testing.assert_allclose(stats.scatter, Hc.T @ Hc, rtol=1e-4, atol=1e-2)


def test_gcv_scores_match_the_hat_matrix_definition():
    X, y = make_regression(n_samples=60, n_features=8, noise=5.0, random_state=0)
    Y = np.stack([y, 0.5 * y + np.arange(60)], axis=1)
    stats = GramStatistics().update(X, Y)
    gammas = [1e-2, 1.0, 1e2, 1e4]
    scores, (lam, V) = ridge_gcv(stats.scatter, stats.cross, stats.target_scatter, 60, gammas)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    for g, score in zip(gammas, scores, strict=True):
        hat = Xc @ np.linalg.solve(Xc.T @ Xc + g * np.eye(8), Xc.T)
        rss = np.sum((Yc - hat @ Yc) ** 2)
        df = 1.0 + np.trace(hat)  # the intercept counts
        np.testing.assert_allclose(score, 60 * rss / (60 - df) ** 2, rtol=1e-9)
    # the eigensystem solves the ridge problem for any gamma
    W = V @ ((V.T @ stats.cross) / (lam + 1.0)[:, None])
    np.testing.assert_allclose(W, np.linalg.solve(Xc.T @ Xc + np.eye(8), Xc.T @ Yc), rtol=1e-9)


def test_gcv_is_infinite_when_the_fit_uses_every_degree_of_freedom():
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(6, 8)), rng.normal(size=(6, 1))
    stats = GramStatistics().update(X, Y)
    scores, _ = ridge_gcv(stats.scatter, stats.cross, stats.target_scatter, 6, [1e-12, 1e3])
    assert scores[0] == np.inf and np.isfinite(scores[1])
