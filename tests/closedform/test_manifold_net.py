# SPDX-License-Identifier: BSD-3-Clause
"""closedform.ManifoldNetClassifier / ManifoldNetRegressor and their building blocks."""

import itertools

import numpy as np
import pytest
import sklearn
from sklearn.datasets import load_digits, make_classification, make_regression
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.utils.estimator_checks import parametrize_with_checks

from closedform import ManifoldNetClassifier, ManifoldNetRegressor
from closedform.activations import ACTIVATIONS, get_activation
from closedform.backward import backward_target
from closedform.network import RidgeLayerFactor
from closedform.svm_head import AUTO_ALPHAS
from solvers.ridge import GramStatistics, ridge_gcv


def problem(n=300, p=12, classes=3, seed=0):
    return make_classification(
        n_samples=n,
        n_features=p,
        n_informative=6,
        n_redundant=0,
        n_classes=classes,
        n_clusters_per_class=1,
        random_state=seed,
    )


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:1500] / 16, y[:1500], X[1500:] / 16, y[1500:]


# -- building blocks -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations_invert_exactly(name):
    act = get_activation(name)
    z = np.linspace(-6, 6, 101)
    h = act.forward_(z.copy())
    assert np.all(np.diff(h) > 0)  # strictly increasing, hence invertible
    np.testing.assert_allclose(act.inverse(h), z, rtol=1e-9, atol=1e-9)


def test_relu_is_rejected_with_the_reason():
    with pytest.raises(ValueError, match="not invertible"):
        ManifoldNetClassifier(activation="relu").fit(*problem())


def test_gram_statistics_stream_equals_one_pass_with_weights():
    rng = np.random.default_rng(0)
    H = rng.normal(size=(103, 7)) + 50.0
    T = rng.normal(size=(103, 3))
    w = rng.random(103)
    stats = GramStatistics().update(H[:40], T[:40], w[:40], block_rows=7)
    stats.update(H[40:], T[40:], w[40:], block_rows=11)
    m, t = w @ H / w.sum(), w @ T / w.sum()
    Hc, Tc = H - m, T - t
    np.testing.assert_allclose(stats.mean, m, rtol=1e-13)
    np.testing.assert_allclose(stats.scatter, (Hc * w[:, None]).T @ Hc, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(stats.cross, (Hc * w[:, None]).T @ Tc, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(stats.target_scatter, w @ Tc**2, rtol=1e-10)
    with pytest.raises(ValueError, match="every update or on none"):
        stats.update(H[:5])


def test_gcv_scores_match_the_hat_matrix_definition():
    X, y = make_regression(n_samples=60, n_features=8, noise=5.0, random_state=0)
    Y = np.stack([y, 0.5 * y + np.arange(60)], axis=1)
    stats = GramStatistics().update(X, Y)
    gammas = [1e-2, 1.0, 1e2, 1e4]
    scores, _ = ridge_gcv(stats.scatter, stats.cross, stats.target_scatter, 60, gammas)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    for g, score in zip(gammas, scores, strict=True):
        hat = Xc @ np.linalg.solve(Xc.T @ Xc + g * np.eye(8), Xc.T)
        rss = np.sum((Yc - hat @ Yc) ** 2)
        df = 1.0 + np.trace(hat)  # the intercept counts
        np.testing.assert_allclose(score, 60 * rss / (60 - df) ** 2, rtol=1e-9)


def test_ridge_layer_equals_sklearn_ridge_with_weights():
    rng = np.random.default_rng(1)
    H = rng.normal(size=(80, 6))
    T = rng.normal(size=(80, 4))
    w = rng.random(80)
    w /= w.sum()
    factor = RidgeLayerFactor(H, w, alpha=0.1, block_rows=13)
    W, b = factor.solve(H, T)
    # ours: sum_i w_i ||.||^2 + gamma ||W||^2 with sum w = 1; sklearn: sum_i s_i ||.||^2 + a ||W||^2
    ref = Ridge(alpha=factor.gamma).fit(H, T, sample_weight=w)
    np.testing.assert_allclose(W, ref.coef_.T, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b, ref.intercept_, rtol=1e-10, atol=1e-12)


def test_backward_targets_limits():
    rng = np.random.default_rng(2)
    n, d, k = 50, 8, 3
    H = rng.normal(size=(n, d))
    W = rng.normal(size=(d, k))
    b = rng.normal(size=k)
    T = rng.normal(size=(n, k))
    # mu -> infinity keeps the current outputs; mu -> 0 gives the pseudo-inverse solution
    far = backward_target("proximal", T, W, b, H, mu=1e12)
    np.testing.assert_allclose(far, H, atol=1e-8)
    near = backward_target("proximal", T, W, b, H, mu=1e-12)
    pinv = backward_target("pinv", T, W, b, H)
    # they differ by the component of H in the null space of W^T, which the proximal keeps
    null = np.eye(d) - W @ np.linalg.pinv(W)
    np.testing.assert_allclose(near, pinv + H @ null, atol=1e-6)
    # pinv solves H W = T - b (feasible: k <= d, W full column rank) with minimum norm, up to
    # its regularisation (1e-8 relative)
    np.testing.assert_allclose(pinv @ W + b, T, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pinv, (T - b) @ np.linalg.pinv(W), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(backward_target("adjoint", T, W, b, H), (T - b) @ W.T)


def test_pinv_targets_below_the_head_have_rank_c():
    rng = np.random.default_rng(3)
    H = rng.random((200, 40))
    W = rng.normal(size=(40, 3))
    target = backward_target("pinv", rng.normal(size=(200, 3)), W, np.zeros(3), H)
    assert np.linalg.matrix_rank(target) == 3
    prox = backward_target("proximal", rng.normal(size=(200, 3)), W, np.zeros(3), H)
    assert np.linalg.matrix_rank(prox) == 40


# -- the estimators --------------------------------------------------------------------------


def test_identity_activation_one_layer_is_linear_regression():
    X, y = make_regression(n_samples=200, n_features=6, noise=1.0, random_state=0)
    # a square random layer is invertible: the network spans the same functions as X
    net = ManifoldNetRegressor((6,), activation="identity", alpha=0.0)
    net.set_params(random_state=0).fit(X, y)
    np.testing.assert_allclose(net.predict(X), LinearRegression().fit(X, y).predict(X), rtol=1e-8)


def test_identity_network_sweep_is_ridge_on_the_inputs():
    # with the identity activation a sweep fits the hidden layer by ridge on X, and the
    # decision layer on top: the whole network stays a linear function fitted to the targets
    X, y = make_regression(n_samples=300, n_features=5, noise=1.0, random_state=1)
    net = ManifoldNetRegressor(
        (8,), activation="identity", alpha=1e-10, alpha_hidden=1e-10, max_iter=3, tol=0.0,
        random_state=0,
    ).fit(X, y)  # fmt: skip
    np.testing.assert_allclose(net.predict(X), LinearRegression().fit(X, y).predict(X), rtol=1e-6)


@pytest.mark.parametrize("head", ["ridge", "stiefel", "gpi"])
def test_objective_curve_is_non_increasing_and_sweeps_help_training(digits, head):
    X, y, _, _ = digits
    clf = ManifoldNetClassifier((200,), head=head, max_iter=4, tol=0.0, random_state=0)
    clf.fit(X, y)
    curve = clf.objective_curve_
    assert len(curve) == clf.n_iter_ and clf.n_iter_ >= 2
    assert all(b <= a for a, b in itertools.pairwise(curve))
    assert curve[-1] < 0.9 * curve[0]  # the sweeps fit the hidden layer, not a no-op
    assert [h["iteration"] for h in clf.history_] == list(range(clf.n_iter_))


def test_a_sweep_that_raises_the_objective_is_rejected(digits):
    X, y, _, _ = digits
    ref = ManifoldNetClassifier((200,), random_state=0).fit(X, y)
    clf = ManifoldNetClassifier((200,), backward="pinv", max_iter=4, random_state=0).fit(X, y)
    # the rank-c targets collapse the hidden layer: the first sweep is rejected, the fit ends
    assert clf.n_iter_ == 1 and len(clf.objective_curve_) == 1
    for a, b in zip(clf.coefs_, ref.coefs_, strict=True):
        np.testing.assert_array_equal(a, b)


def test_digits_accuracy_beats_the_least_squares_elm(digits):
    X, y, Xt, yt = digits
    elm = ManifoldNetClassifier((500,), head_max_iter=1, random_state=0).fit(X, y)
    net = ManifoldNetClassifier((500,), random_state=0).fit(X, y)
    assert net.score(Xt, yt) > 0.92
    assert net.score(Xt, yt) >= elm.score(Xt, yt)


def test_early_stopping_keeps_the_best_validation_weights(digits):
    X, y, _, _ = digits
    scores = []
    clf = ManifoldNetClassifier(
        (200,), max_iter=7, tol=0.0, early_stopping=True, validation_fraction=0.2,
        n_iter_no_change=2, random_state=0, callback=lambda info: scores.append(info),
    ).fit(X, y)  # fmt: skip
    val = [info["validation_score"] for info in scores]
    assert all(v is not None for v in val)
    assert clf.best_validation_score_ == max(val)
    assert len(clf.objective_curve_) == len(val)  # one score per kept iteration


@pytest.mark.parametrize("make", ["classifier", "regressor"])
def test_partial_fit_over_batches_equals_fit(make):
    if make == "classifier":
        X, y = problem(n=400, classes=3)
        params = {"hidden_layer_sizes": (30,), "head_max_iter": 1, "init": "gaussian"}
        full = ManifoldNetClassifier(random_state=0, **params).fit(X, y)
        stream = ManifoldNetClassifier(random_state=0, **params)
        for part in np.array_split(np.arange(400), 7):
            stream.partial_fit(X[part], y[part], classes=np.unique(y))
        out = stream.decision_function(X), full.decision_function(X)
    else:
        X, y = make_regression(n_samples=400, n_features=6, noise=1.0, random_state=0)
        params = {"hidden_layer_sizes": (30,), "init": "gaussian"}
        full = ManifoldNetRegressor(random_state=0, **params).fit(X, y)
        stream = ManifoldNetRegressor(random_state=0, **params)
        for part in np.array_split(np.arange(400), 7):
            stream.partial_fit(X[part], y[part])
        out = stream.predict(X), full.predict(X)
    np.testing.assert_allclose(*out, rtol=1e-8, atol=1e-8)
    if make == "regressor":  # the classifier's fit reports the hinge objective, not this one
        np.testing.assert_allclose(stream.objective_curve_, full.objective_curve_, rtol=1e-8)


def test_partial_fit_stiefel_head_equals_fit():
    X, y = problem(n=400, classes=4)
    params = {
        "hidden_layer_sizes": (30,),
        "head": "stiefel",
        "head_max_iter": 1,
        "init": "gaussian",
    }
    full = ManifoldNetClassifier(random_state=0, **params).fit(X, y)
    stream = ManifoldNetClassifier(random_state=0, **params)
    for part in np.array_split(np.arange(400), 5):
        stream.partial_fit(X[part], y[part], classes=[0, 1, 2, 3])
    # the Stiefel step is unique up to the SVD's completion of the rank-(c-1) direction
    np.testing.assert_array_equal(stream.predict(X), full.predict(X))


def test_partial_fit_needs_classes_and_rejects_unknown_labels():
    X, y = problem()
    clf = ManifoldNetClassifier((20,))
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[y < 2], y[y < 2], classes=[0, 1, 2])
    with pytest.raises(ValueError, match="not in classes"):
        clf.partial_fit(X, y + 5)


def test_alpha_auto_chooses_from_the_grid(digits):
    X, y, Xt, yt = digits
    clf = ManifoldNetClassifier((300,), alpha="auto", random_state=0).fit(X, y)
    assert clf.alpha_ in AUTO_ALPHAS
    assert clf.score(Xt, yt) > 0.9


def test_numpy_and_torch_cpu_agree():
    import torch  # a test dependency (pinned CPU wheel), never skipped

    X, y = problem(n=300, classes=2)
    params = {"hidden_layer_sizes": (25,), "max_iter": 3, "random_state": 0}
    ref = ManifoldNetClassifier(**params).fit(X, y)
    with sklearn.config_context(array_api_dispatch=True):
        clf = ManifoldNetClassifier(**params).fit(torch.tensor(X), torch.tensor(y))
        F = clf.decision_function(torch.tensor(X))
        P = clf.predict_proba(torch.tensor(X))
    assert isinstance(F, torch.Tensor) and isinstance(P, torch.Tensor)
    assert clf.n_iter_ == ref.n_iter_ == 3
    np.testing.assert_allclose(F.numpy(), ref.decision_function(X), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(P.numpy(), ref.predict_proba(X), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda X, y: (ManifoldNetClassifier((2,), head="stiefel"), X, y), "at least as wide"),
        (lambda X, y: (ManifoldNetClassifier((10,)), np.where(X > 1, np.nan, X), y), "NaN"),
        (lambda X, y: (ManifoldNetClassifier((10,)), X, np.zeros_like(y)), "at least 2 classes"),
        (lambda X, y: (ManifoldNetClassifier((10,), activation="cube"), X, y), "activation"),
        (lambda X, y: (ManifoldNetClassifier((10,), backward="x"), X, y), "backward"),
        (lambda X, y: (ManifoldNetClassifier(()), X, y), "at least one hidden layer"),
        (lambda X, y: (ManifoldNetClassifier((10,), dtype="int8"), X, y), "dtype"),
        (lambda X, y: (ManifoldNetClassifier((10,), init="zeros"), X, y), "init"),
        (lambda X, y: (ManifoldNetClassifier((10,)), X[:0], y[:0]), "0 sample"),
    ],
)
def test_bad_input_raises_clearly(make, match):
    X, y = problem(classes=3)
    clf, X, y = make(X, y)
    with pytest.raises(ValueError, match=match):
        clf.fit(X, y)


def test_failed_fit_leaves_the_previous_fit_intact():
    X, y = problem()
    clf = ManifoldNetClassifier((20,), random_state=0).fit(X, y)
    before = [c.copy() for c in clf.coefs_]
    with pytest.raises(ValueError):
        clf.fit(np.full_like(X, np.nan), y)
    for a, b in zip(clf.coefs_, before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_paper_preset_runs_the_papers_architecture(digits):
    X, y, Xt, yt = digits
    clf = ManifoldNetClassifier.paper_preset(max_iter=4, random_state=0).fit(X, y)
    assert [c.shape for c in clf.coefs_] == [(64, 64), (64, 32), (32, 10)]
    assert clf.head == "stiefel" and clf.adaptive_weights
    assert clf.score(Xt, yt) > 0.5


def _expected_failures(estimator):
    expected = {}
    if estimator.init == "samples":
        expected["check_sample_weight_equivalence_on_dense_data"] = (
            "init='samples' draws the hidden units from the training rows: repeating rows "
            "changes the draw (init='gaussian' passes this check)"
        )
    elif isinstance(estimator, ManifoldNetClassifier) and estimator.head == "stiefel":
        expected["check_sample_weight_equivalence_on_dense_data"] = (
            "with 3 classes the first Stiefel step is not unique (the centred one-vs-rest codes "
            "have rank c - 1) and the SVD completes it differently for repeated and weighted rows"
        )
    return expected


@parametrize_with_checks(
    [
        ManifoldNetClassifier((20,), random_state=0),
        ManifoldNetClassifier((20,), init="gaussian", max_iter=3, random_state=0),
        ManifoldNetClassifier((20,), head="stiefel", max_iter=3, random_state=0),
        ManifoldNetRegressor((20,), init="gaussian", max_iter=3, random_state=0),
    ],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_conventions(estimator, check):
    check(estimator)
