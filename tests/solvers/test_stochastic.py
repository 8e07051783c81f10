# SPDX-License-Identifier: BSD-3-Clause
"""Step-size rules and the array-level stochastic minimiser."""

import math

import numpy as np
import pytest

from solvers import GLMObjective, minimize
from solvers.step_size import Armijo, Goldstein, Polyak, initial_step, make_step_rule

COMBOS = [
    ("amsgrad", "armijo"),
    ("adagrad", "armijo"),
    ("identity", "armijo"),
    ("amsgrad", "goldstein"),
    ("identity", "goldstein"),
    ("amsgrad", "polyak"),
    ("identity", "polyak"),
]


def least_squares(n=200, p=10, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, p))
    x_star = rng.normal(size=p)
    return A, A @ x_star, x_star


def separable(n=1000, p=20, margin=0.1, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=p)
    w /= np.linalg.norm(w)
    X = rng.normal(size=(n, p))
    s = X @ w
    X += np.outer(np.sign(s) * margin, w)  # push every point at least `margin` away
    y = np.sign(X @ w)
    return X, y


@pytest.mark.parametrize("preconditioner, rule", COMBOS)
def test_converges_to_the_minimiser_of_a_strongly_convex_quadratic(preconditioner, rule):
    A, b, x_star = least_squares()
    c = 0.25 if rule == "goldstein" else 0.5
    res = minimize(
        GLMObjective("squared"),
        np.zeros(10),
        (A, b),
        preconditioner=preconditioner,
        step_rule=rule,
        c=c,
        epochs=60,
        batch_size=20,
        random_state=0,
    )
    assert np.linalg.norm(res.x - x_star) < 1e-4 * np.linalg.norm(x_star)


@pytest.mark.parametrize("preconditioner, rule", COMBOS)
def test_separable_logistic_regression_loss_goes_to_zero(preconditioner, rule):
    X, y = separable()
    obj = GLMObjective("logistic")
    c = 0.25 if rule == "goldstein" else 0.5
    res = minimize(
        obj,
        np.zeros(20),
        (X, y),
        preconditioner=preconditioner,
        step_rule=rule,
        c=c,
        epochs=40,
        random_state=0,
    )
    full = obj.value(res.x, X, y)
    assert full < 0.02
    assert res.history["loss"][-1] < res.history["loss"][0] / 10
    assert np.all(np.sign(X @ res.x) == y)


def test_glm_fast_path_gives_the_same_iterates_as_the_generic_path():
    X, y = separable(n=300, p=8)
    obj = GLMObjective("logistic", alpha=1e-3)
    kw = dict(epochs=5, batch_size=50, random_state=3)
    fast = minimize(obj, np.zeros(8), (X, y), **kw)
    slow = minimize(lambda w, Xb, yb: obj(w, Xb, yb), np.zeros(8), (X, y), value=obj.value, **kw)
    np.testing.assert_allclose(fast.x, slow.x, rtol=1e-10, atol=1e-12)
    assert fast.nfev == slow.nfev and fast.njev == slow.njev == 30
    assert fast.nfev > fast.njev  # the trials are counted


def test_glm_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(30, 5)), np.sign(rng.normal(size=30))
    for loss in ("logistic", "squared"):
        obj = GLMObjective(loss, alpha=0.3)
        w = rng.normal(size=5)
        _, g = obj(w, X, y)
        h = 1e-6
        fd = [
            (obj.value(w + h * e, X, y) - obj.value(w - h * e, X, y)) / (2 * h) for e in np.eye(5)
        ]
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)
        d = rng.normal(size=5)
        phi = obj.restrict_to_line(w, d, X, y, X @ w)
        assert phi(0.7) == pytest.approx(obj.value(w - 0.7 * d, X, y), rel=1e-12)


def test_armijo_accepts_only_sufficient_decrease():
    rng = np.random.default_rng(0)
    for _ in range(50):
        L = rng.uniform(0.1, 100.0)
        x0 = rng.normal()
        f = lambda x: 0.5 * L * x * x + 1.0  # noqa: E731
        g = L * x0
        rule = Armijo(c=0.5, beta_b=0.7)
        out = rule.search(
            f(x0), 10.0, lambda eta: eta * g * g, lambda eta: f(x0 - eta * g), 0.0, 10.0
        )
        assert out.status == "accepted"
        eta = out.step_size
        assert f(x0 - eta * g) <= f(x0) - 0.5 * eta * g * g
        # the step before the accepted one (eta / beta_b) was rejected
        if out.n_backtracks:
            prev = eta / 0.7
            assert f(x0 - prev * g) > f(x0) - 0.5 * prev * g * g


def test_goldstein_accepts_inside_both_bounds():
    L, x0 = 3.0, 2.0
    f = lambda x: 0.5 * L * x * x  # noqa: E731
    g = L * x0
    for eta0 in (1e-4, 0.3, 5.0):
        out = Goldstein(c=0.25).search(
            f(x0), eta0, lambda e: e * g * g, lambda e: f(x0 - e * g), 0.0, 10.0
        )
        eta = out.step_size
        assert out.status == "accepted"
        assert f(x0) - 0.75 * eta * g * g <= f(x0 - eta * g) <= f(x0) - 0.25 * eta * g * g


def test_max_backtracks_takes_no_step_and_starts_lower_next_time():
    out = Armijo(c=0.5, beta_b=0.5, max_backtracks=3).search(
        1.0, 8.0, lambda e: e, lambda e: 2.0, 0.0, 8.0
    )
    assert out.status == "max_backtracks" and out.step_size == 0.0
    assert out.n_evals == 4 and out.next_step == 0.5


def test_polyak_cap_never_excludes_an_acceptable_step():
    # f >= 0, so any Armijo step satisfies eta <= f / (c <g, d>)
    rule = Armijo(c=0.3)
    f0, pp = 2.0, 4.0
    assert rule.polyak_cap(f0, 0.0, pp) == pytest.approx(f0 / (0.3 * pp))


def test_reset_rules():
    assert initial_step("conservative", 0.5, 10.0, 2.0) == 0.5
    assert initial_step("grow", 0.5, 10.0, 2.0) == 1.0
    assert initial_step("grow", 8.0, 10.0, 2.0) == 10.0
    assert initial_step("max", 0.5, 10.0, 2.0) == 10.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(step_rule="armijo", c=1.5), r"c must be a float in the range \(0.0, 1.0\)"),
        (dict(step_rule="armijo", c=0.0), r"c must be a float in the range \(0.0, 1.0\)"),
        (dict(step_rule="goldstein", c=0.6), r"c must be a float in the range \(0.0, 0.5\)"),
        (dict(lr=-1.0), "lr must be"),
        (dict(beta_b=1.0), "beta_b"),
        (dict(reset="sometimes"), "reset must be"),
        (dict(step_rule="newton"), "step rule must be"),
        (dict(preconditioner="adam"), "preconditioner must be"),
        (dict(betas=(0.9, 1.0)), "beta2"),
        (dict(batch_size=0), "batch_size"),
    ],
)
def test_bad_hyperparameters_raise(kwargs, match):
    X, y = separable(n=20, p=3)
    with pytest.raises(ValueError, match=match):
        minimize(GLMObjective(), np.zeros(3), (X, y), **kwargs)


def test_bad_data_raise():
    X, y = separable(n=20, p=3)
    with pytest.raises(ValueError, match="different lengths"):
        minimize(GLMObjective(), np.zeros(3), (X, y[:-1]))
    with pytest.raises(ValueError, match="empty"):
        minimize(GLMObjective(), np.zeros(3), (X[:0], y[:0]))
    with pytest.raises(ValueError, match="one-dimensional"):
        minimize(GLMObjective(), np.zeros((3, 1)), (X, y))
    Xn = X.copy()
    Xn[5, 0] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        minimize(GLMObjective(), np.zeros(3), (Xn, y), batch_size=20)


def test_callback_history_and_stop():
    X, y = separable(n=100, p=4)
    seen = []

    def cb(r):
        seen.append((r.epoch, r.fun))
        if r.epoch == 3:
            raise StopIteration

    res = minimize(GLMObjective(), np.zeros(4), (X, y), epochs=10, batch_size=10, callback=cb)
    assert [e for e, _ in seen] == [1, 2, 3]
    assert res.n_epochs == 3 and res.status == 1 and res.nit == 30
    assert len(res.history["loss"]) == 3
    assert all(f >= 1.0 for f in res.history["forwards_per_step"])
    assert res.history["seconds"] == sorted(res.history["seconds"])


def test_fixed_step_is_plain_sgd():
    A, b, _ = least_squares(n=40, p=3)
    res = minimize(
        GLMObjective("squared"),
        np.zeros(3),
        (A, b),
        preconditioner="identity",
        step_rule="fixed",
        lr=0.01,
        epochs=1,
        batch_size=40,
        shuffle=False,
    )
    _, g = GLMObjective("squared")(np.zeros(3), A, b)
    np.testing.assert_allclose(res.x, -0.01 * g)
    assert res.nfev == 1


def test_float_noise_guard_keeps_a_fitted_batch_cheap():
    # one batch, trained to its rounding floor in float32: without the guard the
    # Armijo test fails at random and eta collapses (reference defect)
    X, y = separable(n=128, p=20, margin=0.5)
    X = X.astype(np.float32)
    y = y.astype(np.float32)
    res = minimize(
        GLMObjective(), np.zeros(20, np.float32), (X, y), batch_size=128, epochs=300, c=0.5
    )
    assert res.history["loss"][-1] < 1e-5
    assert np.mean(res.history["forwards_per_step"][-100:]) < 3.0
    assert res.step_size > 1e-3


def test_make_step_rule_passes_only_known_settings():
    assert isinstance(make_step_rule("polyak", c=0.2, beta_b=0.9), Polyak)
    assert math.isclose(make_step_rule("armijo", c=0.3).c, 0.3)
