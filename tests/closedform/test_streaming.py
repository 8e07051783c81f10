# SPDX-License-Identifier: BSD-3-Clause
"""closedform._streaming: the decision layer from streamed statistics."""

import numpy as np
import pytest

from closedform._streaming import StreamedHead, solve_from_statistics
from closedform.svm_head import fit_svm_head, pick_alpha, relative_scale
from solvers.ridge import GramStatistics


@pytest.mark.parametrize("alpha", [1e-3, "auto"])
def test_ridge_from_statistics_equals_the_one_pass_fit(make_problem, alpha):
    X, _ = make_problem()
    rng = np.random.default_rng(0)
    Y, w = rng.normal(size=(300, 2)), rng.random(300)
    stats = GramStatistics()
    for part in np.array_split(np.arange(300), 4):
        stats.update(X[part], Y[part], w[part], block_rows=32)
    streamed = solve_from_statistics(stats, "ridge", alpha, None)
    assert isinstance(streamed, StreamedHead)
    if alpha == "auto":  # streamed: GCV from the statistics (test_svm_head checks the pick)
        assert streamed.alpha == pick_alpha(
            stats.scatter, stats.cross, stats.target_scatter, 300, stats.weight_sum,
            relative_scale(stats.covariance()),
        )  # fmt: skip
        alpha = streamed.alpha
    fit = fit_svm_head(X, Y, w, head="ridge", alpha=alpha, loss="squared")
    assert streamed.alpha == fit.alpha
    np.testing.assert_allclose(streamed.W, fit.W, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(streamed.b, fit.b, rtol=1e-8, atol=1e-10)
    assert streamed.objective == pytest.approx(fit.objective_curve[-1], rel=1e-8)


@pytest.mark.parametrize("head", ["stiefel", "gpi"])
def test_constrained_heads_from_statistics_stay_on_their_manifold(make_problem, head):
    X, y = make_problem(classes=4)
    Y = -np.ones((300, 4))
    Y[np.arange(300), y] = 1.0
    stats = GramStatistics().update(X, Y)
    W = solve_from_statistics(stats, head, 1e-3, None).W
    cov = stats.covariance()
    G = cov + 1e-3 * np.trace(cov) / 12 * np.eye(12) if head == "stiefel" else np.eye(12)
    np.testing.assert_allclose(W.T @ G @ W, np.eye(4), atol=1e-8)
