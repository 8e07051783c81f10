# SPDX-License-Identifier: BSD-3-Clause
"""Property-based tests (Hypothesis) of :func:`solvers.minimize`, GLMObjective and the rules.

Random problems (shapes, dtypes, NaN, inf, 1e300, 1e-300, constant columns,
duplicate rows, more features than samples, one sample), random
hyperparameters (valid and invalid) and user functions returning odd things.
Every call either returns a finite ``x`` of ``x0``'s shape and dtype, or
raises ``ValueError``/``TypeError`` naming the argument; ``x0`` and the data
are never written to.
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from solvers import GLMObjective, minimize
from solvers.linesearch import Armijo, Goldstein

#: each hyperparameter of minimize with valid and invalid values
HYPER = {
    "lr": [1e-3, 1.0, 100.0, 0.0, -1.0, math.nan, math.inf, "1"],
    "c": [0.1, 0.5, 0.0, 1.0, -0.5, math.nan],
    "beta_b": [0.5, 0.0, 1.0, math.nan],
    "line_search": ["armijo", "goldstein", "polyak", "fixed", "wolfe", None],
    "preconditioner": ["amsgrad", "adagrad", "identity", "adam"],
    "reset": ["grow", "conservative", "max", ""],
    "batch_size": [1, 3, 1000, 0, -2, 2.5, True],
    "epochs": [0, 1, 2, -1, 1.5],
    "max_backtracks": [1, 5, 0, None],
    "f_star": [0.0, -1.0, math.nan, math.inf],
    "gamma": [1.0, 2.0, 0.0, math.nan],
    "betas": [(0.9, 0.99), (1.0, 0.5), (0.5,), (math.nan, 0.9)],
}
hyper = st.lists(st.sampled_from(sorted(HYPER)), max_size=3, unique=True).flatmap(
    lambda keys: st.fixed_dictionaries({k: st.sampled_from(HYPER[k]) for k in keys})
)
special = st.sampled_from([None, math.nan, math.inf, -math.inf, 1e300, 1e-300, "constant", "dup"])


def separable(n, d, seed=0):
    """Gaussian inputs and +-1 labels of a random hyperplane, float64."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, np.where(X @ rng.normal(size=d) >= 0, 1.0, -1.0)


@given(
    n=st.integers(1, 12),
    d=st.integers(1, 6),
    extreme=special,
    dtype=st.sampled_from([np.float32, np.float64]),
    loss=st.sampled_from(["logistic", "squared"]),
    kwargs=hyper,
)
def test_minimize_glm_is_finite_or_names_the_argument(n, d, extreme, dtype, loss, kwargs, plant):
    X, y = separable(n, d)
    X, y = plant(X, extreme, dtype), y.astype(dtype)
    x0 = np.zeros(d, dtype=dtype)
    copies = [a.copy() for a in (X, y, x0)]
    kwargs = {"epochs": 1, "batch_size": 4, "random_state": 0, **kwargs}
    try:
        res = minimize(GLMObjective(loss), x0, (X, y), **kwargs)
    except (ValueError, TypeError) as e:
        message = str(e)
        assert any(k in message for k in (*kwargs, "betas", "X ", "y ")), message
        if "NaN or infinity" in message:
            assert not np.isfinite(X).all()
    else:
        assert np.isfinite(X).all(), extreme
        assert res.x.shape == (d,) and res.x.dtype == dtype
        assert np.isfinite(res.x).all()
        assert res.n_epochs == kwargs["epochs"]
        if res.n_epochs:
            assert np.isfinite(res.fun)
    for a, b in zip((X, y, x0), copies, strict=True):
        assert np.array_equal(a, b, equal_nan=True)  # never written to


#: shapes of (X, y, x0) from (n, d): the valid one and each way of getting it wrong
SHAPES = {
    "valid": lambda n, d: ((n, d), (n,), (d,)),
    "X 1-D": lambda n, d: ((n,), (n,), (d,)),
    "X 3-D": lambda n, d: ((n, d, 2), (n,), (d,)),
    "y 2-D": lambda n, d: ((n, d), (n, 1), (d,)),
    "y 0-d": lambda n, d: ((n, d), (), (d,)),
    "y short": lambda n, d: ((n, d), (n + 1,), (d,)),
    "x0 long": lambda n, d: ((n, d), (n,), (d + 1,)),
    "x0 2-D": lambda n, d: ((n, d), (n,), (d, 1)),
}


@given(
    data=st.data(),
    n=st.integers(1, 5),
    d=st.integers(1, 4),
    layout=st.sampled_from(sorted(SHAPES)),
    loss=st.sampled_from(["logistic", "squared"]),
)
def test_minimize_glm_any_shapes_and_values(data, n, d, layout, loss):
    """Arrays of every float value (NaN, inf, subnormal, huge) in valid and invalid shapes."""
    X, y, x0 = (data.draw(hnp.arrays(np.float64, s)) for s in SHAPES[layout](n, d))
    if loss == "logistic" and data.draw(st.booleans()):
        y = np.where(y >= 0, 1.0, -1.0)  # labels the logistic loss accepts
    try:
        res = minimize(GLMObjective(loss), x0, (X, y), epochs=1, batch_size=2, random_state=0)
    except (ValueError, TypeError) as e:
        assert any(w in str(e) for w in ("X", "y", "x0", "data", "loss")), str(e)
    else:
        assert layout == "valid" and np.isfinite(X).all() and np.isfinite(y).all()
        assert res.x.shape == x0.shape and np.isfinite(res.x).all()


ODD = {
    "none": lambda f, g: None,
    "scalar only": lambda f, g: f,
    "per-sample": lambda f, g: (np.full(3, f), g),
    "wrong grad": lambda f, g: (f, np.append(g, 0.0)),
    "nan": lambda f, g: (math.nan, g),
    "string": lambda f, g: ("1.0", g),
    "fine": lambda f, g: (f, g),
}


@given(odd=st.sampled_from(sorted(ODD)), line_search=st.sampled_from(["armijo", "polyak"]))
def test_minimize_user_function_returning_odd_things(odd, line_search):
    X, y = separable(8, 3)
    glm = GLMObjective("squared")

    def fun(w, Xb, yb):
        return ODD[odd](*glm(w, Xb, yb))

    try:
        res = minimize(fun, np.zeros(3), (X, y), epochs=1, batch_size=4, line_search=line_search)
    except (ValueError, TypeError) as e:
        assert odd != "fine"
        assert any(w in str(e) for w in ("fun", "loss", "gradient", "returned")), str(e)
    else:
        assert odd == "fine", odd
        assert np.isfinite(res.x).all()


@given(
    n=st.integers(1, 10),
    d=st.integers(1, 5),
    alpha=st.sampled_from([0.0, 1e-3, 1.0]),
    loss=st.sampled_from(["logistic", "squared"]),
    scale=st.sampled_from([1e-300, 1.0, 30.0]),
    seed=st.integers(0, 5),
)
def test_glm_gradient_matches_finite_differences(n, d, alpha, loss, scale, seed):
    X, y = separable(n, d, seed)
    X = X * scale
    w = np.random.default_rng(seed + 1).normal(size=d)
    glm = GLMObjective(loss, alpha)
    f, g = glm(w, X, y)
    assert np.isfinite(f) and g.shape == (d,) and np.isfinite(g).all()
    assert f >= 0.0
    h = 1e-6 * max(1.0, np.linalg.norm(w))
    step = np.random.default_rng(seed + 2).normal(size=d)
    fd = (glm.value(w + h * step, X, y) - glm.value(w - h * step, X, y)) / (2 * h)
    assert fd == pytest.approx(g @ step, rel=1e-4, abs=1e-6 * (1 + abs(f)))
    # the line restriction agrees with the loss along the line
    _, _, z = glm.value_grad_margins(w, X, y)
    phi = glm.restrict_to_line(w, g, X, y, z)
    assert phi(0.5) == pytest.approx(float(glm.value(w - 0.5 * g, X, y)), rel=1e-9, abs=1e-12)


@given(
    loss=st.one_of(st.sampled_from(["logistic", "squared", "hinge", ""]), st.none()),
    alpha=st.sampled_from([0.0, 1.0, -1.0, math.nan, math.inf, True, "0"]),
)
def test_glm_objective_arguments_are_named(loss, alpha):
    try:
        glm = GLMObjective(loss, alpha)
    except (ValueError, TypeError) as e:
        assert "loss" in str(e) or "alpha" in str(e), str(e)
    else:
        assert glm.loss in ("logistic", "squared") and math.isfinite(glm.alpha) and glm.alpha >= 0


@given(
    rule=st.sampled_from(["armijo", "goldstein"]),
    f0=st.floats(0.0, 1e6),
    slope=st.floats(1e-6, 1e3),
    curvature=st.floats(0.0, 1e4),
    eta0=st.floats(1e-4, 1e4),
    c=st.floats(0.01, 0.45),
)
def test_accepted_steps_satisfy_their_conditions(rule, f0, slope, curvature, eta0, c):
    """On the quadratic ``f0 - slope eta + curvature eta^2 / 2`` an accepted step is Armijo."""
    search = Armijo(c=c) if rule == "armijo" else Goldstein(c=c)

    def evaluate(eta):
        return f0 - slope * eta + 0.5 * curvature * eta * eta

    out = search.search(f0, eta0, lambda eta: slope * eta, evaluate, 0.0, eta0)
    assert out.step_size >= 0.0 and math.isfinite(out.step_size)
    if out.status == "accepted":
        assert 0.0 < out.step_size <= eta0
        assert evaluate(out.step_size) <= f0 - c * slope * out.step_size + 1e-9 * (1 + f0)
    else:
        assert out.step_size == 0.0
