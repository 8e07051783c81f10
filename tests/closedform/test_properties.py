# SPDX-License-Identifier: BSD-3-Clause
"""Property-based tests (Hypothesis) of the closed-form estimators and their parts.

Random data (shapes, dtypes, NaN, inf, 1e300, 1e-300, constant columns,
duplicate rows, more features than samples, one sample, one class) and
random hyperparameters (valid and invalid), on tiny networks. ``fit``,
``partial_fit`` and ``predict`` either give finite, correctly shaped results
or raise ``ValueError``/``TypeError`` naming the argument; a failed call
leaves the fitted estimator bit-identical; inputs are never written to.
The activations' inverses and squashes are checked on random arrays.
"""

import math
import warnings

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from closedform import ManifoldNetClassifier, ManifoldNetRegressor, StiefelSVC
from closedform.activations import ACTIVATIONS, get_activation

special = st.sampled_from([None, math.nan, math.inf, -math.inf, 1e300, 1e-300, "constant", "dup"])

TINY = {
    "net_clf": lambda: ManifoldNetClassifier((4,), max_iter=1, head_max_iter=2, random_state=0),
    "net_reg": lambda: ManifoldNetRegressor((4,), max_iter=1, random_state=0),
    "svc": lambda: StiefelSVC("ridge", max_iter=2),
    "svc_stiefel": lambda: StiefelSVC("stiefel", max_iter=2),
}
#: hyperparameters with valid and invalid values, per estimator kind
HYPER = {
    "alpha": [1e-3, "auto", 0.0, -1.0, math.nan, "big"],
    "max_iter": [1, 2, 0, -1, 1.5],
    "tol": [0.0, 1e-3, -1.0, math.nan],
    "memory_budget": ["auto", 10_000, 0, -1],
}
NET_HYPER = {
    "hidden_layer_sizes": [(3,), (2, 3), (), (0,), (-1,), "auto", "wide"],
    "activation": ["sigmoid", "tanh", "relu", "softplus", "cubic"],
    "alpha_hidden": [1e-6, 0.0, -1.0],
    "squash_eps": [1e-3, 0.0, 0.5, 0.7],
    "init": ["samples", "random", "orthogonal", "bogus"],
    "init_scale": [3.0, 0.0, math.inf],
    "backward": ["proximal", "least_squares", "bogus"],
    "dtype": [None, "float32", "float64", "float16"],
}


def hyper(kind):
    table = HYPER if kind.startswith("svc") else {**HYPER, **NET_HYPER}
    if kind.startswith("svc"):
        table = {**table, "keep_ratio": [1.0, 0.5, 0.0, 1.5]}
    return st.lists(st.sampled_from(sorted(table)), max_size=2, unique=True).flatmap(
        lambda keys: st.fixed_dictionaries({k: st.sampled_from(table[k]) for k in keys})
    )


def sample(n, d, seed=0, classes=2):
    """Gaussian inputs, float64, with labels cycling through ``classes``."""
    return np.random.default_rng(seed).normal(size=(n, d)), np.arange(n) % classes


def targets(kind, y, X):
    return X[:, 0] * 0 + y.astype(float) if kind == "net_reg" else y


def huge(a):
    return bool(np.any(np.isfinite(a) & (np.abs(a) > 1e150)))


@given(
    kind=st.sampled_from(sorted(TINY)),
    n=st.integers(1, 12),
    d=st.integers(1, 8),
    classes=st.integers(1, 3),
    extreme=special,
    dtype=st.sampled_from([np.float32, np.float64]),
    data=st.data(),
    method=st.sampled_from(["fit", "partial_fit"]),
)
def test_failed_fit_leaves_the_fitted_estimator_bit_identical(
    kind, n, d, classes, extreme, dtype, data, method, plant, attribute_bytes
):
    est = TINY[kind]()
    if method == "partial_fit" and not hasattr(est, "partial_fit"):
        method = "fit"
    kwargs = data.draw(hyper(kind))  # a later partial_fit validates them too
    X0, y0 = sample(20, 3, seed=1, classes=3)
    extra = {"classes": np.arange(3)} if method == "partial_fit" and kind == "net_clf" else {}
    getattr(est, method)(X0, targets(kind, y0, X0), **extra)
    before = attribute_bytes(est)
    params = est.get_params()

    X, y = sample(n, d if method == "fit" else 3, seed=2, classes=classes)
    X = plant(X, extreme, dtype)
    copies = (X.copy(), y.copy())
    est.set_params(**kwargs)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            getattr(est, method)(X, targets(kind, y, X), **extra)
    except (ValueError, TypeError) as e:
        event(f"{type(e).__name__}: {str(e)[:50]}")
        names = (*kwargs, "X", "y", "class", "sample", "feature", "NaN", "infinity")
        assert any(w in str(e) for w in names), str(e)
        est.set_params(**params)
        assert attribute_bytes(est) == before
    else:
        event(f"{method} succeeded")
        assert np.isfinite(X).all() and not huge(X), extreme
        if kind != "net_reg":
            assert classes >= 2 or method == "partial_fit"
        out = est.predict(X)
        assert out.shape == (n,)
        if kind == "net_reg":
            assert np.isfinite(out).all()
        else:
            assert set(np.unique(out)) <= set(np.arange(3))
    assert np.array_equal(X, copies[0], equal_nan=True) and np.array_equal(y, copies[1])


@given(
    kind=st.sampled_from(sorted(TINY)),
    extreme=special,
    d=st.integers(1, 5),
    n=st.integers(1, 6),
)
def test_failed_predict_leaves_the_estimator_bit_identical(
    kind, extreme, d, n, plant, attribute_bytes
):
    est = TINY[kind]()
    X0, y0 = sample(20, 3, seed=1, classes=3)
    est.fit(X0, targets(kind, y0, X0))
    before = attribute_bytes(est)
    X = plant(sample(n, d, seed=3)[0], extreme)
    try:
        out = est.predict(X)
    except (ValueError, TypeError) as e:
        assert "X" in str(e) or "feature" in str(e) or "NaN" in str(e), str(e)
        assert d != 3 or not np.isfinite(X).all()
    else:
        assert d == 3 and out.shape == (n,)
        assert np.isfinite(X).all() or (kind == "net_reg" and huge(X))
    assert attribute_bytes(est) == before


@given(
    name=st.sampled_from(sorted(ACTIVATIONS)),
    H=hnp.arrays(
        np.float64, hnp.array_shapes(max_dims=2, max_side=6), elements=st.floats(-1e6, 1e6)
    ),
    eps=st.sampled_from([1e-3, 0.1, 0.4]),
)
def test_squash_then_inverse_lands_in_the_range(name, H, eps):
    """``squash`` maps finite targets into the open range; ``inverse`` is then finite, exact."""
    act = get_activation(name)
    S = act.squash(H.copy(), eps)
    assert S.shape == H.shape and np.isfinite(S).all()
    assert np.all(S > act.lower) and np.all(S < act.upper)
    Z = act.inverse(S.copy())
    assert np.isfinite(Z).all()
    back = act.forward_(Z.copy())
    np.testing.assert_allclose(back, S, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("kind", ["net_clf", "net_reg", "svc"])
def test_huge_finite_x_is_named(kind, plant):
    """Squares of X that overflow used to fail in cholesky/eigh (FloatingPointError)."""
    X, y = sample(12, 3)
    X = plant(X, 1e300)
    with pytest.raises(ValueError, match="X"):
        TINY[kind]().fit(X, targets(kind, y, X))


@pytest.mark.parametrize("kind", ["net_clf", "net_reg", "svc"])
@pytest.mark.parametrize("d", [3, 8])
def test_two_float32_samples_fit(kind, d):
    """Two float32 samples used to fail in the head's cholesky (FloatingPointError)."""
    X = np.random.default_rng(2).normal(size=(2, d)).astype(np.float32)
    est = TINY[kind]().fit(X, np.array([0, 1]) * (1.0 if kind == "net_reg" else 1))
    assert est.predict(X).shape == (2,)


@pytest.mark.parametrize("kind", ["net_clf", "net_reg"])
@pytest.mark.parametrize(("name", "value"), [("alpha", -1.0), ("tol", -1.0), ("max_iter", 0)])
def test_partial_fit_validates_changed_hyperparameters(kind, name, value, attribute_bytes):
    X, y = sample(20, 3, seed=1, classes=3)
    est = TINY[kind]()
    extra = {"classes": np.arange(3)} if kind == "net_clf" else {}
    est.partial_fit(X, targets(kind, y, X), **extra)
    est.set_params(**{name: value})  # scikit-learn validates only a first partial_fit
    before = attribute_bytes(est)
    with pytest.raises(ValueError, match=name):
        est.partial_fit(X, targets(kind, y, X), **extra)
    assert attribute_bytes(est) == before
