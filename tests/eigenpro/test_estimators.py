# SPDX-License-Identifier: BSD-3-Clause
import pickle

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn
from sklearn.datasets import load_digits
from sklearn.kernel_ridge import KernelRidge
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from eigenpro import EigenProClassifier, EigenProRegressor, Laplacian
from solvers.backend import to_numpy

torch = pytest.importorskip("torch")

digits_X, digits_y = load_digits(return_X_y=True)
digits_X = digits_X / 16.0


@parametrize_with_checks(
    [
        EigenProRegressor(),
        EigenProClassifier(),
        EigenProRegressor(kernel="laplacian", alpha=1e-3, precompute_kernel=False),
        EigenProClassifier(kernel=Laplacian(), n_epochs=3),
        EigenProRegressor(n_centers=10),
        EigenProClassifier(n_centers=10, n_epochs=3),
    ]
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_classifier_on_digits_matches_kernel_ridge():
    X, y, Xt, yt = digits_X[:1400], digits_y[:1400], digits_X[1400:], digits_y[1400:]
    clf = EigenProClassifier(bandwidth=2.0, n_epochs=20, random_state=0).fit(X, y)
    Y = np.eye(10)[y]
    krr = KernelRidge(kernel="rbf", gamma=1 / (2 * 2.0**2), alpha=1e-6).fit(X, Y)
    krr_acc = np.mean(krr.predict(Xt).argmax(1) == yt)
    assert clf.score(Xt, yt) >= krr_acc - 0.01
    assert clf.score(X, y) == 1.0  # interpolates the training set


def test_regressor_agrees_with_kernel_ridge():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(300, 4))
    y = np.sin(3 * X[:, 0]) * X[:, 1]
    reg = EigenProRegressor(bandwidth=0.5, alpha=0.1, n_epochs=200, random_state=0).fit(X, y)
    # the regressor centres its targets (intercept_ = their mean); KernelRidge does not
    krr = KernelRidge(kernel="rbf", gamma=1 / (2 * 0.5**2), alpha=0.1).fit(X, y - y.mean())
    assert reg.intercept_.shape == (1,) and reg.intercept_[0] == pytest.approx(y.mean())
    Xt = rng.uniform(size=(50, 4))
    np.testing.assert_allclose(reg.predict(Xt), krr.predict(Xt) + y.mean(), atol=1e-5)
    np.testing.assert_allclose(reg.coef_, krr.dual_coef_, atol=1e-4)
    # far from the data the prediction falls to the mean, not to 0
    assert reg.predict(np.full((1, 4), 50.0))[0] == pytest.approx(y.mean(), abs=1e-9)


def test_numpy_and_torch_inputs_give_the_same_predictions():
    X, y = digits_X[:600], digits_y[:600]
    est_np = EigenProClassifier(n_epochs=3, random_state=0).fit(X, y)
    Xt, yt = torch.asarray(X), torch.asarray(y)
    with sklearn.config_context(array_api_dispatch=True):
        est_t = EigenProClassifier(n_epochs=3, random_state=0).fit(Xt, yt)
        scores_t = est_t.decision_function(Xt)
        pred_t = est_t.predict(Xt)
    assert isinstance(est_t.coef_, torch.Tensor) and isinstance(scores_t, torch.Tensor)
    assert isinstance(pred_t, torch.Tensor)
    np.testing.assert_allclose(scores_t.numpy(), est_np.decision_function(X), rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(pred_t.numpy(), est_np.predict(X))
    # float32 too
    est32 = EigenProRegressor(n_epochs=2, random_state=0).fit(X.astype(np.float32), y)
    with sklearn.config_context(array_api_dispatch=True):
        est32_t = EigenProRegressor(n_epochs=2, random_state=0).fit(
            torch.asarray(X, dtype=torch.float32), torch.asarray(y, dtype=torch.float32)
        )
        p32 = est32_t.predict(torch.asarray(X, dtype=torch.float32))
    assert p32.dtype == torch.float32
    np.testing.assert_allclose(
        p32.numpy(), est32.predict(X.astype(np.float32)), rtol=1e-4, atol=1e-4
    )


def test_device_option_moves_numpy_input_and_returns_numpy():
    X, y = digits_X[:500], digits_y[:500]
    est = EigenProClassifier(n_epochs=2, random_state=0, device="torch:cpu").fit(X, y)
    assert isinstance(est.coef_, torch.Tensor)
    pred = est.predict(X[:20])
    assert isinstance(pred, np.ndarray)
    ref = EigenProClassifier(n_epochs=2, random_state=0).fit(X, y)
    np.testing.assert_array_equal(pred, ref.predict(X[:20]))


def test_predict_with_other_namespace_raises():
    X, y = digits_X[:300], digits_y[:300]
    with sklearn.config_context(array_api_dispatch=True):
        est = EigenProRegressor(n_epochs=1, random_state=0).fit(
            torch.asarray(X), torch.asarray(y * 1.0)
        )
        with pytest.raises(ValueError, match="must use the same namespace"):
            est.predict(X)


def test_history_validation_and_callback():
    X, y = digits_X[:1000], digits_y[:1000]
    seen = []
    clf = EigenProClassifier(
        n_epochs=4, random_state=0, callback=lambda r: seen.append(r["val_score"])
    )
    clf.fit(X, y, X_val=digits_X[1000:1300], y_val=digits_y[1000:1300])
    h = clf.history_
    assert h["epoch"] == [0, 1, 2, 3, 4] and clf.n_iter_ == 4
    assert h["val_score"][0] is None and h["val_score"][1:] == seen
    assert all(0.9 < s <= 1.0 for s in seen)
    assert h["train_mse"][-1] < h["train_mse"][0]
    with pytest.raises(ValueError, match="both X_val and y_val"):
        clf.fit(X, y, X_val=X)


def test_warm_start_continues_training():
    X, y = digits_X[:800], digits_y[:800]
    est = EigenProRegressor(n_epochs=1, warm_start=True, random_state=0).fit(X, y * 1.0)
    first = est.history_["train_mse"][-1]
    est.fit(X, y * 1.0)
    assert est.history_["train_mse"][0] == pytest.approx(first, rel=1e-6)
    assert est.history_["train_mse"][-1] < first
    with pytest.raises(ValueError, match="warm_start"):
        est.fit(X[:100], y[:100] * 1.0)


def test_stop_iteration_from_callback():
    def stop(r):
        raise StopIteration

    est = EigenProRegressor(n_epochs=10, callback=stop, random_state=0).fit(
        digits_X[:300], digits_y[:300]
    )
    assert est.n_iter_ == 1


@pytest.mark.parametrize(
    ("X", "y", "match"),
    [
        (np.array([[np.nan, 1.0], [1.0, 2.0]]), [0, 1], "NaN"),
        (np.array([[np.inf, 1.0], [1.0, 2.0]]), [0, 1], "infinity"),
        (np.empty((0, 3)), [], "0 sample"),
        (np.ones((5, 3)), [0, 1, 0], "inconsistent numbers of samples"),
        (np.random.default_rng(0).random((6, 2)), [1] * 6, "at least 2 classes"),
    ],
)
def test_bad_input_errors(X, y, match):
    with pytest.raises(ValueError, match=match):
        EigenProClassifier().fit(X, y)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"kernel": "sigmoid"}, "Unknown kernel 'sigmoid'"),
        ({"bandwidth": 0.0}, "The 'bandwidth' parameter of EigenProClassifier must be"),
        ({"bandwidth": -2.0}, "The 'bandwidth' parameter of EigenProClassifier must be"),
        ({"bandwidth": True}, "The 'bandwidth' parameter of EigenProClassifier must be"),
        ({"n_epochs": 0}, "'n_epochs' parameter"),
        ({"alpha": -1}, "'alpha' parameter"),
        ({"batch_size": "big"}, "'batch_size' parameter"),
        ({"memory_budget": -5}, "'memory_budget' parameter"),
        ({"precompute_kernel": "yes"}, "'precompute_kernel' parameter"),
        ({"warm_start": 1}, "'warm_start' parameter"),
        ({"callback": 3}, "'callback' parameter"),
        ({"tol": 0.0}, "'tol' parameter"),
        ({"n_components": -1}, "'n_components' parameter"),
        ({"kernel": 2.0}, "'kernel' parameter"),
        ({"device": "tpu"}, "Unknown device"),
    ],
)
def test_bad_parameters_leave_a_fitted_estimator_untouched(params, match):
    X, y = digits_X[:200], digits_y[:200]
    est = EigenProClassifier(n_epochs=1, random_state=0).fit(X, y)
    before = {k: v for k, v in vars(est).items() if k.endswith("_")}
    est.set_params(**params)
    with pytest.raises(ValueError, match=match):
        est.fit(X[:150], y[:150])
    after = {k: v for k, v in vars(est).items() if k.endswith("_")}
    assert before.keys() == after.keys()
    assert after["coef_"] is before["coef_"] and after["n_features_in_"] == 64


def test_failed_first_fit_leaves_no_fitted_state():
    est = EigenProRegressor(bandwidth=-1.0)
    with pytest.raises(ValueError):
        est.fit(digits_X[:50], digits_y[:50])
    assert not any(k.endswith("_") for k in vars(est))


def test_sparse_input_is_rejected_clearly():
    with pytest.raises(TypeError, match="Sparse data was passed"):
        EigenProRegressor().fit(sp.csr_matrix(digits_X[:50]), digits_y[:50])


def test_string_labels_pickle_and_grid_search():
    X, y = digits_X[:400], np.array(["even", "odd"])[digits_y[:400] % 2]
    clf = EigenProClassifier(n_epochs=2, random_state=0).fit(X, y)
    assert clf.decision_function(X[:5]).shape == (5,)
    # string labels are the same problem as the integer labels 0/1 (sorted: "even" < "odd"),
    # and the predictions are the labels the decision function picks (positive: classes_[1])
    ints = EigenProClassifier(n_epochs=2, random_state=0).fit(X, digits_y[:400] % 2)
    F = clf.decision_function(X)
    np.testing.assert_allclose(F, ints.decision_function(X), rtol=0, atol=1e-12)  # measured 0
    assert list(clf.classes_) == ["even", "odd"]
    np.testing.assert_array_equal(clf.predict(X), np.where(F > 0, "odd", "even"))
    assert np.mean(clf.predict(X) == y) > 0.95  # measured 1.0: the labels are not scrambled
    clone = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clone.predict(X), clf.predict(X))
    gs = GridSearchCV(
        EigenProClassifier(n_epochs=1, random_state=0), {"bandwidth": [1.0, 2.0]}, cv=2
    )
    gs.fit(X, y)
    # the searched bandwidth takes effect: each candidate's scores are those of that
    # bandwidth set directly, they differ, and the best is kept and refitted
    scores = [
        cross_val_score(EigenProClassifier(n_epochs=1, random_state=0, bandwidth=b), X, y, cv=2)
        for b in (1.0, 2.0)
    ]
    for i, folds in enumerate(scores):
        assert [gs.cv_results_[f"split{k}_test_score"][i] for k in (0, 1)] == list(folds)
    means = [np.mean(folds) for folds in scores]
    assert means[0] != means[1]  # measured 0.9475 and 0.94
    assert gs.best_params_["bandwidth"] == (1.0, 2.0)[int(np.argmax(means))]
    best = EigenProClassifier(n_epochs=1, random_state=0, bandwidth=gs.best_params_["bandwidth"])
    np.testing.assert_array_equal(
        gs.best_estimator_.decision_function(X), best.fit(X, y).decision_function(X)
    )


def test_float32_and_int_inputs():
    X = (digits_X[:300] * 16).astype(np.int64)
    est = EigenProRegressor(n_epochs=1, random_state=0).fit(X, digits_y[:300])
    assert est.coef_.dtype == np.float64
    est32 = EigenProRegressor(n_epochs=1, random_state=0).fit(X.astype(np.float32), digits_y[:300])
    assert (
        est32.coef_.dtype == np.float32
        and est32.predict(X[:3].astype(np.float32)).dtype == np.float32
    )


@pytest.mark.gpu
def test_torch_cuda_fit_predict_matches_cpu():
    X, y = digits_X[:800], digits_y[:800]
    ref = EigenProClassifier(n_epochs=2, random_state=0).fit(X, y)
    with sklearn.config_context(array_api_dispatch=True):
        Xc, yc = torch.asarray(X, device="cuda"), torch.asarray(y, device="cuda")
        est = EigenProClassifier(n_epochs=2, random_state=0).fit(Xc, yc)
        scores = est.decision_function(Xc)
    assert scores.device.type == "cuda"
    np.testing.assert_allclose(to_numpy(scores), ref.decision_function(X), rtol=1e-6, atol=1e-8)
    est2 = EigenProClassifier(n_epochs=2, random_state=0, device="cuda").fit(X, y)
    assert isinstance(est2.predict(X), np.ndarray)


@pytest.mark.gpu
def test_cupy_fit_predict_matches_cpu():
    cupy = pytest.importorskip("cupy")
    X, y = digits_X[:800], digits_y[:800] * 1.0
    ref = EigenProRegressor(n_epochs=2, random_state=0).fit(X, y)
    with sklearn.config_context(array_api_dispatch=True):
        est = EigenProRegressor(n_epochs=2, random_state=0).fit(cupy.asarray(X), cupy.asarray(y))
        pred = est.predict(cupy.asarray(X))
    assert isinstance(pred, cupy.ndarray)
    np.testing.assert_allclose(to_numpy(pred), ref.predict(X), rtol=1e-6, atol=1e-8)


def test_warm_start_refuses_other_data():
    X, y = digits_X[:300], digits_y[:300] * 1.0
    est = EigenProRegressor(n_epochs=1, warm_start=True, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="same data"):
        est.fit(X[::-1], y[::-1])


def test_fitted_attributes_keep_their_names():
    # pickles of the previous version hold these; predict reads them
    clf = EigenProClassifier(n_epochs=1, random_state=0).fit(digits_X[:200], digits_y[:200])
    private = {k for k in vars(clf) if k.startswith("_")}
    # _n_ranks (issue 15) is absent from older pickles, which read as one rank
    assert private == {"_target_info", "_fingerprint", "_classes_compute", "_n_ranks"}
    np.testing.assert_array_equal(clf.classes_, np.arange(10))
    reg = EigenProRegressor(n_epochs=1, random_state=0).fit(digits_X[:200], digits_y[:200] * 1.0)
    assert {k for k in vars(reg) if k.startswith("_")} == {
        "_target_info",
        "_fingerprint",
        "_n_ranks",
    }
    assert not hasattr(reg, "classes_")
    fitted = {
        "coef_",
        "centers_",
        "kernel_",
        "bandwidth_",
        "alpha_",
        "batch_size_",
        "step_size_",
        "subsample_size_",
        "n_components_",
        "beta_",
        "top_eigenvalue_",
        "preconditioned_eigenvalue_",
        "n_iter_",
        "history_",
        "timings_",
        "n_features_in_",
    }
    assert {k for k in vars(clf) if k.endswith("_") and not k.startswith("_")} == fitted | {
        "classes_"
    }
    # the regressor also keeps its targets' mean
    assert {k for k in vars(reg) if k.endswith("_") and not k.startswith("_")} == fitted | {
        "intercept_"
    }


def test_failing_callback_leaves_the_previous_fit():
    X, y = digits_X[:200], digits_y[:200]
    est = EigenProClassifier(n_epochs=2, random_state=0).fit(X, y)
    coef = est.coef_

    def fail(result):
        raise RuntimeError("stop here")

    est.set_params(callback=fail)
    with pytest.raises(RuntimeError, match="stop here"):
        est.fit(X[:150], y[:150] % 2)
    assert est.coef_ is coef and list(est.classes_) == list(range(10))
