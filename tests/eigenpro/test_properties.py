# SPDX-License-Identifier: BSD-3-Clause
"""Property-based tests (Hypothesis) of eigenpro_solve, the estimators and their parts.

Random data (shapes, dtypes, NaN, inf, 1e300, 1e-300, constant columns,
duplicate rows, more features than samples, one sample, one class) and
random hyperparameters (valid and invalid). Every call either returns
finite results of the right shape or raises ``ValueError``/``TypeError``
naming the argument; a failed ``fit``/``predict`` leaves the fitted
estimator bit-identical, and inputs are never written to.
"""

import math
import warnings

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from eigenpro import (
    EigenProClassifier,
    EigenProRegressor,
    KernelOperator,
    NystromPreconditioner,
    eigenpro_solve,
    make_kernel,
)

special = st.sampled_from([None, math.nan, math.inf, -math.inf, 1e300, 1e-300, "constant", "dup"])

#: eigenpro_solve's hyperparameters, each with valid and invalid values
HYPER = {
    "bandwidth": [None, 0.5, 3.0, 0.0, -1.0, math.nan, math.inf, "1"],
    "alpha": [0.0, 1e-3, 10.0, -1.0, math.nan],
    "n_epochs": [0, 1, 2, -1, 1.5, True],
    "subsample_size": ["auto", 1, 5, 0, -3, 1000],
    "n_components": ["auto", 0, 1, 3, -1, 2.5],
    "batch_size": ["auto", 1, 4, 0, "big"],
    "step_size": ["auto", 0.5, 0.0, -1.0, math.inf],
    "damping": [0.95, 1.0, 0.0, 1.5],
    "tol": [None, 1e-3, 0.0, -1.0, math.nan],
}
hyper = st.lists(st.sampled_from(sorted(HYPER)), max_size=3, unique=True).flatmap(
    lambda keys: st.fixed_dictionaries({k: st.sampled_from(HYPER[k]) for k in keys})
)
kernels = st.sampled_from(["gaussian", "laplacian", "cauchy"])


def sample(n, d, seed=0):
    """``n`` uniform points in ``[0, 1]^d`` and a smooth target, float64."""
    X = np.random.default_rng(seed).uniform(size=(n, d))
    return X, np.sin(3 * X[:, 0])


def huge(a):
    """Finite entries so large that squares overflow (refused naming X or Y)."""
    return bool(np.any(np.isfinite(a) & (np.abs(a) > 1e150)))


def named(message, names):
    return any(n in message for n in names)


@given(
    n=st.integers(1, 25),
    d=st.integers(1, 8),
    outputs=st.sampled_from([0, 1, 3]),
    extreme=special,
    y_plant=st.sampled_from([None, math.nan, math.inf, 1e300]),
    dtype=st.sampled_from([np.float32, np.float64]),
    kernel=kernels,
    kwargs=hyper,
)
def test_eigenpro_solve_is_finite_or_names_the_argument(
    n, d, outputs, extreme, y_plant, dtype, kernel, kwargs, plant
):
    X, y = sample(n, d)
    X, y = plant(X, extreme, dtype), y.astype(dtype)
    Y = y if outputs == 0 else np.stack([y + k for k in range(outputs)], 1)
    if y_plant is not None:
        with np.errstate(over="ignore"):
            Y.flat[0] = y_plant
    copies = (X.copy(), Y.copy())
    kwargs = {"n_epochs": 1, "random_state": 0, "bandwidth": 1.0, **kwargs}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = eigenpro_solve(kernel, X, Y, **kwargs)
    except (ValueError, TypeError, FloatingPointError, RuntimeError) as e:
        assert isinstance(e, (ValueError, TypeError)), str(e)
        assert named(str(e), (*kwargs, "X", "Y", "kernel", "n_samples")), str(e)
    else:
        event("solved")
        assert np.isfinite(X).all() and np.isfinite(Y).all(), (extreme, y_plant)
        assert res.x.shape == Y.shape and np.isfinite(res.x).all()
        assert math.isfinite(res.fun)
    assert np.array_equal(X, copies[0], equal_nan=True)
    assert np.array_equal(Y, copies[1], equal_nan=True)


ESTIMATOR_HYPER = {
    "bandwidth": ["auto", 1.0, 0.0, -2.0, math.nan, "wide"],
    "alpha": [0.0, 1e-2, -1.0],
    "n_epochs": [1, 2, 0, -1],
    "kernel": ["gaussian", "laplacian", "matern", "sinc"],
    "subsample_size": ["auto", 2, 0],
    "batch_size": ["auto", 3, 0],
    "tol": [None, 1e-2, -1.0],
    "memory_budget": ["auto", 10_000, 0, -5],
}
estimator_hyper = st.lists(
    st.sampled_from(sorted(ESTIMATOR_HYPER)), max_size=2, unique=True
).flatmap(
    lambda keys: st.fixed_dictionaries({k: st.sampled_from(ESTIMATOR_HYPER[k]) for k in keys})
)


@given(
    classifier=st.booleans(),
    n=st.integers(1, 20),
    d=st.integers(1, 6),
    extreme=special,
    classes=st.integers(1, 3),
    kwargs=estimator_hyper,
    predict_plant=special,
)
def test_failed_fit_or_predict_leaves_the_fitted_estimator_bit_identical(
    classifier, n, d, extreme, classes, kwargs, predict_plant, plant, attribute_bytes
):
    X0, y0 = sample(30, 3, seed=1)
    Est = EigenProClassifier if classifier else EigenProRegressor
    est = Est(n_epochs=1, random_state=0, bandwidth=1.0)
    est.fit(X0, (y0 > np.median(y0)).astype(int) if classifier else y0)
    before = attribute_bytes(est)

    X, y = sample(n, d, seed=2)
    X = plant(X, extreme)
    if classifier:
        y = np.arange(n) % classes
    est.set_params(**kwargs)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, y)
    except (ValueError, TypeError, FloatingPointError, RuntimeError) as e:
        assert isinstance(e, (ValueError, TypeError)), str(e)
        assert named(str(e), (*kwargs, "X", "y", "class", "bandwidth", "n_samples")), str(e)
        est.set_params(**{k: Est().get_params()[k] for k in kwargs})
        est.set_params(n_epochs=1, random_state=0, bandwidth=1.0)
        assert attribute_bytes(est) == before
        return
    event("fitted")
    assert np.isfinite(X).all()
    assert not classifier or (classes >= 2 and n >= 2)
    Xp = plant(sample(4, d, seed=3)[0], predict_plant)
    after = attribute_bytes(est)
    try:
        out = est.predict(Xp)
    except (ValueError, TypeError) as e:
        assert "X" in str(e) or "NaN" in str(e) or "infinity" in str(e), str(e)
        assert not np.isfinite(Xp).all()
    else:
        assert out.shape == (4,)
        if classifier:
            assert set(np.unique(out)) <= set(np.unique(y))
        else:
            assert np.isfinite(out).all()
    assert attribute_bytes(est) == after


@given(
    s=st.integers(1, 20),
    d=st.integers(1, 5),
    n_components=st.sampled_from(["auto", 0, 1, 3, 19, -1, 2.5, "all"]),
    damping=st.sampled_from([0.95, 1.0, 0.5, 0.0, 1.5, math.nan]),
    alpha=st.sampled_from([0.0, 1e-3, 1.0]),
    bandwidth=st.sampled_from([0.1, 1.0, 100.0]),
    extreme=st.sampled_from([None, "dup", "constant"]),
)
def test_preconditioner_flattens_a_psd_spectrum(
    s, d, n_components, damping, alpha, bandwidth, extreme, plant
):
    X = plant(sample(s, d, seed=4)[0], extreme)
    K = make_kernel("gaussian", bandwidth)(X)
    pre = NystromPreconditioner(n_components=n_components, damping=damping)
    try:
        pre.fit(K, n_train=10 * s, alpha=alpha)
    except (ValueError, TypeError) as e:
        assert named(str(e), ("n_components", "damping")), str(e)
        return
    k = pre.n_components_
    assert 0 <= k <= s - 1
    values = np.asarray(pre.eigenvalues_)
    assert values.shape == (k + 1,) and np.all(np.diff(values) <= 1e-12 * values[0])
    assert 0 < pre.preconditioned_eigenvalue_ <= pre.top_eigenvalue_ * (1 + 1e-12)
    assert math.isfinite(pre.critical_batch_size_) and pre.critical_batch_size_ > 0
    # the correction V D V^T is PSD and shrinks the top direction by the damped ratio
    h = np.random.default_rng(5).normal(size=(s, 2))
    corr = pre.correction(h)
    if k == 0:
        assert corr is None
    else:
        assert corr.shape == (s, 2) and np.isfinite(corr).all()
        assert np.einsum("ij,ij->", h, corr) >= -1e-9 * np.abs(h).sum() ** 2


@given(
    n=st.integers(1, 12),
    m=st.integers(1, 12),
    d=st.integers(1, 4),
    cols=st.sampled_from([None, 1, 3]),
    budget=st.sampled_from([64, 1000, 10**6]),
    precompute=st.sampled_from(["auto", False]),
    kernel=kernels,
)
def test_kernel_operator_matches_the_dense_product(n, m, d, cols, budget, precompute, kernel):
    rng = np.random.default_rng(6)
    X, Z = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    V = rng.normal(size=(m,) if cols is None else (m, cols))
    k = make_kernel(kernel, 1.5)
    op = KernelOperator(k, X, Z, memory_budget=budget, precompute=precompute)
    out = op.matmul(V)
    assert out.shape == (n, *V.shape[1:])
    np.testing.assert_allclose(out, k(X, Z) @ V, rtol=1e-10, atol=1e-12)
    assert op.block_rows >= 1


@pytest.mark.parametrize("fit", ["eigenpro_solve", "EigenProRegressor"])
def test_huge_finite_x_is_named(fit):
    X, y = sample(6, 2)
    X[3, 1] = 1e300
    with pytest.raises(ValueError, match="X"):
        if fit == "eigenpro_solve":
            eigenpro_solve("gaussian", X, y, bandwidth=1.0, n_epochs=1, random_state=0)
        else:
            EigenProRegressor(bandwidth=1.0, n_epochs=1, random_state=0).fit(X, y)


def test_huge_finite_y_is_named():
    X, y = sample(6, 2)
    y[0] = 1e200
    with pytest.raises(ValueError, match="Y"):
        eigenpro_solve("gaussian", X, y, bandwidth=1.0, n_epochs=1, random_state=0)


def test_auto_bandwidth_on_extreme_data_names_the_data():
    X, y = sample(6, 2)
    X[3, 1] = 1e300
    with pytest.raises(ValueError) as err:
        EigenProRegressor(n_epochs=1, random_state=0).fit(X, y)
    assert "Got inf" not in str(err.value) and "X" in str(err.value)
