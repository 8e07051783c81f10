# SPDX-License-Identifier: BSD-3-Clause
"""closedform.svm_head: the decision layer's closed-form steps and their linear algebra."""

import itertools

import numpy as np
import pytest
from scipy.optimize import minimize as scipy_minimize
from sklearn.linear_model import Ridge

from closedform import svm_head
from closedform.svm_head import (
    AUTO_ALPHAS,
    HeadFit,
    HeadSettings,
    check_head_width,
    fit_svm_head,
    pick_alpha,
    relative_scale,
    simplex_weights,
    solve_head,
)
from solvers.linalg import (
    cho_solve,
    cholesky,
    generalized_procrustes,
    polar,
    stiefel_quadratic,
    weighted_moments,
)
from solvers.ridge import GramStatistics, ridge_gcv, ridge_loo


def codes(y):
    classes = np.unique(y)
    Y = -np.ones((y.shape[0], classes.shape[0]))
    Y[np.arange(y.shape[0]), np.searchsorted(classes, y)] = 1.0
    return Y


# -- linear algebra ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-5)])
def test_weighted_moments_match_numpy_in_blocks(dtype, rtol):
    rng = np.random.default_rng(0)
    # a mean 100x the spread: a one-pass sum of squares would lose every digit in float32
    H = (rng.normal(size=(101, 7)) + 100.0).astype(dtype)
    w = rng.random(101)
    w /= w.sum()
    mean, G = weighted_moments(H, w, block_rows=10)
    H64 = H.astype(np.float64)
    ref_mean = w @ H64
    ref_G = ((H64 - ref_mean) * w[:, None]).T @ (H64 - ref_mean)
    np.testing.assert_allclose(mean, ref_mean, rtol=0, atol=rtol)  # the spread is 1
    np.testing.assert_allclose(G, ref_G, rtol=rtol, atol=rtol * np.abs(ref_G).max())


def test_ridge_step_equals_a_direct_solve():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(40, 9))
    G = A.T @ A + 0.1 * np.eye(9)
    B = rng.normal(size=(9, 3))
    np.testing.assert_allclose(cho_solve(cholesky(G), B), np.linalg.solve(G, B), rtol=1e-10)


def test_cholesky_of_an_indefinite_matrix_raises_clearly():
    with pytest.raises(FloatingPointError, match="not positive definite"):
        cholesky(np.diag([1.0, -1.0, 1.0]))


def test_generalized_procrustes_is_on_the_manifold_and_optimal():
    rng = np.random.default_rng(2)
    A = rng.normal(size=(60, 8))
    G = A.T @ A / 60 + 0.05 * np.eye(8)
    C = rng.normal(size=(8, 3))
    W = generalized_procrustes(cholesky(G), C)
    np.testing.assert_allclose(W.T @ G @ W, np.eye(3), atol=1e-10)
    # no point of the manifold does better: random feasible points W = G^-1/2 Q
    vals, vecs = np.linalg.eigh(G)
    G_inv_half = vecs @ np.diag(vals**-0.5) @ vecs.T
    best = np.trace(W.T @ C)
    for _ in range(200):
        Q = np.linalg.qr(rng.normal(size=(8, 3)))[0]
        assert np.trace((G_inv_half @ Q).T @ C) <= best + 1e-12
    with pytest.raises(ValueError, match="at least as many features as outputs"):
        generalized_procrustes(cholesky(np.eye(2)), np.ones((2, 3)))


def test_gpi_is_monotone_and_solves_the_isotropic_case():
    rng = np.random.default_rng(3)
    M = rng.normal(size=(30, 10))
    A = M.T @ M
    B = rng.normal(size=(10, 4))
    W, objectives = stiefel_quadratic(A, B, max_iter=300, tol=0.0)
    np.testing.assert_allclose(W.T @ W, np.eye(4), atol=1e-10)
    # tol=0 stops at the first step that does not lower the objective: all 300 must
    assert len(objectives) == 300
    assert all(b <= a + 1e-9 * abs(a) for a, b in itertools.pairwise(objectives))
    # one step from a random point: with A~ = lambda_max I - A (PSD) the step maximises the
    # linearisation of the convex tr(W^T A~ W) + 2 tr(W^T B), so the objective falls by at
    # least the curvature term tr(D^T A~ D), D the step (strictly, unless the step is zero)
    objective = lambda W: np.sum(W * (A @ W)) - 2.0 * np.sum(W * B)  # noqa: E731
    W0 = np.linalg.qr(rng.normal(size=(10, 4)))[0]
    W1, (J1,) = stiefel_quadratic(A, B, W0, max_iter=1)
    A_tilde = np.linalg.eigvalsh(A).max() * np.eye(10) - A
    np.testing.assert_allclose(W1, polar(2.0 * A_tilde @ W0 + 2.0 * B), atol=1e-12)
    D = W1 - W0
    curvature = np.sum(D * (A_tilde @ D))
    assert curvature > 1.0  # a real step (measured: 19.6 against a decrease of 47.8)
    assert objective(W0) - J1 >= curvature
    assert J1 == pytest.approx(objective(W1), rel=1e-12)
    # run to the end: a stationary point of the constrained problem (Riemannian gradient
    # (I - W W^T) G + W skew(W^T G) ~ 0 with G = A W - B), the best of 20 random starts
    W, objectives = stiefel_quadratic(A, B, W0, max_iter=3000, tol=0.0)
    G = A @ W - B
    S = W.T @ G
    np.testing.assert_allclose(G, W @ (S + S.T) / 2, atol=1e-5)  # measured: 5e-7
    starts = [np.linalg.qr(rng.normal(size=(10, 4)))[0] for _ in range(20)]
    best = min(stiefel_quadratic(A, B, S0, max_iter=3000, tol=0.0)[1][-1] for S0 in starts)
    assert objectives[-1] == pytest.approx(best, rel=1e-12)  # measured: 4e-15
    # A = a I: the objective is a c - 2 tr(W^T B), minimised by polar(B)
    W_iso, _ = stiefel_quadratic(3.0 * np.eye(10), B, W0=np.linalg.qr(rng.normal(size=(10, 4)))[0])
    np.testing.assert_allclose(W_iso, polar(B), atol=1e-8)


# -- simplex weights -----------------------------------------------------------------------


def test_simplex_weights_are_the_constrained_minimiser():
    rng = np.random.default_rng(4)
    losses = rng.random(20)
    k = 12
    a, lam = simplex_weights(losses, k)
    assert a.sum() == pytest.approx(1.0) and np.all(a >= 0)
    assert np.count_nonzero(a) == k
    order = np.argsort(losses)
    assert np.all(np.diff(a[order]) <= 1e-15)  # non-increasing in the loss

    def objective(v):
        return v @ losses + lam * v @ v

    for _ in range(500):  # random points of the simplex never do better
        v = rng.dirichlet(np.ones(20) * rng.uniform(0.05, 2))
        assert objective(v) >= objective(a) - 1e-12
    tied, _ = simplex_weights(np.ones(5), 2)
    np.testing.assert_allclose(tied, np.full(5, 0.2))
    with pytest.raises(ValueError, match="k must be"):
        simplex_weights(losses, 20)


# -- the head ------------------------------------------------------------------------------


@pytest.mark.parametrize("head", ["stiefel", "gpi", "ridge"])
def test_objective_is_non_increasing_and_is_the_squared_hinge(make_problem, head):
    X, y = make_problem()
    Y = codes(y)
    fit = fit_svm_head(X, Y, head=head, max_iter=15, tol=0.0)
    curve = fit.objective_curve
    assert len(curve) == fit.n_iter == 15
    assert all(b <= a * (1 + 1e-10) for a, b in itertools.pairwise(curve))
    F = X @ fit.W + fit.b
    np.testing.assert_allclose(fit.outputs, F, rtol=1e-12, atol=1e-12)
    hinge = np.mean(np.sum(np.maximum(0.0, 1.0 - Y * F) ** 2, axis=1))
    assert curve[-1] == pytest.approx(hinge + fit.gamma * np.sum(fit.W**2), rel=1e-10)


def test_stiefel_head_satisfies_the_constraint_in_the_data_metric(make_problem):
    X, y = make_problem()
    fit = fit_svm_head(X, codes(y), head="stiefel", alpha=1e-3)
    Xc = X - X.mean(axis=0)
    G = Xc.T @ Xc / X.shape[0] + fit.gamma * np.eye(X.shape[1])
    np.testing.assert_allclose(fit.W.T @ G @ fit.W, np.eye(3), atol=1e-8)
    fit = fit_svm_head(X, codes(y), head="gpi")
    np.testing.assert_allclose(fit.W.T @ fit.W, np.eye(3), atol=1e-8)


def test_ridge_head_converges_to_the_l2_svm_optimum(make_problem):
    X, y = make_problem(n=200, p=8, classes=2, seed=3)
    Y = np.where(y == 1, 1.0, -1.0)[:, None]
    alpha = 1e-2
    fit = fit_svm_head(X, Y, head="ridge", alpha=alpha, max_iter=2000, tol=1e-15)
    gamma = fit.gamma

    def objective(theta):
        w, b = theta[:-1], theta[-1]
        r = np.maximum(0.0, 1.0 - Y[:, 0] * (X @ w + b))
        grad_f = -2.0 * Y[:, 0] * r / X.shape[0]
        value = np.mean(r**2) + gamma * w @ w
        return value, np.concatenate([X.T @ grad_f + 2 * gamma * w, [grad_f.sum()]])

    ref = scipy_minimize(objective, np.zeros(9), jac=True, method="L-BFGS-B", tol=1e-14)
    assert fit.objective_curve[-1] == pytest.approx(ref.fun, rel=1e-6)
    np.testing.assert_allclose(fit.W[:, 0], ref.x[:-1], rtol=1e-3, atol=1e-4)


# -- the pieces written once ---------------------------------------------------------------


def test_settings_and_keywords_give_the_same_fit(make_problem):
    X, y = make_problem()
    settings = HeadSettings(head="gpi", alpha=1e-3, max_iter=4, adaptive_weights=True)
    by_settings = fit_svm_head(X, codes(y), settings=settings)
    by_keywords = fit_svm_head(
        X, codes(y), head="gpi", alpha=1e-3, max_iter=4, adaptive_weights=True
    )
    for a, b in zip(by_settings, by_keywords, strict=True):
        np.testing.assert_array_equal(a, b)
    # keywords replace single fields of given settings
    replaced = fit_svm_head(X, codes(y), settings=settings, max_iter=1)
    assert replaced.n_iter == 1 and isinstance(replaced, HeadFit)
    # the fields still read by name, as from the dict this result replaced
    assert replaced["W"] is replaced.W and replaced["n_iter"] == 1 and replaced[0] is replaced.W
    assert set(replaced.keys()) == {
        "W",
        "b",
        "weights",
        "outputs",
        "targets",
        "objective_curve",
        "n_iter",
        "gamma",
        "alpha",
    }
    with pytest.raises(TypeError):
        fit_svm_head(X, codes(y), heads="gpi")


def test_squared_loss_is_one_weighted_ridge_solve(make_problem):
    X, _ = make_problem()
    rng = np.random.default_rng(0)
    Y, w = rng.normal(size=(300, 2)), rng.random(300)
    fit = fit_svm_head(X, Y, w, head="ridge", alpha=1e-2, loss="squared", max_iter=10)
    assert fit.n_iter == 1
    np.testing.assert_array_equal(fit.targets, Y)
    ref = Ridge(alpha=fit.gamma).fit(X, Y, sample_weight=w / w.sum())
    np.testing.assert_allclose(fit.W, ref.coef_.T, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(fit.b, ref.intercept_, rtol=1e-8, atol=1e-10)


def test_relative_scale_is_the_mean_variance():
    assert relative_scale(np.diag([1.0, 2.0, 6.0])) == 3.0
    assert relative_scale(np.zeros((3, 3))) == 1.0


def test_pick_alpha_is_the_gcv_minimiser(make_problem):
    X, y = make_problem()
    Y = codes(y)
    stats = GramStatistics().update(X, Y)
    scale = relative_scale(stats.covariance())
    alpha = pick_alpha(stats.scatter, stats.cross, stats.target_scatter, 300, 300, scale)
    scores, _ = ridge_gcv(
        stats.scatter,
        stats.cross,
        stats.target_scatter,
        300,
        [300 * a * scale for a in AUTO_ALPHAS],
    )
    assert alpha == AUTO_ALPHAS[int(np.argmin(scores))]


@pytest.mark.parametrize("weighted", [False, True])
def test_fit_head_auto_alpha_is_the_leave_one_out_minimiser(make_problem, weighted):
    X, y = make_problem()
    Y = codes(y)
    w = np.random.default_rng(0).integers(1, 4, 300).astype(float) if weighted else None
    scale = relative_scale(np.cov(X.T, aweights=w, bias=True))
    scores = ridge_loo(X, Y, [a * scale for a in AUTO_ALPHAS], sample_weight=w)
    fit = fit_svm_head(X, Y, w, alpha="auto", max_iter=1)
    assert fit.alpha == AUTO_ALPHAS[int(np.argmin(scores))]


def test_loo_alpha_on_many_rows_and_features_solves_on_a_subset(make_problem, monkeypatch):
    # n above LOO_ROWS and p above PRIMAL_MAX_FEATURES: the dual form on LOO_ROWS rows drawn
    # with a fixed seed, the penalty carried to all rows at a fixed total (alpha * m / n)
    monkeypatch.setattr(svm_head, "LOO_ROWS", 8)
    monkeypatch.setattr(svm_head, "PRIMAL_MAX_FEATURES", 10)
    X, y = make_problem()  # 300 x 12
    Y = codes(y)
    subset = np.sort(np.random.default_rng(0).choice(300, 8, replace=False))
    scores = ridge_loo(X[subset], Y[subset], [a * 2.0 for a in AUTO_ALPHAS])
    expected = AUTO_ALPHAS[int(np.argmin(scores))] * 8 / 300
    assert svm_head.loo_alpha(X, Y, scale=2.0) == pytest.approx(expected, rel=1e-12)
    # with weights, the fraction is the subset's share of the total weight
    w = np.linspace(1.0, 2.0, 300)
    scores = ridge_loo(
        X[subset], Y[subset], [a * 2.0 for a in AUTO_ALPHAS], sample_weight=w[subset]
    )
    expected = AUTO_ALPHAS[int(np.argmin(scores))] * w[subset].sum() / w.sum()
    assert svm_head.loo_alpha(X, Y, w, scale=2.0) == pytest.approx(expected, rel=1e-12)
    # p <= PRIMAL_MAX_FEATURES, LOO_ROWS < n: the primal form scores LOO_ROWS rows of the
    # full-data fit
    monkeypatch.setattr(svm_head, "LOO_ROWS", 20)
    monkeypatch.setattr(svm_head, "PRIMAL_MAX_FEATURES", 12)
    rows = np.sort(np.random.default_rng(0).choice(300, 20, replace=False))
    scores = ridge_loo(X, Y, [a * 2.0 for a in AUTO_ALPHAS], rows=rows)
    assert svm_head.loo_alpha(X, Y, scale=2.0) == AUTO_ALPHAS[int(np.argmin(scores))]


def test_solve_head_dispatches_to_the_three_steps():
    rng = np.random.default_rng(5)
    A = rng.normal(size=(40, 6))
    G = A.T @ A / 40 + 0.1 * np.eye(6)
    C = rng.normal(size=(6, 2))
    L = cholesky(G)
    np.testing.assert_allclose(solve_head("ridge", L, G, C, None, 10), np.linalg.solve(G, C))
    W = solve_head("stiefel", L, G, C, None, 10)
    np.testing.assert_allclose(W.T @ G @ W, np.eye(2), atol=1e-10)
    W = solve_head("gpi", L, G, C, None, 50)
    np.testing.assert_allclose(W.T @ W, np.eye(2), atol=1e-10)


def test_check_head_width():
    check_head_width("ridge", 2, 10)
    check_head_width("stiefel", 10, 10)
    with pytest.raises(ValueError, match=r"W\^T G W = I.*at least as many features as outputs"):
        check_head_width("stiefel", 2, 3)
    with pytest.raises(ValueError, match=r"W\^T W = I.*got 2 units for 3 outputs"):
        check_head_width("gpi", 2, 3, "units")
