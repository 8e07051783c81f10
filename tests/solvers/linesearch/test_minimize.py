# SPDX-License-Identifier: BSD-3-Clause
"""solvers.linesearch.minimize: the array-level stochastic minimiser."""

import math

import numpy as np
import pytest

from solvers import GLMObjective, minimize
from solvers.linesearch.minimize import _Iterate, _make_method, _one_step, _Problem

COMBOS = [
    ("amsgrad", "armijo"),
    ("adagrad", "armijo"),
    ("identity", "armijo"),
    ("amsgrad", "goldstein"),
    ("identity", "goldstein"),
    ("amsgrad", "polyak"),
    ("identity", "polyak"),
]


@pytest.mark.parametrize("preconditioner, rule", COMBOS)
def test_converges_to_the_minimiser_of_a_strongly_convex_quadratic(
    preconditioner, rule, least_squares
):
    A, b, x_star = least_squares()
    c = 0.25 if rule == "goldstein" else 0.5
    res = minimize(
        GLMObjective("squared"),
        np.zeros(10),
        (A, b),
        preconditioner=preconditioner,
        line_search=rule,
        c=c,
        epochs=60,
        batch_size=20,
        random_state=0,
    )
    assert np.linalg.norm(res.x - x_star) < 1e-4 * np.linalg.norm(x_star)


@pytest.mark.parametrize("preconditioner, rule", COMBOS)
def test_separable_logistic_regression_loss_goes_to_zero(preconditioner, rule, separable):
    X, y = separable()
    obj = GLMObjective("logistic")
    c = 0.25 if rule == "goldstein" else 0.5
    res = minimize(
        obj,
        np.zeros(20),
        (X, y),
        preconditioner=preconditioner,
        line_search=rule,
        c=c,
        epochs=40,
        random_state=0,
    )
    full = obj.value(res.x, X, y)
    assert full < 0.02
    assert res.history["loss"][-1] < res.history["loss"][0] / 10
    assert np.all(np.sign(X @ res.x) == y)


def test_glm_fast_path_gives_the_same_iterates_as_the_generic_path(separable):
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


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(line_search="armijo", c=1.5),
            r"'c' parameter.* must be a float in the range \(0.0, 1.0\)",
        ),
        (
            dict(line_search="armijo", c=0.0),
            r"'c' parameter.* must be a float in the range \(0.0, 1.0\)",
        ),
        (
            dict(line_search="goldstein", c=0.6),
            r"'c' parameter.* must be a float in the range \(0.0, 0.5\)",
        ),
        (dict(lr=-1.0), "'lr' parameter.* must be"),
        (dict(beta_b=1.0), "beta_b"),
        (dict(reset="sometimes"), "'reset' parameter of minimize"),
        (dict(line_search="newton"), "'line_search' parameter of minimize"),
        (dict(preconditioner="adam"), "preconditioner must be"),
        (dict(betas=(0.9, 1.0)), r"'betas\[1\]' parameter of minimize"),
        (dict(batch_size=0), "batch_size"),
    ],
)
def test_bad_hyperparameters_raise(kwargs, match, separable):
    X, y = separable(n=20, p=3)
    with pytest.raises(ValueError, match=match):
        minimize(GLMObjective(), np.zeros(3), (X, y), **kwargs)


def test_bad_data_raise(separable):
    X, y = separable(n=20, p=3)
    with pytest.raises(ValueError, match="different lengths"):
        minimize(GLMObjective(), np.zeros(3), (X, y[:-1]))
    with pytest.raises(ValueError, match="empty"):
        minimize(GLMObjective(), np.zeros(3), (X[:0], y[:0]))
    with pytest.raises(ValueError, match="one-dimensional"):
        minimize(GLMObjective(), np.zeros((3, 1)), (X, y))
    Xn = X.copy()
    Xn[5, 0] = np.nan
    with pytest.raises(ValueError, match="X holds NaN or infinity"):
        minimize(GLMObjective(), np.zeros(3), (Xn, y), batch_size=20)
    # caught before the run, not as a shape error deep inside a matmul
    with pytest.raises(ValueError, match=r"x0 must have shape \(3,\)"):
        minimize(GLMObjective(), np.zeros(4), (X, y))
    with pytest.raises(ValueError, match="X 2-D and y 1-D"):
        minimize(GLMObjective(), np.zeros(3), (X[:, :, None], y))
    # labels {0, 1} would fit another model without a word
    with pytest.raises(ValueError, match="must be -1 or \\+1"):
        minimize(GLMObjective("logistic"), np.zeros(3), (X, (y + 1) / 2))
    # the squared loss takes any finite targets
    minimize(GLMObjective("squared"), np.zeros(3), (X, (y + 1) / 2), epochs=1)


@pytest.mark.parametrize(
    ("fun", "error", "match"),
    [
        (lambda w, X, y: None, TypeError, "pair"),
        (lambda w, X, y: (np.log1p(np.exp(-y * (X @ w))), X.T @ y), ValueError, "mean loss"),
        (lambda w, X, y: (0.5, np.zeros(w.shape[0] + 1)), ValueError, "gradient fun returns"),
    ],
)
def test_a_malformed_objective_is_reported_by_what_it_returned(fun, error, match, separable):
    X, y = separable(n=20, p=3)
    with pytest.raises(error, match=match):
        minimize(fun, np.zeros(3), (X, y), epochs=1)


def test_a_custom_objective_sees_nan_data_as_a_non_finite_loss(separable):
    X, y = separable(n=20, p=3)
    Xn = X.copy()
    Xn[5, 0] = np.nan
    glm = GLMObjective()
    with pytest.raises(ValueError, match="not finite"):
        minimize(lambda w, X, y: glm(w, X, y), np.zeros(3), (Xn, y), batch_size=20)


def test_callback_history_and_stop(separable):
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
    # the per-epoch series add up to the run's counters: 10 steps an epoch, each one
    # forward at the iterate plus its trials; an accepted Armijo step's trials are its
    # backtracks plus the accepted one
    assert sum(res.history["skipped"]) == 0
    assert 10 * sum(res.history["forwards_per_step"]) == pytest.approx(res.nfev, rel=1e-12)
    assert res.nfev == res.nit + sum(res.history["backtracks"]) + res.nit
    assert res.history["seconds"] == sorted(res.history["seconds"])


def test_fixed_step_is_plain_sgd(least_squares):
    A, b, _ = least_squares(n=40, p=3)
    res = minimize(
        GLMObjective("squared"),
        np.zeros(3),
        (A, b),
        preconditioner="identity",
        line_search="fixed",
        lr=0.01,
        epochs=1,
        batch_size=40,
        shuffle=False,
    )
    _, g = GLMObjective("squared")(np.zeros(3), A, b)
    np.testing.assert_allclose(res.x, -0.01 * g)
    assert res.nfev == 1


def test_float_noise_guard_keeps_a_fitted_batch_cheap(separable):
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


def test_step_rule_is_a_deprecated_alias_of_line_search(separable):
    X, y = separable(n=100, p=4)
    kw = dict(epochs=2, batch_size=20, random_state=0)
    new = minimize(GLMObjective(), np.zeros(4), (X, y), line_search="goldstein", c=0.2, **kw)
    with pytest.warns(DeprecationWarning, match="line_search"):
        old = minimize(GLMObjective(), np.zeros(4), (X, y), step_rule="goldstein", c=0.2, **kw)
    assert np.array_equal(new.x, old.x) and new.nfev == old.nfev
    # both names at once is ambiguous: refused, not silently resolved
    with pytest.raises(TypeError, match="both line_search and"):
        minimize(GLMObjective(), np.zeros(4), (X, y), line_search="polyak", step_rule="armijo")


def test_heavy_ball_coefficient_is_a_keyword(separable):
    X, y = separable(n=100, p=4)
    kw = dict(momentum="heavy_ball", epochs=2, batch_size=20, random_state=0)
    default = minimize(GLMObjective(), np.zeros(4), (X, y), **kw)
    same = minimize(GLMObjective(), np.zeros(4), (X, y), heavy_ball=0.25, **kw)
    other = minimize(GLMObjective(), np.zeros(4), (X, y), heavy_ball=0.5, **kw)
    assert np.array_equal(default.x, same.x)
    assert not np.array_equal(default.x, other.x)


def test_one_step_updates_the_iterate_and_counts(separable):
    X, y = separable(n=40, p=3)
    method = _make_method(
        1,
        preconditioner="identity",
        momentum="none",
        lr=100.0,
        betas=(0.9, 0.99),
        eps=1e-8,
        heavy_ball=0.25,
        line_search="armijo",
        c=0.5,
    )
    problem = _Problem(GLMObjective(), None, (X, y), np, True, float(np.finfo(float).eps))
    it = _Iterate(np.zeros(3), {}, {}, 100.0)
    report = _one_step(problem, method, it, (X, y), epoch=1)
    assert it.nit == 1 and it.njev == 1 and it.nfev == 1 + report.n_evals
    assert report.step_size > 0 and report.step_size == it.step_size
    f1, _ = GLMObjective()(it.x, X, y)
    assert f1 < report.loss


def _quadratic(L):
    """``f(x) = L ||x||^2 / 2`` as ``fun(x, batch) -> (f, g)``; the data is unused."""

    def fun(x, _batch):
        return 0.5 * L * float(x @ x), L * x

    return fun


@pytest.mark.parametrize("c", [0.1, 0.3, 0.8])
def test_armijo_constant_reaches_the_search(c):
    # One full-batch step on L ||x||^2 / 2 along d = g: Armijo with constant c accepts the
    # first trial lr beta_b^k with lr beta_b^k L <= 2 (1 - c); with c != 0.5 this differs
    # from the step the constant 1 - c would accept.
    L, lr, beta_b = 3.0, 1.9 / 3.0, 0.7
    x0 = np.array([1.0, -2.0, 0.5])
    res = minimize(
        _quadratic(L),
        x0,
        np.zeros((1, 1)),
        preconditioner="identity",
        momentum="none",
        lr=lr,
        c=c,
        beta_b=beta_b,
        polyak_init=False,
        batch_size=1,
        epochs=1,
        shuffle=False,
    )
    k = max(0, math.ceil(math.log(2.0 * (1.0 - c) / (lr * L)) / math.log(beta_b) - 1e-9))
    eta = lr * beta_b**k
    np.testing.assert_allclose(res.x, x0 - eta * L * x0, rtol=1e-13)
    assert res.nfev == 1 + (k + 1) and res.step_size == pytest.approx(eta, rel=1e-13)


@pytest.mark.parametrize("c", [0.1, 0.8])
def test_armijo_constant_reaches_the_glm_fast_path(c, separable):
    # the accepted step of each minibatch is the first trial that passes Armijo's test with
    # this c, checked against the loss itself (GLM path: trials come from the margins)
    X, y = separable(n=60, p=4)
    obj = GLMObjective("logistic")
    lr, beta_b = 50.0, 0.5
    kw = dict(preconditioner="identity", momentum="none", lr=lr, c=c, beta_b=beta_b)
    kw.update(polyak_init=False, reset="max", batch_size=60, shuffle=False)
    x = np.zeros(4)
    for _ in range(3):
        f0, g = obj(x, X, y)
        eta = lr
        while obj.value(x - eta * g, X, y) > f0 - c * eta * (g @ g):
            eta *= beta_b
        res = minimize(obj, x, (X, y), epochs=1, **kw)
        assert res.step_size == pytest.approx(eta, rel=1e-12)
        np.testing.assert_allclose(res.x, x - eta * g, rtol=1e-12, atol=1e-15)
        x = res.x


@pytest.mark.parametrize("reset", ["conservative", "grow", "max"])
def test_after_max_backtracks_no_step_and_the_next_search_starts_lower(reset):
    # Every trial is rejected (the trial loss is always higher): the step is not taken,
    # x is unchanged and the next step's first trial is the reset of lr beta_b^(m + 1)
    # (the rule the torch optimizer follows, tests/solvers/torch/optim/test_line_search.py).
    lr, beta_b, m, gamma, n_batches = 8.0, 0.5, 3, 4.0, 2
    x0 = np.array([1.0, 2.0])
    g = np.array([0.5, -1.0])
    trials = []

    def fun(x, _batch):
        return 1.0, g

    def value(x, _batch):
        # d = g (identity preconditioner, no momentum): eta = (x0 - x) / g
        trials.append(float((x0 - x)[0] / g[0]))
        return 2.0

    res = minimize(
        fun,
        x0,
        np.zeros((2, 1)),
        value=value,
        preconditioner="identity",
        momentum="none",
        lr=lr,
        beta_b=beta_b,
        max_backtracks=m,
        reset=reset,
        gamma=gamma,
        polyak_init=False,
        batch_size=1,
        epochs=1,
        shuffle=False,
    )
    assert np.array_equal(res.x, x0)
    assert res.nit == 2 and res.nfev == 2 * (1 + m + 1)
    assert res.history["skipped"] == [2] and res.history["step_size"] == [0.0]
    assert res.history["backtracks"] == [2 * (m + 1)]
    first = [lr * beta_b**i for i in range(m + 1)]
    after = lr * beta_b ** (m + 1)
    start = {"conservative": after, "grow": after * gamma ** (1 / n_batches), "max": lr}[reset]
    second = [start * beta_b**i for i in range(m + 1)]
    np.testing.assert_allclose(trials, first + second, rtol=1e-14)
    assert res.step_size == pytest.approx(start * beta_b**m * beta_b, rel=1e-14)


def test_goldstein_runs_without_a_c_and_names_bad_betas():
    """minimize's default c (0.5, Armijo's) used to make line_search="goldstein" fail on c."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = np.sign(X @ np.ones(3))
    kw = dict(epochs=2, random_state=0, line_search="goldstein")
    res = minimize(GLMObjective(), np.zeros(3), (X, y), **kw)
    same = minimize(GLMObjective(), np.zeros(3), (X, y), c=0.1, **kw)
    assert np.array_equal(res.x, same.x) and np.isfinite(res.x).all()
    with pytest.raises(ValueError, match=r"'betas\[0\]' parameter of minimize"):
        minimize(GLMObjective(), np.zeros(3), (X, y), betas=(1.0, 0.5))


def test_malformed_objective_messages_name_what_was_returned(separable):
    # issue 21: each message says the type or shape fun returned
    X, y = separable(n=20, p=3)
    cases = [
        (lambda w, X, y: 0.5, TypeError, r"pair \(loss, gradient\); got float\.$"),
        (lambda w, X, y: ("0.5", w), TypeError, r"as a number; got str\.$"),
        (lambda w, X, y: (np.ones(2), w), ValueError, r"a scalar; got shape \(2,\)\.$"),
        (lambda w, X, y: (0.5, list(w)), ValueError, r"shape \(3,\); got list\.$"),
        (lambda w, X, y: (0.5, w[:2]), ValueError, r"shape \(3,\); got \(2,\)\.$"),
    ]
    for fun, error, match in cases:
        with pytest.raises(error, match=match):
            minimize(fun, np.zeros(3), (X, y), epochs=1)


def test_callback_sees_the_iterate_and_the_result_says_why_it_stopped(separable):
    # issue 21: the callback's x, fun and nit are the run's, and the messages are the documented
    X, y = separable(n=60, p=3)
    seen = []

    def cb(r):
        seen.append((r.x.copy(), r.fun, r.nit))
        if r.epoch == 2:
            raise StopIteration

    kw = dict(epochs=4, batch_size=20, random_state=0)
    stopped = minimize(GLMObjective(), np.zeros(3), (X, y), callback=cb, **kw)
    (x1, f1, nit1), (x2, f2, nit2) = seen
    assert (nit1, nit2) == (3, 6)
    np.testing.assert_array_equal(x2, stopped.x)
    assert f2 == stopped.fun == stopped.history["loss"][-1]
    assert f1 == stopped.history["loss"][0]
    once = minimize(GLMObjective(), np.zeros(3), (X, y), **{**kw, "epochs": 1})
    np.testing.assert_array_equal(x1, once.x)
    assert (stopped.status, stopped.message) == (1, "Stopped by the callback.")
    full = minimize(GLMObjective(), np.zeros(3), (X, y), **kw)
    assert (full.status, full.message) == (0, "Maximum number of epochs reached.")
    # an epoch of three 20-row steps: well under a second even on a loaded machine
    assert 0.0 < full.history["seconds"][0] < 0.9


def test_without_shuffling_the_seed_does_not_matter(separable):
    X, y = separable(n=50, p=3)
    a = minimize(
        GLMObjective(), np.zeros(3), (X, y), shuffle=False, batch_size=10, epochs=2, random_state=0
    )
    b = minimize(
        GLMObjective(), np.zeros(3), (X, y), shuffle=False, batch_size=10, epochs=2, random_state=1
    )
    np.testing.assert_array_equal(a.x, b.x)
    c = minimize(GLMObjective(), np.zeros(3), (X, y), batch_size=10, epochs=2, random_state=1)
    assert not np.array_equal(a.x, c.x)  # shuffled batches take another path


def test_minimize_arguments_and_data_are_checked_by_name(separable):
    # issue 21: each refusal names the argument; the edges of each range are accepted
    X, y = separable(n=30, p=3)
    glm = GLMObjective()
    zero = minimize(glm, np.zeros(3), (X, y), epochs=0)  # no epoch: x0 back, no loss
    assert zero.n_epochs == 0 and zero.fun is None and zero.success is True
    np.testing.assert_array_equal(zero.x, np.zeros(3))
    assert minimize(glm, np.zeros(3), (X, y), random_state=0).n_epochs == 10  # the default
    for kwargs, match in [
        (dict(epochs=-1), r"^The 'epochs' parameter must be an int in the range \[0, inf\)"),
        (dict(batch_size=0), r"^The 'batch_size' parameter"),
        (dict(betas=(1.0, 0.99)), r"^The 'betas\[0\]' parameter of minimize"),
        (dict(betas=(0.9, 1.0)), r"^The 'betas\[1\]' parameter of minimize"),
    ]:
        with pytest.raises(ValueError, match=match):
            minimize(glm, np.zeros(3), (X, y), **kwargs)
    minimize(glm, np.zeros(3), (X, y), betas=(0.0, 0.0), epochs=1)  # both ends closed at 0
    # integer starting points are solved in float64
    assert minimize(glm, np.zeros(3, dtype=int), (X, y), epochs=1).x.dtype == np.float64
    for data, match in [
        ((), r"^data must hold at least one array\.$"),
        (
            (np.float64(1.0),),
            r"^data\[0\] must be an array with one row per sample; got a 0-d array\.$",
        ),
        ((X, 3.0), r"^data\[1\] must be an array with one row per sample; got a float\.$"),
        ((X[:0], y[:0]), r"^data is empty \(0 samples\)\.$"),
    ]:
        with pytest.raises(ValueError, match=match):
            minimize(glm, np.zeros(3), data)


def test_make_method_passes_betas_eps_and_the_default_momentum():
    kw = dict(lr=1.0, betas=(0.3, 0.7), eps=0.25, heavy_ball=0.4, line_search="armijo", c=0.5)
    method = _make_method(1, preconditioner="amsgrad", momentum=None, **kw)
    assert (method.preconditioner.beta2, method.preconditioner.eps) == (0.7, 0.25)
    assert method.momentum.name == "ema" and method.momentum.beta1 == 0.3
    hb = _make_method(1, preconditioner="identity", momentum="heavy_ball", **kw)
    assert hb.momentum.heavy_ball == 0.4
    assert _make_method(1, preconditioner="adagrad", momentum=None, **kw).momentum.name == "none"
    with pytest.raises(ValueError, match=r"^betas must be a pair"):
        _make_method(1, preconditioner="amsgrad", momentum=None, **{**kw, "betas": (0.9,)})


def test_torch_data_gives_the_numpy_run():
    # the non-NumPy minibatch path (xp.take of the selected rows) against NumPy's indexing
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 3))
    y = np.sign(X @ np.array([1.0, -2.0, 0.5]))
    kw = dict(batch_size=8, epochs=2, random_state=0)
    ref = minimize(GLMObjective(), np.zeros(3), (X, y), **kw)
    out = minimize(
        GLMObjective(),
        torch.zeros(3, dtype=torch.float64),
        (torch.as_tensor(X), torch.as_tensor(y)),
        **kw,
    )
    np.testing.assert_allclose(out.x.numpy(), ref.x, rtol=1e-10, atol=1e-12)
    assert out.history["loss"] == pytest.approx(ref.history["loss"], rel=1e-10)


def test_a_non_finite_loss_is_reported_with_its_step_and_epoch(separable):
    X, y = separable(n=20, p=3)
    glm, calls = GLMObjective(), []

    def fun(w, X, y):
        calls.append(1)
        f, g = glm(w, X, y)
        return (np.nan if len(calls) == 3 else f), g  # the third step's loss

    with pytest.raises(
        ValueError,
        match=r"^The loss is not finite \(nan\) at step 3 \(epoch 2\); x holds the last point "
        r"with a finite loss\.$",
    ):
        minimize(fun, np.zeros(3), (X, y), line_search="fixed", lr=0.1, batch_size=10, epochs=3)


def test_a_one_element_loss_array_is_a_scalar():
    # NumPy refuses float() on a (1,) array; the loss is read as its element, and the run
    # is the one with the scalar loss
    def scalar(x, _batch):
        return 1.5 * float(x @ x), 3.0 * x

    def one_element(x, _batch):
        return np.array([1.5 * float(x @ x)]), 3.0 * x

    x0 = np.array([1.0, -2.0, 0.5])
    a = minimize(scalar, x0, np.zeros((4, 1)), batch_size=2, epochs=3, shuffle=False)
    b = minimize(one_element, x0, np.zeros((4, 1)), batch_size=2, epochs=3, shuffle=False)
    np.testing.assert_array_equal(a.x, b.x)
    assert a.fun == b.fun
