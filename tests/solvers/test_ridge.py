# SPDX-License-Identifier: BSD-3-Clause
"""solvers.ridge: streamed ridge statistics, the GCV path and exact leave-one-out errors."""

import numpy as np
import pytest
from sklearn.datasets import make_regression

from solvers.ridge import GramStatistics, kernel_ridge_loo, ridge_gcv, ridge_loo


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


def _brute_force_loo(H, T, gamma, w, rows=None):
    """Refit without each row in turn (the penalty in the units of the full weighted data)."""
    total = 0.0
    for i in range(len(H)) if rows is None else rows:
        keep = np.arange(len(H)) != i
        v = w[keep] / w.sum()
        h, t = v @ H[keep] / v.sum(), v @ T[keep] / v.sum()
        Hc, Tc = H[keep] - h, T[keep] - t
        W = np.linalg.solve(Hc.T @ (v[:, None] * Hc) + gamma * np.eye(H.shape[1]),
                            Hc.T @ (v[:, None] * Tc))  # fmt: skip
        total += w[i] / w.sum() * np.sum((T[i] - (H[i] - h) @ W - t) ** 2)
    return total if rows is None else total * len(H) / len(rows)


@pytest.mark.parametrize("n, p", [(30, 5), (12, 40)])  # the primal and the dual form
@pytest.mark.parametrize("weighted", [False, True])
def test_ridge_loo_equals_refitting_without_each_row(n, p, weighted):
    rng = np.random.default_rng(n)
    H, T = rng.normal(size=(n, p)) + 3.0, rng.normal(size=(n, 2))
    # weights below one: each row is left out whole
    w = rng.uniform(0.1, 1.0, n) if weighted else np.ones(n)
    gammas = [1e-3, 0.1, 1.0]
    scores = ridge_loo(H, T, gammas, sample_weight=w if weighted else None)
    np.testing.assert_allclose(scores, [_brute_force_loo(H, T, g, w) for g in gammas], rtol=1e-9)


@pytest.mark.parametrize("n, p", [(30, 5), (12, 40)])
def test_ridge_loo_integer_weights_equal_repeated_rows(n, p):
    # weights count repetitions: a row of weight 3 is left out one copy at a time
    rng = np.random.default_rng(1)
    H, T = rng.normal(size=(n, p)), rng.normal(size=(n, 1))
    counts = rng.integers(1, 4, n)
    gammas = [1e-2, 1.0]
    weighted = ridge_loo(H, T, gammas, sample_weight=counts.astype(float))
    repeated = ridge_loo(np.repeat(H, counts, axis=0), np.repeat(T, counts, axis=0), gammas)
    np.testing.assert_allclose(weighted, repeated, rtol=1e-9)


def test_ridge_loo_scored_rows_and_blocks():
    rng = np.random.default_rng(2)
    H, T = rng.normal(size=(200, 6)), rng.normal(size=(200, 2))
    gammas = [1e-3, 1e-1]
    full = ridge_loo(H, T, gammas)
    # blocks change nothing; all rows as "rows" are the full score
    np.testing.assert_allclose(ridge_loo(H, T, gammas, block_rows=28), full, rtol=1e-12)
    np.testing.assert_allclose(ridge_loo(H, T, gammas, rows=np.arange(200)), full, rtol=1e-12)
    # a subset scores the mean over its rows of the full-data leave-one-out residuals
    rows = np.arange(0, 200, 3)
    subset = ridge_loo(H, T, gammas, rows=rows)
    assert not np.allclose(subset, full)
    expected = [_brute_force_loo(H, T, g, np.ones(200), rows) for g in gammas]
    np.testing.assert_allclose(subset, expected, rtol=1e-9)


def test_kernel_ridge_loo_equals_refitting_without_each_row():
    rng = np.random.default_rng(3)
    X, T = rng.normal(size=(25, 3)), rng.normal(size=(25, 2))
    K = np.exp(-0.5 * np.sum((X[:, None] - X[None]) ** 2, axis=-1))
    alphas = [1e-2, 1.0]
    expected = []
    for a in alphas:
        total = 0.0
        for i in range(25):
            keep = np.arange(25) != i
            coef = np.linalg.solve(K[np.ix_(keep, keep)] + a * np.eye(24), T[keep])
            total += np.sum((T[i] - K[i, keep] @ coef) ** 2)
        expected.append(total / 25)
    np.testing.assert_allclose(kernel_ridge_loo(K, T, alphas), expected, rtol=1e-9)


def test_unweighted_batches_with_different_means():
    # the shifted sums are corrected once: batches far from the first one's mean
    rng = np.random.default_rng(0)
    H, T = rng.normal(size=(60, 3)), rng.normal(size=(60, 2))
    H[30:] += 5.0
    T[30:] -= 3.0
    stats = GramStatistics().update(H[:30], T[:30]).update(H[30:], T[30:], block_rows=7)
    Hc, Tc = H - H.mean(axis=0), T - T.mean(axis=0)
    np.testing.assert_allclose(stats.mean, H.mean(axis=0))
    np.testing.assert_allclose(stats.target_mean, T.mean(axis=0))
    np.testing.assert_allclose(stats.scatter, Hc.T @ Hc, atol=1e-9)
    np.testing.assert_allclose(stats.cross, Hc.T @ Tc, atol=1e-9)


def test_leading_blocks_of_zero_weight_are_skipped_not_the_rest():
    rng = np.random.default_rng(1)
    H, w = rng.normal(size=(20, 3)), np.ones(20)
    w[:8] = 0.0
    stats = GramStatistics().update(H, sample_weight=w, block_rows=4)
    assert stats.n_samples == 20
    np.testing.assert_allclose(stats.mean, H[8:].mean(axis=0))


def test_gcv_on_small_scale_data_matches_its_definition():
    # eigenvalues and residuals below 1: clipping at 0 (not 1) matters
    rng = np.random.default_rng(2)
    X = 1e-2 * rng.normal(size=(40, 3))
    Y = X @ rng.normal(size=(3, 1)) + 1e-3 * rng.normal(size=(40, 1))
    stats = GramStatistics().update(X, Y)
    gammas = [1e-6, 1e-3]
    scores, _ = ridge_gcv(stats.scatter, stats.cross, stats.target_scatter, 40, gammas)
    Xc, Yc = X - X.mean(axis=0), Y - Y.mean(axis=0)
    for gamma, score in zip(gammas, scores, strict=True):
        inverse = np.linalg.inv(Xc.T @ Xc + gamma * np.eye(3))
        df = 1.0 + np.trace(Xc @ inverse @ Xc.T)
        rss = np.sum((Yc - Xc @ inverse @ Xc.T @ Yc) ** 2)
        assert score == pytest.approx(40 * rss / (40 - df) ** 2, rel=1e-6)


def test_ridge_loo_scored_rows_with_integer_weights_and_rank_deficient_features():
    rng = np.random.default_rng(3)
    H, T = rng.normal(size=(30, 4)), rng.normal(size=(30, 1))
    w = rng.integers(1, 4, 30).astype(float)
    full = ridge_loo(H, T, [0.1, 1.0], sample_weight=w)
    np.testing.assert_allclose(
        ridge_loo(H, T, [0.1, 1.0], sample_weight=w, rows=np.arange(30)), full, rtol=1e-12
    )
    # a duplicated column: a zero eigenvalue in the primal form
    H = np.hstack([H[:, :3], H[:, :1]])
    assert np.all(np.isfinite(ridge_loo(H, T, [0.1, 1.0])))


def test_torch_inputs_give_the_numpy_scores():
    import torch  # a test dependency (pinned CPU wheel)

    rng = np.random.default_rng(5)
    H, T = rng.normal(size=(30, 4)), rng.normal(size=(30, 2))
    stats = GramStatistics().update(torch.tensor(H, dtype=torch.float32), torch.tensor(T))
    assert stats.scatter.dtype == torch.float64
    np.testing.assert_allclose(
        ridge_loo(torch.tensor(H, dtype=torch.float32), torch.tensor(T), [0.1]),
        ridge_loo(H, T, [0.1]),
        rtol=1e-5,
    )
    K = H @ H.T
    np.testing.assert_allclose(
        kernel_ridge_loo(torch.tensor(K), torch.tensor(T), [0.1]),
        kernel_ridge_loo(K, T, [0.1]),
        rtol=1e-10,
    )
