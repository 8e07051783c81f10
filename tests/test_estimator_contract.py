# SPDX-License-Identifier: BSD-3-Clause
"""The contract every estimator of the library keeps, beyond scikit-learn's checks.

For each estimator (EigenPro, ManifoldNet, StiefelSVC):

- a fit that fails, on a bad parameter, on bad data or in the middle (a
  callback that raises), leaves the previous fit bit-identical
  (``solvers._estimator.fit_context``);
- two fits with the same ``random_state`` give identical models;
- a pickle round trip predicts identically;
- a bad parameter is reported by name, before any work.

A new estimator is added to ``ESTIMATORS`` and inherits the contract.
"""

import pickle

import numpy as np
import pytest
from sklearn.base import clone, is_classifier
from sklearn.datasets import load_digits

from closedform import ManifoldNetClassifier, ManifoldNetRegressor, StiefelSVC
from eigenpro import EigenProClassifier, EigenProRegressor

#: (estimator, a parameter value that must be refused)
ESTIMATORS = [
    (EigenProClassifier(n_epochs=2, random_state=0), ("n_epochs", 0)),
    (EigenProRegressor(n_epochs=2, random_state=0), ("alpha", -1.0)),
    (EigenProClassifier(n_centers=50, n_epochs=2, random_state=0), ("n_centers", 0)),
    (ManifoldNetClassifier(hidden_layer_sizes=(16,), max_iter=2, random_state=0), ("mu", -1.0)),
    (ManifoldNetRegressor(hidden_layer_sizes=(16,), max_iter=2, random_state=0), ("tol", -1.0)),
    (StiefelSVC(max_iter=10), ("max_iter", 0)),
]
IDS = [type(est).__name__ for est, _ in ESTIMATORS]


#: fitted attributes that hold wall-clock seconds
WALL_CLOCK = ("history_", "timings_")


def problem(est):
    X, y = load_digits(return_X_y=True)
    X = X[:200] / 16.0
    y = y[:200] if is_classifier(est) else y[:200] / 9.0
    return X, y


def fitted_state(est):
    """The fitted attributes, as comparable host values."""
    return {k: v for k, v in vars(est).items() if k.endswith("_") and not k.startswith("__")}


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y, err_msg=k)
        elif isinstance(x, (list, tuple)) and x and isinstance(x[0], np.ndarray):
            for u, v in zip(x, y, strict=True):
                np.testing.assert_array_equal(u, v, err_msg=k)
        elif k not in WALL_CLOCK:
            assert x == y or (x != x and y != y), k


@pytest.mark.parametrize(("est", "bad"), ESTIMATORS, ids=IDS)
def test_failed_fit_leaves_the_previous_fit_untouched(est, bad):
    X, y = problem(est)
    est = clone(est).fit(X, y)
    before = pickle.dumps(fitted_state(est))
    prediction = est.predict(X)
    name, value = bad
    good = est.get_params()[name]
    est.set_params(**{name: value})
    with pytest.raises(ValueError, match=f"'{name}' parameter"):
        est.fit(X, y)
    est.set_params(**{name: good})
    X_nan = X.copy()
    X_nan[3, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.fit(X_nan, y)
    # a failure deep in the fit, after the data (fewer features) has been taken in

    def interrupt(*args, **kwargs):
        raise RuntimeError("interrupted")

    est.set_params(callback=interrupt)
    with pytest.raises(RuntimeError, match="interrupted"):
        est.fit(X[:, :10], y)
    est.set_params(callback=None)
    assert_same_state(pickle.loads(before), fitted_state(est))
    np.testing.assert_array_equal(est.predict(X), prediction)


@pytest.mark.parametrize(("est", "bad"), ESTIMATORS, ids=IDS)
def test_same_random_state_gives_the_same_model(est, bad):
    X, y = problem(est)
    a, b = clone(est).fit(X, y), clone(est).fit(X, y)
    assert_same_state(fitted_state(a), fitted_state(b))


@pytest.mark.parametrize(("est", "bad"), ESTIMATORS, ids=IDS)
def test_pickle_round_trip_predicts_identically(est, bad):
    X, y = problem(est)
    est = clone(est).fit(X, y)
    loaded = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    if hasattr(est, "decision_function"):
        np.testing.assert_array_equal(loaded.decision_function(X), est.decision_function(X))
