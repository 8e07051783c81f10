# SPDX-License-Identifier: BSD-3-Clause
"""The L2-SVM by preconditioned CG (closedform.squared_hinge) against its definition."""

import itertools

import numpy as np
import pytest
from scipy.optimize import minimize, minimize_scalar

from closedform import svm_head
from closedform.squared_hinge import HingeProblem, exact_line_search, squared_hinge_cg
from closedform.svm_head import HeadSettings, fit_svm_head
from solvers.linalg import cholesky, weighted_moments


def _problem(n=400, p=15, c=3, seed=0, flip=0.1):
    rng = np.random.default_rng(seed)
    H = rng.standard_normal((n, p))
    labels = np.argmax(H[:, :c] + 0.3 * rng.standard_normal((n, c)), axis=1)
    noisy = rng.random(n) < flip  # overlapping classes: many samples inside the margin
    labels[noisy] = rng.integers(0, c, noisy.sum())
    Y = -np.ones((n, c))
    Y[np.arange(n), labels] = 1.0
    weights = rng.random(n) + 0.5
    return H, Y, weights / weights.sum()


def _objective(theta, H, Y, a, mean, gamma):
    p, c = H.shape[1], Y.shape[1]
    W, b = theta[: p * c].reshape(p, c), theta[p * c :]
    R = np.clip(1.0 - Y * ((H - mean) @ W + b), 0.0, None)
    J = a @ np.sum(R * R, axis=1) + gamma * np.sum(W * W)
    G = a[:, None] * Y * R
    grad = np.concatenate([(-2.0 * (H - mean).T @ G + 2.0 * gamma * W).ravel(), -2.0 * G.sum(0)])
    return J, grad


def _setup(H, a, gamma):
    mean, G0 = weighted_moments(H, a)
    return mean, cholesky(G0 + gamma * np.eye(H.shape[1]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cg_reaches_the_svm_optimum_of_a_reference_solver(seed):
    H, Y, a = _problem(seed=seed)
    gamma = 0.01
    mean, L = _setup(H, a, gamma)
    p, c = H.shape[1], Y.shape[1]
    ((W, b, F, curve),) = squared_hinge_cg(
        H, Y, [HingeProblem(a, mean, L)], gamma, [(np.zeros((p, c)), np.zeros(c))],
        max_iter=200, tol=0.0,
    )  # fmt: skip
    ref = minimize(
        _objective, np.zeros(p * c + c), args=(H, Y, a, mean, gamma), jac=True,
        method="L-BFGS-B", options={"maxiter": 10_000, "ftol": 1e-15, "gtol": 1e-12},
    )  # fmt: skip
    assert curve[-1] <= ref.fun + 1e-12  # measured: equal to 1e-16
    np.testing.assert_allclose(W, ref.x[: p * c].reshape(p, c), atol=1e-5)  # measured 4e-7
    np.testing.assert_allclose(b, ref.x[p * c :], atol=1e-5)
    # the returned outputs are those of the returned weights
    np.testing.assert_allclose(F, (H - mean) @ W + b, atol=1e-10)
    assert all(later <= earlier + 1e-15 for earlier, later in itertools.pairwise(curve))


def test_cg_beats_the_alternation_at_equal_iterations():
    # the retargeting alternation is the same preconditioned direction with a unit step
    # on separable classes, where most samples lie beyond the margin and the
    # alternation's majorisation is loose
    H, Y, a = _problem(n=600, p=30, seed=3, flip=0.0)
    settings = HeadSettings(head="ridge", alpha=1e-3, tol=0.0, max_iter=10)
    optimum = fit_svm_head(H, Y, a, settings._replace(max_iter=300)).objective_curve[-1]
    cg = fit_svm_head(H, Y, a, settings)
    mean, G0 = weighted_moments(H, a)
    problem = svm_head._Problem(a, mean, *svm_head._penalised(G0, cg.gamma))
    Z, curve = Y, []
    for _ in range(10):
        W, _, F = svm_head._weights_step(H, Z, problem, None, settings)
        Z, losses = svm_head._retarget(F, Y, Z, "squared_hinge")
        curve.append(a @ losses + cg.gamma * np.sum(W * W))
    assert cg.n_iter == 10
    assert cg.objective_curve[0] == pytest.approx(curve[0], rel=1e-12)
    gap_cg, gap_alternation = cg.objective_curve[-1] - optimum, curve[-1] - optimum
    assert gap_cg < 0.01 * gap_alternation


@pytest.mark.parametrize("seed", range(8))
def test_exact_line_search_is_the_minimiser_along_the_direction(seed):
    rng = np.random.default_rng(seed)
    n, c = 300, 4
    F, dF = rng.standard_normal((n, c)), rng.standard_normal((n, c))
    if seed % 2:  # ties: repeated breakpoints, entries with q = 0 and slack exactly 0
        F[:50], dF[:50] = F[50:100], dF[50:100]
        dF[100:120] = 0.0
        F[120:130] = 1.0
    Y = np.where(rng.random((n, c)) < 0.5, -1.0, 1.0)
    a = rng.random(n)
    a /= a.sum()
    W, D = rng.standard_normal(20), rng.standard_normal(20)
    gamma = [0.1, 1e-4][seed % 2]
    if (a[:, None] * -2 * np.clip(1 - Y * F, 0, None) * Y * dF).sum() + 2 * gamma * W @ D > 0:
        dF, D = -dF, -D  # a descent direction

    def phi(s):
        hinge = np.clip(1 - Y * (F + s * dF), 0, None)
        return a @ np.sum(hinge**2, 1) + gamma * np.sum((W + s * D) ** 2)

    s = exact_line_search(F, dF, Y, a, gamma, W @ D, D @ D)
    ref = minimize_scalar(phi, bounds=(0.0, 100.0), method="bounded", options={"xatol": 1e-12})
    assert s == pytest.approx(ref.x, abs=1e-7)
    assert phi(s) <= ref.fun + 1e-14
    # phi' vanishes there (phi is differentiable: its pieces join with equal slopes)
    h = 1e-6 * max(s, 1.0)
    assert abs(phi(s + h) - phi(s - h)) / (2 * h) < 1e-6
    # an ascent direction is refused: no step
    assert exact_line_search(F, -dF, Y, a, gamma, -(W @ D), D @ D) == 0.0


def test_exact_line_search_beyond_every_breakpoint_and_on_torch():
    torch = pytest.importorskip("torch")
    # every entry stays active: phi is one quadratic, minimised at -A0 / B0
    F, dF = np.full((5, 2), -3.0), np.full((5, 2), 0.5)
    Y, a = np.ones((5, 2)), np.full(5, 0.2)
    s = exact_line_search(F, dF, Y, a, 0.0, 0.0, 0.0)
    assert s == pytest.approx(8.0)  # 1 - (-3 + 0.5 s) = 0 at s = 8, the only breakpoint
    # with the penalty: phi'(s) = 3 s - 28 up to s = 8, then 2 (s - 10): the root is 10
    s = exact_line_search(F, dF, Y, a, 1.0, -10.0, 1.0)
    assert s == pytest.approx(10.0)
    as_torch = [torch.from_numpy(v) for v in (F, dF, Y, a)]
    assert exact_line_search(*as_torch, 1.0, -10.0, 1.0) == pytest.approx(s, rel=1e-14)


def test_head_max_iter_auto_picks_the_best_held_out_count(monkeypatch):
    # the fit returned is the full path's iterate at the count whose fit on the training rows
    # scores best on the held-out rows (the largest among ties), and the training rows'
    # moments are the full moments less the held-out rows'
    H, Y, a = _problem(n=500, p=10, seed=4)
    settings = HeadSettings(head="ridge", alpha=1e-3, max_iter="auto")
    seen = []
    paths = svm_head._ridge_hinge_paths

    def spy(H_, Y_, Z, problems, *rest):
        seen.append(problems)
        return paths(H_, Y_, Z, problems, *rest)

    monkeypatch.setattr(svm_head, "_ridge_hinge_paths", spy)
    fit = fit_svm_head(H, Y, a, settings)
    full, train = seen[0]
    held = train.weights == 0.0
    assert 30 <= held.sum() <= 70  # about 10 %
    np.testing.assert_array_equal(held, svm_head._held_out_rows(H, 0.1, a))
    mean, G0 = weighted_moments(H[~held], a[~held])
    np.testing.assert_allclose(train.mean, mean, atol=1e-12)
    np.testing.assert_allclose(train.G - G0, fit.gamma * np.eye(10), atol=1e-12)
    # replay each count separately, on the training rows and on all rows
    scores, fits = [], []
    for k in range(1, svm_head.AUTO_MAX_ITER + 1):
        ((W, b, _, _),) = paths(H, Y, Y, [train], fit.gamma, k, settings.tol, lambda *x: None)
        guess = np.argmax(H[held] @ W + b, axis=1)
        scores.append(a[held] @ (guess == np.argmax(Y[held], axis=1)))
        fits.append(paths(H, Y, Y, [full], fit.gamma, k, settings.tol, lambda *x: None)[0])
    best = max(range(len(scores)), key=lambda k: (scores[k], k))
    assert fit.n_iter == min(best + 1, len(fits[-1][3]))
    np.testing.assert_allclose(fit.W, fits[best][0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(fit.b, fits[best][1], rtol=1e-12, atol=1e-14)
    assert fit.objective_curve == pytest.approx(fits[best][3], rel=1e-12)


def test_too_few_rows_to_hold_out_give_the_least_squares_fit(monkeypatch):
    H, Y, a = _problem(n=2, p=3, seed=5)  # holding any row out would leave one
    auto = fit_svm_head(H, Y, a, HeadSettings(head="ridge", alpha=1e-3, max_iter="auto"))
    least_squares = fit_svm_head(H, Y, a, HeadSettings(head="ridge", alpha=1e-3, max_iter=1))
    assert auto.n_iter == 1
    np.testing.assert_array_equal(auto.W, least_squares.W)
    # held-out rows without weight: nothing to score them by, the same fallback
    H, Y, a = _problem(n=200, p=5, seed=6)
    mask = np.arange(200) % 10 == 0
    a[mask] = 0.0
    monkeypatch.setattr(svm_head, "_held_out_rows", lambda *args: mask)
    auto = fit_svm_head(H, Y, a, HeadSettings(head="ridge", alpha=1e-3, max_iter="auto"))
    assert auto.n_iter == 1


def test_held_out_rows_follow_the_rows_values():
    # repeated rows fall on the same side: integer weights hold out what repetition does
    H, _, _ = _problem(n=300, p=8, seed=6)
    held = svm_head._held_out_rows(H, 0.1)
    assert 0.05 < held.mean() < 0.15
    order = np.random.default_rng(0).permutation(300)
    np.testing.assert_array_equal(svm_head._held_out_rows(H[order], 0.1), held[order])
    repeated = np.repeat(H, 3, axis=0)
    np.testing.assert_array_equal(svm_head._held_out_rows(repeated, 0.1), np.repeat(held, 3))
    # rows of zero weight do not count: as if they were removed
    weights = np.ones(300)
    weights[held] = 0.0
    kept = svm_head._held_out_rows(H[~held], 0.1)
    np.testing.assert_array_equal(svm_head._held_out_rows(H, 0.1, weights)[~held], kept)
    # nor with the features' scale, float32 or float64 (the penalty is relative)
    for scale in (1e-6, 1e6):
        assert np.mean(svm_head._held_out_rows(scale * H, 0.1) != held) < 0.01  # rounding
        in_float32 = svm_head._held_out_rows((scale * H).astype(np.float32), 0.1)
        assert 0.05 < in_float32.mean() < 0.15 and np.mean(in_float32 != held) < 0.02


def test_exact_line_search_on_small_problems_with_ties_and_short_steps():
    # issue 21: many tiny problems whose slacks and slopes are multiples of 1/4 (exact ties,
    # zero slacks, q = 0, roots on the first piece below 1, beyond the last breakpoint, flat
    # pieces with gamma = 0): the step is a minimiser of phi over s >= 0
    rng = np.random.default_rng(21)
    grid = np.arange(-8, 9) / 4.0
    for _ in range(400):
        n, c = rng.integers(1, 5), rng.integers(1, 3)
        F, dF = rng.choice(grid, (n, c)), rng.choice(grid, (n, c)) * rng.choice([0.1, 1.0, 10.0])
        Y = rng.choice([-1.0, 1.0], (n, c))
        a = rng.integers(1, 4, n).astype(float)
        a /= a.sum()
        gamma = rng.choice([0.0, 0.5])
        W, D = rng.choice(grid, 3), rng.choice(grid, 3)

        def phi(s, F=F, dF=dF, Y=Y, a=a, gamma=gamma, W=W, D=D):
            hinge = np.clip(1 - Y * (F + s * dF), 0, None)
            return a @ np.sum(hinge**2, 1) + gamma * np.sum((W + s * D) ** 2)

        s = exact_line_search(F, dF, Y, a, gamma, W @ D, D @ D)
        assert 0.0 <= s < np.inf  # phi >= 0 is bounded below along every direction
        # candidates: 0, every breakpoint, a bounded scalar search over a range covering them
        m, q = (1 - Y * F).ravel(), (Y * dF).ravel()
        t = m[q != 0] / q[q != 0]
        top = max([1.0, *t[t > 0]]) * 4.0
        ref = minimize_scalar(phi, bounds=(0.0, top), method="bounded", options={"xatol": 1e-12})
        best = min([phi(0.0), ref.fun, *(phi(v) for v in t[t > 0])])
        assert phi(s) <= best + 1e-12 * max(1.0, best)


def _inside_the_margin(n=200, p=5, c=3, seed=5):
    """Weak features and a strong penalty: every margin stays below 1, where the squared hinge
    is the weighted least-squares loss (1 - y f)^2 = (y - f)^2."""
    rng = np.random.default_rng(seed)
    H = 0.3 * rng.standard_normal((n, p))
    Y = -np.ones((n, c))
    Y[np.arange(n), rng.integers(0, c, n)] = 1.0
    a = rng.random(n) + 0.5
    return H, Y, a / a.sum()


@pytest.mark.parametrize("penalty_of_preconditioner", [0.5, 2.5, 0.1])
def test_cg_on_the_quadratic_piece_terminates_in_p_plus_one_iterations(penalty_of_preconditioner):
    """Inside the margin the objective is the ridge fit to the codes (free intercept), with the
    closed form W = (G0 + gamma I)^-1 H_c^T A Y, c = a^T Y. Preconditioned CG with exact line
    searches reaches it in one iteration when the preconditioner is the Hessian (G0 + gamma I)
    and, with another penalty's, within p + 1 (the distinct eigenvalues of M^-1 A): conjugacy,
    the direction's signs and the restarts all show in the count."""
    H, Y, a = _inside_the_margin()
    gamma, p, c = 0.5, H.shape[1], Y.shape[1]
    mean, G0 = weighted_moments(H, a)
    W_star = np.linalg.solve(G0 + gamma * np.eye(p), (H - mean).T @ (a[:, None] * Y))
    c_star = a @ Y
    J_star = a @ np.sum((Y - (H - mean) @ W_star - c_star) ** 2, axis=1) + gamma * np.sum(W_star**2)
    L = cholesky(G0 + penalty_of_preconditioner * np.eye(p))
    margins = []
    ((W, b, _, curve),) = squared_hinge_cg(
        H, Y, [HingeProblem(a, mean, L)], gamma, [(np.zeros((p, c)), np.zeros(c))],
        max_iter=p + 1, tol=0.0, callback=lambda j, it, J, W, b, F: margins.append(np.max(Y * F)),
    )  # fmt: skip
    assert max(margins) < 1.0  # the quadratic piece throughout
    exact = penalty_of_preconditioner == gamma
    assert curve[1 if exact else p + 1] == pytest.approx(J_star, rel=1e-13, abs=0.0)
    np.testing.assert_allclose(W, W_star, rtol=0, atol=1e-12)
    np.testing.assert_allclose(b, c_star, rtol=0, atol=1e-12)


def test_ranks_with_the_same_rows_follow_the_single_process_iterates(twin_ranks):
    """Two ranks holding the same rows with half the weight each are the rows once with their
    weight: the same iterates, when every sum over rows (objective, gradients, intercepts) is
    summed over the ranks and every line search sees both ranks' breakpoints."""
    H, Y, a = _problem(n=120, p=6, seed=4)
    gamma = 0.01
    mean, L = _setup(H, a, gamma)
    p, c = H.shape[1], Y.shape[1]
    start = [(np.zeros((p, c)), np.zeros(c))]
    ((W, b, F, curve),) = squared_hinge_cg(
        H, Y, [HingeProblem(a, mean, L)], gamma, start, max_iter=4, tol=0.0
    )
    comm = twin_ranks
    ((W2, b2, F2, curve2),) = squared_hinge_cg(
        H, Y, [HingeProblem(a / 2, mean, L)], gamma, start, max_iter=4, tol=0.0, comm=comm
    )
    np.testing.assert_allclose(curve2, curve, rtol=1e-12)
    np.testing.assert_allclose(W2, W, rtol=0, atol=1e-12)
    np.testing.assert_allclose(b2, b, rtol=0, atol=1e-12)
    np.testing.assert_allclose(F2, F, rtol=0, atol=1e-12)
    objective = "Summing the squared-hinge objective"
    step = [
        "Summing the squared-hinge gradients",
        "Summing the intercepts' gradients",
        "Gathering the line search's breakpoints",
        objective,
    ]
    assert comm.labels == [objective] + step * 4


def _two_problems(seed=6):
    H, Y, a = _problem(n=150, p=6, seed=seed)
    gamma = 0.01
    b = np.random.default_rng(seed).random(len(a)) + 0.1
    b /= b.sum()
    problems = [HingeProblem(w, *_setup(H, w, gamma)) for w in (a, b)]
    p, c = H.shape[1], Y.shape[1]
    return H, Y, problems, gamma, [(np.zeros((p, c)), np.zeros(c))] * 2


def test_the_callback_sees_every_iteration_and_stops_one_problem():
    """``callback(j, iteration, J, ...)`` at the start (0) and after each iteration, with the
    curve's J; StopIteration from problem 0 after its second iteration ends that problem
    only."""
    H, Y, problems, gamma, starts = _two_problems()
    seen = []

    def callback(j, iteration, J, W, b, F):
        seen.append((j, iteration, J))
        if j == 0 and iteration == 2:
            raise StopIteration

    out = squared_hinge_cg(H, Y, problems, gamma, starts, max_iter=4, tol=0.0, callback=callback)
    (_, _, _, curve0), (_, _, _, curve1) = out
    assert len(curve0) == 3 and len(curve1) == 5
    assert [(j, it) for j, it, _ in seen if j == 0] == [(0, 0), (0, 1), (0, 2)]
    assert [(j, it) for j, it, _ in seen if j == 1] == [(1, i) for i in range(5)]
    assert [J for j, _, J in seen if j == 1] == curve1


@pytest.mark.parametrize("tol", [1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3])
def test_a_problem_stops_at_its_first_relative_decrease_within_tol(tol):
    H, Y, problems, gamma, starts = _two_problems()
    full = squared_hinge_cg(H, Y, problems, gamma, starts, max_iter=30, tol=0.0)
    stopped = squared_hinge_cg(H, Y, problems, gamma, starts, max_iter=30, tol=tol)
    for (_, _, _, curve), (_, _, _, short) in zip(full, stopped, strict=True):
        small = [i for i in range(1, len(curve)) if curve[i - 1] - curve[i] <= tol * curve[i - 1]]
        assert small and short == curve[: small[0] + 1]


def test_a_non_finite_objective_names_its_cause():
    H, Y, problems, gamma, starts = _two_problems()
    H = H.copy()
    H[3, 2] = np.nan
    with pytest.raises(FloatingPointError, match=r"^The SVM head's objective is not finite; "
                                                 r"check the features for NaN/inf\.$"):  # fmt: skip
        squared_hinge_cg(H, Y, problems, gamma, starts, max_iter=2, tol=0.0)
