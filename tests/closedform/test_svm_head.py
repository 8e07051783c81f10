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


# -- issue 21: properties the mutation run found unchecked ---------------------------------


def _binary(X, y):
    """One column of codes (two classes): no rank deficiency in the cross-moment."""
    return np.where(y == y.max(), 1.0, -1.0)[:, None]


def test_relative_scale_below_one_is_kept():
    assert relative_scale(np.diag([0.1, 0.3])) == pytest.approx(0.2)
    assert relative_scale(-np.eye(2)) == 1.0


def test_gpi_head_takes_its_steps_from_the_previous_weights():
    rng = np.random.default_rng(7)
    A = rng.normal(size=(40, 6))
    G = A.T @ A / 40 + 0.1 * np.eye(6)
    C = rng.normal(size=(6, 2))
    W0 = np.linalg.qr(rng.normal(size=(6, 2)))[0]
    # one step from W0 is one GPI step from W0, not from the default start
    one = solve_head("gpi", cholesky(G), G, C, W0, 1)
    np.testing.assert_allclose(one, stiefel_quadratic(G, C, W0, max_iter=1)[0], atol=1e-14)
    assert np.abs(one - stiefel_quadratic(G, C, max_iter=1)[0]).max() > 1e-3
    # many steps: a stationary point, (I - W W^T) R + W skew(W^T R) = 0 with R = G W - C
    W = solve_head("gpi", cholesky(G), G, C, W0, 5000)
    R = G @ W - C
    S = W.T @ R
    np.testing.assert_allclose(R, W @ (S + S.T) / 2, atol=1e-6)


def test_check_head_width_names_the_constraint_of_the_head():
    with pytest.raises(ValueError, match=r"^head='stiefel' constrains W\^T G W = I, which"):
        check_head_width("stiefel", 2, 3)
    with pytest.raises(ValueError, match=r"^head='gpi' constrains W\^T W = I, which"):
        check_head_width("gpi", 2, 3)


def test_simplex_weights_closed_form_at_the_edges():
    losses = np.array([0.3, 0.1, 0.7, 0.2])
    a, lam = simplex_weights(losses, 1)  # k = 1: all the weight on the smallest loss
    np.testing.assert_array_equal(a, [0.0, 1.0, 0.0, 0.0])
    assert lam == pytest.approx(0.5 * (0.2 - 0.1))
    with pytest.raises(ValueError, match=r"\[1, n - 1\] = \[1, 3\]; got 4\."):
        simplex_weights(losses, 4)
    with pytest.raises(ValueError, match=r"got 0\."):
        simplex_weights(losses, 0)
    # KKT: on the support 2 lam a_i + l_i is one constant (the simplex multiplier)
    losses = np.random.default_rng(8).random(15)
    a, lam = simplex_weights(losses, 6)
    on = a > 0
    assert on.sum() == 6
    np.testing.assert_allclose(2 * lam * a[on] + losses[on], np.sort(losses)[6], rtol=1e-12)
    # all tied: equal weights on the tied samples, and lambda 0
    a, lam = simplex_weights(np.array([2.0, 2.0, 2.0, 5.0]), 2)
    np.testing.assert_array_equal(a, [1 / 3, 1 / 3, 1 / 3, 0.0])
    assert lam == 0.0


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e3])
def test_simplex_weights_do_not_change_with_the_losses_scale(scale):
    k, t = 4, 1.0
    # differences of 1e-9 of the threshold are real: weights linear in the loss
    real = scale * np.array([t - 4e-9, t - 3e-9, t - 2e-9, t - 1e-9, t, t + 1.0])
    a, lam = simplex_weights(real, k)
    np.testing.assert_allclose(a, [0.4, 0.3, 0.2, 0.1, 0.0, 0.0], rtol=1e-6)
    assert lam == pytest.approx(0.5 * scale * 1e-8, rel=1e-6)
    # differences of 2e-13 of the threshold are rounding: the tied samples share equally
    tied = scale * np.array([t - 2e-13, t - 2e-13, t - 2e-13, t - 2e-13, t, t + 1.0])
    a, lam = simplex_weights(tied, k)
    np.testing.assert_array_equal(a, [0.2] * 5 + [0.0])
    assert lam == 0.0


def test_simplex_weights_keep_the_losses_dtype():
    for losses in (np.float32([0.1, 0.2, 0.4]), np.float32([0.5, 0.5, 0.5])):
        a, _ = simplex_weights(losses, 1)
        assert a.dtype == np.float32 and a.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("head", ["stiefel", "ridge"])
def test_fit_is_equivariant_to_the_features_scale(make_problem, head):
    # gamma = alpha * trace(cov) / p: scaling H by c scales gamma by c^2, W by 1 / c, and
    # leaves the outputs, the objective and the targets unchanged
    X, y = make_problem(n=120, p=6, seed=1)
    Y = _binary(X, y)
    fit = fit_svm_head(X, Y, head=head, alpha=1e-2, max_iter=4, tol=0.0)
    Xc = np.cov(X.T, bias=True)
    assert fit.gamma == pytest.approx(1e-2 * np.trace(Xc) / 6, rel=1e-12)
    scaled = fit_svm_head(10.0 * X, Y, head=head, alpha=1e-2, max_iter=4, tol=0.0)
    assert scaled.gamma == pytest.approx(100.0 * fit.gamma, rel=1e-12)
    np.testing.assert_allclose(scaled.W, fit.W / 10.0, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(scaled.outputs, fit.outputs, rtol=1e-8, atol=1e-10)
    assert scaled.objective_curve == pytest.approx(fit.objective_curve, rel=1e-8)
    assert fit.alpha == 1e-2 and np.allclose(fit.weights, 1 / 120)
    np.testing.assert_allclose(fit.targets, Y * np.maximum(1.0, Y * fit.outputs), rtol=1e-12)


@pytest.mark.parametrize(
    "keep_ratio, k", [(0.5, 149), (1 / 300, 1), (0.004, 1), (1.0, 299), (0.999, 299)]
)
def test_adaptive_weights_keep_round_rho_n_minus_one_samples(make_problem, keep_ratio, k):
    X, _ = make_problem()
    Y = np.random.default_rng(0).normal(size=(300, 2))  # real targets: no tied losses
    fit = fit_svm_head(
        X, Y, head="ridge", loss="squared", adaptive_weights=True, keep_ratio=keep_ratio,
        max_iter=2, tol=-np.inf,
    )  # fmt: skip
    assert fit.n_iter == 2 and np.count_nonzero(fit.weights) == k


def test_adaptive_objective_is_the_weighted_loss_plus_both_penalties(make_problem):
    # second iteration: weights from the first pass's losses (simplex_weights times the base
    # weights, renormalised), the (W, b) step is a weighted ridge fit, and J adds lam ||a||^2
    X, _ = make_problem(n=200, p=6, seed=2)
    rng = np.random.default_rng(0)
    Y, base = rng.normal(size=(200, 2)), rng.random(200) + 0.5
    base /= base.sum()
    kw = dict(head="ridge", loss="squared", alpha=1e-2, adaptive_weights=True, keep_ratio=0.6)
    first = fit_svm_head(X, Y, base, max_iter=1, **kw)
    fit = fit_svm_head(X, Y, base, max_iter=2, tol=0.0, **kw)
    plain = fit_svm_head(X, Y, base, head="ridge", loss="squared", alpha=1e-2)
    assert first.objective_curve == pytest.approx(plain.objective_curve, rel=1e-12)
    simplex, lam = simplex_weights(np.sum((first.outputs - Y) ** 2, axis=1), 119)
    a = simplex * base / np.sum(simplex * base)
    np.testing.assert_allclose(fit.weights, a, rtol=1e-12, atol=1e-15)
    ref = Ridge(alpha=fit.gamma).fit(X, Y, sample_weight=a)
    np.testing.assert_allclose(fit.W, ref.coef_.T, rtol=1e-7, atol=1e-10)
    losses = np.sum((fit.outputs - Y) ** 2, axis=1)
    J = a @ losses + fit.gamma * np.sum(fit.W**2) + lam * a @ a
    assert fit.objective_curve[1] == pytest.approx(J, rel=1e-10)


def test_held_out_rows_of_no_rows_or_of_zero_features():
    """No rows: an empty mask (a rank may hold none). Zero features: every projection is 0, so
    all rows are equal and fall on the same side (held out), with no division by the zero
    scale."""
    assert svm_head._held_out_rows(np.zeros((0, 3)), 0.1).shape == (0,)
    assert svm_head._held_out_rows(np.zeros((6, 3)), 0.1).all()
    assert svm_head._held_out_rows(np.zeros((6, 3)), 0.1, np.ones(6)).all()


def test_adaptive_weights_on_one_and_two_rows():
    one = fit_svm_head(np.array([[1.0, 2.0]]), np.array([[1.0]]), head="ridge",
                       loss="squared", adaptive_weights=True, max_iter=3)  # fmt: skip
    np.testing.assert_array_equal(one.weights, [1.0])
    X, Y = np.array([[0.0, 1.0], [2.0, 0.0]]), np.array([[1.0], [5.0]])
    # unequal base weights: the intercept leaves unequal residuals (r_1 = -3 r_2)
    two = fit_svm_head(X, Y, np.array([1.0, 3.0]), head="ridge", loss="squared", alpha=10.0,
                       adaptive_weights=True, max_iter=2, tol=-np.inf)  # fmt: skip
    np.testing.assert_array_equal(two.weights, [0.0, 1.0])  # k = 1 of 2 rows


def test_auto_iterations_outside_the_ridge_hinge_path_run_auto_max_iter(make_problem):
    X, y = make_problem(n=120, p=6, seed=3)
    Y = _binary(X, y)
    fit = fit_svm_head(X, Y, head="stiefel", max_iter="auto", tol=0.0)
    assert fit.n_iter == svm_head.AUTO_MAX_ITER
    # (adaptive weights change the objective: tol=-inf never stops)
    fit = fit_svm_head(X, Y, head="ridge", max_iter="auto", tol=-np.inf, adaptive_weights=True)
    assert fit.n_iter == svm_head.AUTO_MAX_ITER


def test_warm_targets_continue_the_alternation(make_problem):
    X, y = make_problem(n=150, p=8, seed=4)
    Y = codes(y)
    two = fit_svm_head(X, Y, head="stiefel", max_iter=2, tol=0.0)
    first = fit_svm_head(X, Y, head="stiefel", max_iter=1)
    again = fit_svm_head(X, Y, targets=first.targets, head="stiefel", max_iter=1)
    np.testing.assert_allclose(again.W, two.W, rtol=1e-10, atol=1e-12)
    assert again.objective_curve == pytest.approx(two.objective_curve[1:], rel=1e-12)
    # the ridge head's least-squares step on warm targets (|z| > 1) is a weighted ridge fit
    w = np.random.default_rng(1).random(150)
    warm = fit_svm_head(X, Y, w, targets=first.targets, head="ridge", max_iter=1, alpha=1e-2)
    ref = Ridge(alpha=warm.gamma).fit(X, first.targets, sample_weight=w / w.sum())
    np.testing.assert_allclose(warm.W, ref.coef_.T, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(warm.weights, w / w.sum(), rtol=1e-12)


@pytest.mark.parametrize("head, max_iter", [("stiefel", 5), ("ridge", 5), ("ridge", "auto")])
def test_callback_sees_every_iteration_and_can_stop(make_problem, head, max_iter):
    X, y = make_problem(n=150, p=8, seed=5)
    Y = codes(y)
    seen = []
    fit = fit_svm_head(X, Y, head=head, max_iter=max_iter, tol=0.0, callback=seen.append)
    assert [s["iteration"] for s in seen][: fit.n_iter] == list(range(1, fit.n_iter + 1))
    assert [s["objective"] for s in seen][: fit.n_iter] == fit.objective_curve
    assert fit.alpha == 1e-5 and np.allclose(fit.weights, 1 / 150)
    if head == "stiefel":

        def stop(info):
            if info["iteration"] == 2:
                raise StopIteration

        stopped = fit_svm_head(X, Y, head=head, max_iter=5, tol=0.0, callback=stop)
        assert isinstance(stopped, HeadFit) and stopped.n_iter == 2
        assert stopped.objective_curve == fit.objective_curve[:2]
    else:
        np.testing.assert_allclose(fit.targets, Y * np.maximum(1.0, Y * fit.outputs))


def test_tol_stops_on_a_relative_decrease(make_problem):
    X, y = make_problem(n=150, p=8, seed=6)
    # any decrease below 100 % of J stops at the second iteration
    assert fit_svm_head(X, codes(y), head="stiefel", max_iter=6, tol=1.0).n_iter == 2
    # the rule is relative: targets a million times larger stop at the same iteration
    rng = np.random.default_rng(2)
    Y = rng.normal(size=(150, 2))
    kw = dict(head="ridge", loss="squared", adaptive_weights=True, keep_ratio=0.5, tol=1e-3)
    small = fit_svm_head(X, Y, max_iter=30, **kw)
    large = fit_svm_head(X, 1e3 * Y, max_iter=30, **kw)
    assert 2 < small.n_iter < 30 and large.n_iter == small.n_iter


def test_non_finite_objective_raises_clearly():
    X = np.random.default_rng(0).normal(size=(20, 3))
    Y = np.ones((20, 1))
    Y[0] = np.inf
    with (
        pytest.raises(FloatingPointError, match=r"^The SVM head's objective is not finite; "
                      r"check the features for NaN/inf\.$"),
        np.errstate(all="ignore"),
    ):  # fmt: skip
        fit_svm_head(X, Y, head="ridge", loss="squared", adaptive_weights=True)


def test_penalised_retries_with_a_jitter_of_the_features_precision():
    # G0 indefinite by 1e-12 (float64 rounding) or 1e-8 (float32): the retry adds
    # 1e-10 or 10 eps_float32 of trace / p, which is enough, and no more than that
    G0 = np.diag([1.0, 1.0, -1e-12])
    G, L = svm_head._penalised(G0, 0.0, np.float64)
    np.testing.assert_allclose(L @ L.T, G, atol=1e-10)
    G, L = svm_head._penalised(G0, 0.0)
    np.testing.assert_allclose(L @ L.T, G, atol=1e-10)
    G0 = np.diag([1.0, 1.0, -1e-8])
    G, L = svm_head._penalised(G0, 0.0, np.float32)
    jitter = 10.0 * np.finfo(np.float32).eps * np.trace(G0) / 3
    np.testing.assert_allclose(L @ L.T, G + jitter * np.eye(3), rtol=0, atol=1e-15)
    with pytest.raises(FloatingPointError):
        svm_head._penalised(G0, 0.0, np.float64)


def test_loo_alpha_floor_follows_the_features_precision():
    # noise-free linear targets: the leave-one-out error falls with the penalty, so the
    # smallest candidate wins: 1e-8 in float64, the first at least 10 eps_float32 in float32
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 5))
    Y = X @ rng.normal(size=(5, 2))
    assert svm_head.loo_alpha(X, Y) == AUTO_ALPHAS[0]
    floor = 10 * np.finfo(np.float32).eps
    assert svm_head.loo_alpha(X.astype(np.float32), Y) == min(a for a in AUTO_ALPHAS if a >= floor)
    # the default scale is 1: the penalties are the candidates themselves
    Y = np.sign(X[:, :1] + rng.normal(size=(60, 1)))
    scores = ridge_loo(X, Y, list(AUTO_ALPHAS))
    assert svm_head.loo_alpha(X, Y) == AUTO_ALPHAS[int(np.argmin(scores))]


def test_auto_alpha_with_integer_weights_is_that_of_the_repeated_rows(make_problem):
    X, y = make_problem(n=80, seed=0)
    Y = codes(y)
    w = np.random.default_rng(0).integers(1, 6, 80)
    weighted = fit_svm_head(X, Y, w.astype(float), alpha="auto", max_iter=1).alpha
    repeated = fit_svm_head(np.repeat(X, w, 0), np.repeat(Y, w, 0), alpha="auto", max_iter=1)
    assert weighted == repeated.alpha
    assert weighted != fit_svm_head(X, Y, alpha="auto", max_iter=1).alpha  # measured: 10x apart


@pytest.mark.parametrize(
    "settings",
    [
        dict(head="ridge", max_iter=5),
        dict(head="ridge", max_iter="auto"),
        dict(head="ridge", alpha="auto", max_iter=3),
        dict(head="ridge", loss="squared", adaptive_weights=True, keep_ratio=0.7, max_iter=3),
        dict(head="stiefel", max_iter=3, binary=True),
        dict(head="gpi", max_iter=3, binary=True, adaptive_weights=True),
    ],
)
def test_torch_tensors_give_the_numpy_fit(make_problem, settings):
    # array API: the same fit from torch tensors (the Stiefel heads on one column of codes,
    # where polar(L^-1 C) is unique; with c one-vs-rest columns C has rank c - 1)
    torch = pytest.importorskip("torch")
    settings = dict(settings)
    X, y = make_problem(n=200, p=8, seed=7)
    Y = _binary(X, y) if settings.pop("binary", False) else codes(y)
    w = np.random.default_rng(3).random(200) + 0.5
    ref = fit_svm_head(X, Y, w, tol=0.0, **settings)
    fit = fit_svm_head(*map(torch.from_numpy, (X, Y, w)), tol=0.0, **settings)
    assert fit.n_iter == ref.n_iter and fit.alpha == ref.alpha
    for name in ("W", "b", "weights", "outputs", "targets"):
        value = getattr(fit, name)
        assert value.dtype == torch.float64, name
        np.testing.assert_allclose(value.numpy(), getattr(ref, name), rtol=1e-9, atol=1e-11)
    assert fit.objective_curve == pytest.approx(ref.objective_curve, rel=1e-10)
    # float32 features: the held-out moments mix float32 rows and float64 weights
    fit32 = fit_svm_head(torch.from_numpy(X).float(), torch.from_numpy(Y), max_iter="auto",
                         head="ridge")  # fmt: skip
    ref32 = fit_svm_head(X.astype(np.float32), Y, max_iter="auto", head="ridge")
    assert fit32.n_iter == ref32.n_iter
    np.testing.assert_allclose(fit32.W.numpy(), ref32.W, rtol=1e-4, atol=1e-6)


def _spy_problems(monkeypatch):
    seen = []
    paths = svm_head._ridge_hinge_paths

    def spy(H, Y, Z, problems, *rest, **kw):
        seen.append(problems)
        return paths(H, Y, Z, problems, *rest, **kw)

    monkeypatch.setattr(svm_head, "_ridge_hinge_paths", spy)
    return seen


@pytest.mark.parametrize("n_held, validated", [(0, False), (1, True), (18, True), (19, False)])
def test_held_out_rows_need_one_row_and_leave_two(make_problem, monkeypatch, n_held, validated):
    X, y = make_problem(n=20, p=8, classes=2, seed=8)
    mask = np.arange(20) < n_held
    monkeypatch.setattr(svm_head, "_held_out_rows", lambda *args, **kw: mask)
    seen = _spy_problems(monkeypatch)
    fit = fit_svm_head(X, _binary(X, y), head="ridge", alpha=1e-2, max_iter="auto")
    assert len(seen[0]) == 1 + validated
    if validated:
        np.testing.assert_allclose(seen[0][1].weights, np.where(mask, 0.0, 1 / (20 - n_held)))
    else:
        assert fit.n_iter == 1  # the least-squares fit


def test_held_out_rows_with_all_the_weight_leave_nothing_to_train_on(make_problem, monkeypatch):
    X, y = make_problem(n=20, p=8, classes=2, seed=8)
    mask = np.arange(20) < 10
    w = np.where(mask, 1.0, 0.0)  # the training rows have no weight
    monkeypatch.setattr(svm_head, "_held_out_rows", lambda *args, **kw: mask)
    seen = _spy_problems(monkeypatch)
    with np.errstate(all="raise"):
        fit = fit_svm_head(X, _binary(X, y), w, head="ridge", alpha=1e-2, max_iter="auto")
    assert len(seen[0]) == 1 and fit.n_iter == 1


def test_training_moments_come_from_the_full_ones_without_a_second_pass(make_problem, monkeypatch):
    # the held-out rows include a zero-weight row far out, which must not set the hash's scale
    X, y = make_problem(n=300, p=8, classes=2, seed=9)
    X = np.vstack([X, 100.0 * X[:1]])
    Y = _binary(X, np.append(y, y[0]))
    a = np.append(np.random.default_rng(4).random(300) + 0.5, 0.0)
    a /= a.sum()
    calls = []
    moments = svm_head.weighted_moments
    monkeypatch.setattr(
        svm_head, "weighted_moments", lambda *args, **kw: calls.append(1) or moments(*args, **kw)
    )
    seen = _spy_problems(monkeypatch)
    fit = fit_svm_head(X, Y, a, head="ridge", alpha=1e-3, max_iter="auto")
    assert len(calls) == 1  # the full moments only
    _, train = seen[0]
    held = train.weights == 0.0
    assert held[-1] and not held[:-1].all()
    np.testing.assert_array_equal(held[:-1], svm_head._held_out_rows(X[:-1], 0.1))
    np.testing.assert_allclose(train.weights[~held], a[~held] / a[~held].sum(), rtol=1e-12)
    mean, G0 = weighted_moments(X[~held], a[~held])
    np.testing.assert_allclose(train.mean, mean, atol=1e-12)
    np.testing.assert_allclose(train.G - G0, fit.gamma * np.eye(8), atol=1e-12)
    # when the difference is not positive definite the moments are accumulated instead
    penalised = svm_head._penalised

    factored = []

    def indefinite_once(G0, gamma, dtype=None):
        factored.append(1)
        if len(factored) == 2:  # the training rows' difference, after the full problem's
            raise FloatingPointError
        return penalised(G0, gamma, dtype)

    seen.clear()
    calls.clear()
    monkeypatch.setattr(svm_head, "_penalised", indefinite_once)
    fit_svm_head(X, Y, a, head="ridge", alpha=1e-3, max_iter="auto")
    assert len(calls) == 2
    _, retrain = seen[0]
    np.testing.assert_array_equal(retrain.weights, train.weights)
    np.testing.assert_allclose(retrain.mean, mean, atol=1e-12)
    np.testing.assert_allclose(retrain.G, train.G, atol=1e-12)
    np.testing.assert_allclose(retrain.L @ retrain.L.T, train.G, atol=1e-12)


@pytest.mark.parametrize(
    "columns, classes, seed", [(1, 2, 10), (1, 2, 12), (2, 2, 6), (3, 3, 3), (3, 3, 10)]
)
def test_auto_iterations_pick_the_best_held_out_count(
    make_problem, monkeypatch, columns, classes, seed
):
    # the held-out accuracy compares signs for one column of codes, argmaxes for several;
    # the training rows' path replayed count by count picks the iterate (largest among ties);
    # the seeds give counts 1 and 3, and choices that other scores (a fixed class, the first
    # column's sign) would not make
    X, y = make_problem(n=400, p=10, classes=classes, seed=seed)
    X = X + np.random.default_rng(5).normal(scale=2.0, size=X.shape)  # overlapping classes
    Y = _binary(X, y) if columns == 1 else codes(y)
    paths = svm_head._ridge_hinge_paths
    seen = _spy_problems(monkeypatch)
    fit = fit_svm_head(X, Y, head="ridge", alpha=1e-3, max_iter="auto")
    full, train = seen[0]
    held = train.weights == 0.0
    scores = []
    for k in range(1, svm_head.AUTO_MAX_ITER + 1):
        ((W, b, _, _),) = paths(X, Y, Y, [train], fit.gamma, k, 1e-4, lambda *x: None)
        F = X[held] @ W + b
        right = F[:, 0] * Y[held, 0] > 0.0 if columns == 1 else F.argmax(1) == Y[held].argmax(1)
        scores.append(right.mean())
    assert len(set(scores)) > 1  # the counts differ on the held-out rows
    best = max(range(len(scores)), key=lambda k: (scores[k], k))
    assert fit.n_iter == min(best + 1, len(paths(X, Y, Y, [full], fit.gamma, 10, 1e-4,
                                                 lambda *x: None)[0][3]))  # fmt: skip


@pytest.fixture
def one_rank_comm(one_rank_group):
    """A Communicator over a gloo process group of this process alone."""
    from solvers.distributed import Communicator

    return Communicator(one_rank_group)


@pytest.mark.parametrize(
    "settings",
    [
        dict(head="ridge", max_iter="auto"),
        dict(head="ridge", alpha="auto", max_iter=3),
        dict(head="stiefel", adaptive_weights=True, keep_ratio=0.7, max_iter=3),
        dict(head="gpi", max_iter=3),
        dict(head="ridge", loss="squared", adaptive_weights=True, keep_ratio=0.4, max_iter=3),
    ],
)
def test_one_rank_process_group_gives_the_single_process_fit(make_problem, one_rank_comm, settings):
    # every collective of one rank is the identity: the distributed paths (gathered losses,
    # this rank's slice of the simplex weights, summed moments) must give the same fit
    X, y = make_problem(n=200, p=8, seed=11)
    Y = codes(y)
    w = np.random.default_rng(6).random(200) + 0.5
    ref = fit_svm_head(X, Y, w, tol=0.0, **settings)
    fit = fit_svm_head(X, Y, w, tol=0.0, comm=one_rank_comm, **settings)
    assert fit.n_iter == ref.n_iter and fit.alpha == ref.alpha
    for name in ("W", "b", "weights", "outputs", "targets"):
        np.testing.assert_allclose(getattr(fit, name), getattr(ref, name), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("primal_max_features", [12, 4])
def test_one_rank_leave_one_out_on_drawn_rows_is_the_single_process_one(
    make_problem, one_rank_comm, monkeypatch, primal_max_features
):
    # more rows than LOO_ROWS: the primal form scores drawn rows, the dual one gathers them
    monkeypatch.setattr(svm_head, "LOO_ROWS", 40)
    monkeypatch.setattr(svm_head, "PRIMAL_MAX_FEATURES", primal_max_features)
    X, y = make_problem(n=300, p=8, seed=12)
    Y = codes(y)
    w = np.random.default_rng(7).random(300) + 0.5
    for weights in (None, w):
        expected = svm_head.loo_alpha(X, Y, weights, scale=1.5)
        assert svm_head.loo_alpha(X, Y, weights, scale=1.5, comm=one_rank_comm) == expected


def test_gpi_head_warm_starts_each_step_from_the_previous_weights(make_problem):
    # with one GPI step per (W, b) step, the second step is one GPI step from the first W
    # on the retargeted cross-moment (not a step from GPI's default start)
    X, y = make_problem(n=150, p=8, seed=13)
    Y = codes(y)
    kw = dict(head="gpi", gpi_max_iter=1, alpha=1e-2, tol=0.0)
    first = fit_svm_head(X, Y, max_iter=1, **kw)
    second = fit_svm_head(X, Y, max_iter=2, **kw)
    Xc = X - X.mean(axis=0)
    G = Xc.T @ Xc / 150 + first.gamma * np.eye(8)
    C = Xc.T @ first.targets / 150
    W = stiefel_quadratic(G, C, first.W, max_iter=1)[0]
    np.testing.assert_allclose(second.W, W, rtol=1e-9, atol=1e-12)
    assert np.abs(W - stiefel_quadratic(G, C, max_iter=1)[0]).max() > 1e-3


def _reduce(*labels):
    return [("all_reduce", label) for label in labels]


def _gather(*labels):
    # all_gather_rows: a header of row counts, then the padded rows
    return [("all_gather", label) for label in labels for _ in range(2)]


GRAM = _reduce(
    "Checking the Gram statistics",
    "Summing the Gram statistics' means",
    "Summing the Gram statistics",
)
START = _reduce("Counting the SVM head's rows", "Summing the sample weights") + GRAM
OBJECTIVE = _reduce("Summing the squared-hinge objective")
HINGE_GRADIENTS = _reduce(
    "Summing the squared-hinge gradients", "Summing the intercepts' gradients"
)
EXACT_SEARCH = _gather("Gathering the line search's breakpoints") + OBJECTIVE
PATHS = _reduce("Summing the SVM head's cross-moments", "Summing means")
HELD_OUT = _reduce(
    "The held-out hash's scale",
    "Counting the held-out rows",
    "Summing held rows",
    "Summing the held-out rows' scatter",
)
ACCURACY = _reduce("Summing the held-out accuracy")
LOO = _gather("Counting the leave-one-out rows") + _reduce(
    "Counting the rows of the leave-one-out scores", "Summing the leave-one-out weights"
)
LOO_SCORES = _reduce(
    "Summing the cross-moments",
    "Summing the scored rows' weights",
    "Summing the leave-one-out scores",
)
WEIGHTS_STEP = _reduce("Summing the targets' mean", "Summing the cross-moments")
OBJECTIVE_SUM = _reduce("Summing the SVM head's objective")
REWEIGHT = (
    _gather("Counting the rows to reweight", "Gathering the losses")
    + _reduce("Summing the adaptive weights")
    + GRAM
)
#: the collectives of a fit, in order, for the settings of the one-rank test above
PROTOCOLS = {
    "ridge-auto-iterations": START + HELD_OUT + PATHS + OBJECTIVE * 2 + ACCURACY
    + (HINGE_GRADIENTS + EXACT_SEARCH * 2 + ACCURACY) * 9,
    "ridge-auto-alpha": START + LOO + _reduce("Summing the targets' weighted mean") + LOO_SCORES
    + PATHS + OBJECTIVE + (HINGE_GRADIENTS + EXACT_SEARCH) * 2,
    "stiefel-adaptive": START + WEIGHTS_STEP + OBJECTIVE_SUM + REWEIGHT + WEIGHTS_STEP
    + OBJECTIVE_SUM,
    "gpi": START + (WEIGHTS_STEP + OBJECTIVE_SUM) * 3,
    "squared-adaptive": START + (WEIGHTS_STEP + OBJECTIVE_SUM + REWEIGHT) * 2 + WEIGHTS_STEP
    + OBJECTIVE_SUM,
}  # fmt: skip


@pytest.fixture
def collectives(monkeypatch):
    """The ``(collective, label)`` of every collective the communicators run, in order."""
    from solvers.distributed import Communicator

    seen, run = [], Communicator._run

    def recorded(self, what, collective, call):
        seen.append((collective, what))
        return run(self, what, collective, call)

    monkeypatch.setattr(Communicator, "_run", recorded)
    return seen


@pytest.mark.parametrize(
    ("protocol", "settings"),
    [
        ("ridge-auto-iterations", dict(head="ridge", max_iter="auto")),
        ("ridge-auto-alpha", dict(head="ridge", alpha="auto", max_iter=3)),
        ("stiefel-adaptive",
         dict(head="stiefel", adaptive_weights=True, keep_ratio=0.7, max_iter=3)),
        ("gpi", dict(head="gpi", max_iter=3)),
        ("squared-adaptive",
         dict(head="ridge", loss="squared", adaptive_weights=True, keep_ratio=0.4, max_iter=3)),
    ],
)  # fmt: skip
def test_a_distributed_fit_runs_its_documented_collectives(
    make_problem, one_rank_comm, collectives, protocol, settings
):
    """Every rank must issue the same collectives in the same order, and a failed one raises an
    error naming its step: the sequence of a fit (per iteration: the summed moments, the
    gathered losses of the adaptive weights, the gathered breakpoints of the exact line search,
    the held-out accuracy) is part of the contract, as is each label; a sum computed on this
    rank's rows alone (a communicator dropped) leaves a collective out."""
    X, y = make_problem(n=200, p=8, seed=11)
    w = np.random.default_rng(6).random(200) + 0.5
    fit = fit_svm_head(X, codes(y), w, tol=0.0, comm=one_rank_comm, **settings)
    assert collectives == PROTOCOLS[protocol], fit.n_iter


def test_an_unweighted_distributed_fit_counts_the_rows_for_its_weights(
    make_problem, one_rank_comm, collectives
):
    X, y = make_problem(n=200, p=8, seed=11)
    fit_svm_head(X, codes(y), None, comm=one_rank_comm, head="gpi", max_iter=1)
    counts = _reduce("Counting the SVM head's rows", "Counting the rows")
    assert collectives == counts + GRAM + WEIGHTS_STEP + OBJECTIVE_SUM


def test_held_out_moments_accumulated_again_are_summed_over_the_ranks(
    make_problem, one_rank_comm, collectives, monkeypatch
):
    """When the training rows' moments lose definiteness as a difference, they are accumulated
    again from the rows, over every rank."""
    penalised, factored = svm_head._penalised, []

    def indefinite_once(G0, gamma, dtype):
        factored.append(dtype)
        if len(factored) == 2:  # the training rows' difference, after the full problem's
            raise FloatingPointError
        return penalised(G0, gamma, dtype)

    monkeypatch.setattr(svm_head, "_penalised", indefinite_once)
    X, y = make_problem(n=200, p=8, seed=11)
    fit_svm_head(X, codes(y), None, comm=one_rank_comm, head="ridge", max_iter="auto")
    prefix = START[:1] + _reduce("Counting the rows") + GRAM + HELD_OUT
    assert collectives[: len(prefix) + len(GRAM)] == prefix + GRAM
    assert collectives[len(prefix) + len(GRAM) :][:2] == PATHS


@pytest.mark.parametrize(
    "settings",
    [
        dict(head="ridge", max_iter="auto"),
        dict(head="stiefel", adaptive_weights=True, keep_ratio=0.7, max_iter=3),
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_factorisation_knows_the_features_precision(make_problem, monkeypatch, settings,
                                                          dtype):  # fmt: skip
    """The retry jitter of a factorisation follows the features' precision (10 eps of their
    dtype): the full problem's, the training rows', the re-accumulated and the reweighted ones
    are all told the features' dtype."""
    penalised, factored = svm_head._penalised, []

    def recorded(G0, gamma, features_dtype):
        factored.append(features_dtype)
        if len(factored) == 2 and settings["max_iter"] == "auto":
            raise FloatingPointError  # the training rows' difference: accumulated again
        return penalised(G0, gamma, features_dtype)

    monkeypatch.setattr(svm_head, "_penalised", recorded)
    X, y = make_problem(n=200, p=8, seed=11)
    fit_svm_head(X.astype(dtype), codes(y), None, tol=0.0, **settings)
    # auto: the full problem, the training rows' difference and their re-accumulation;
    # adaptive: the full problem and one reweighting (the second raises the objective)
    assert factored == [np.dtype(dtype)] * (3 if settings["max_iter"] == "auto" else 2)


@pytest.mark.parametrize("primal_max_features", [12, 4])
@pytest.mark.parametrize("weighted", [False, True])
def test_leave_one_out_on_drawn_rows_runs_its_documented_collectives(
    make_problem, one_rank_comm, collectives, monkeypatch, primal_max_features, weighted
):
    """The primal form sums the drawn rows' statistics over the ranks; the dual one gathers the
    drawn rows (and their weights) to every rank."""
    monkeypatch.setattr(svm_head, "LOO_ROWS", 40)
    monkeypatch.setattr(svm_head, "PRIMAL_MAX_FEATURES", primal_max_features)
    X, y = make_problem(n=300, p=8, seed=12)
    w = np.random.default_rng(7).random(300) + 0.5 if weighted else None
    svm_head.loo_alpha(X, codes(y), w, scale=1.5, comm=one_rank_comm)
    if primal_max_features == 12:
        expected = (
            LOO[: 3 + weighted] + _reduce("Summing the targets' weighted mean") + GRAM + LOO_SCORES
        )
    else:
        drawn = _gather("Gathering the drawn rows", "Gathering the drawn rows' targets")
        weights = _gather("Gathering the drawn rows' weights")
        weights += _reduce("Summing the sample weights")
        expected = _gather("Counting the leave-one-out rows") + weights * weighted + drawn
    assert collectives == expected
