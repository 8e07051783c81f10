# SPDX-License-Identifier: BSD-3-Clause
"""GBDTSearchCV: the SearchCV contract, the encoding, the pruning rule, the search's gain."""

import itertools
import math
import warnings

import numpy as np
import pytest
from scipy.stats import loguniform, randint, uniform
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import FitFailedWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import RandomizedSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from solvers._validation import InvalidParameterError
from solvers.model_selection import (
    GBDTSearchCV,
    SearchSpace,
    default_predictor,
    eigenpro_space,
    manifold_net_space,
)
from solvers.model_selection.pruning import MIN_EVIDENCE, choice_effects, prune
from solvers.model_selection.space import N_REGIONS

# -- a synthetic objective with a clear structure ---------------------------------------------

KINDS = ["good", "b", "c", "d", "e", "f"]


def objective(kind, x, k):
    """One good kind, a log-scale optimum at x = 20, more k is better."""
    return (0.0 if kind == "good" else -1.0) - 0.25 * (math.log10(x) - 1.3) ** 2 + 0.1 * k


class Toy(RegressorMixin, BaseEstimator):
    """Its score is :func:`objective` of its parameters; ``fail=True`` fails the fit."""

    def __init__(self, kind="b", x=1.0, k=1, fail=False):
        self.kind = kind
        self.x = x
        self.k = k
        self.fail = fail

    def fit(self, X, y=None):
        if self.fail:
            raise ValueError("planted failure")
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def predict(self, X):
        return np.zeros(len(X))

    def score(self, X, y=None):
        return objective(self.kind, self.x, self.k)


TOY_SPACE = {"kind": KINDS, "x": loguniform(1e-4, 1e4), "k": [1, 2, 3, 4, 5]}
X_TOY, Y_TOY = np.zeros((12, 2)), np.zeros(12)


#: a cheaper predictor for the tests that check the bookkeeping, not the search's quality
FAST = default_predictor().set_params(max_iter=20, learning_rate=0.3)


def toy_search(**kw):
    settings = dict(n_iter=30, n_initial=10, batch_size=5, n_candidates=200, cv=2, random_state=0)
    settings["predictor"] = FAST
    return GBDTSearchCV(Toy(), TOY_SPACE, **{**settings, **kw})


# -- scikit-learn's estimator checks ----------------------------------------------------------


@parametrize_with_checks(
    [
        GBDTSearchCV(
            Ridge(),
            {"alpha": loguniform(0.1, 10.0)},
            n_iter=4,
            n_initial=2,
            batch_size=1,
            n_candidates=50,
            cv=2,
            error_score="raise",
            random_state=0,
        ),
        GBDTSearchCV(
            LogisticRegression(),
            {"C": [0.1, 1.0, 10.0]},
            n_iter=3,
            n_initial=2,
            batch_size=1,
            n_candidates=50,
            cv=2,
            error_score="raise",
            random_state=0,
        ),
    ],
    # scikit-learn marks this check an expected failure of RandomizedSearchCV too
    expected_failed_checks=lambda est: (
        {"check_supervised_y_2d": "DataConversionWarning not caught (as RandomizedSearchCV)"}
        if isinstance(est.estimator, Ridge)
        else {}
    ),
)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        check(estimator)


# -- the SearchCV contract --------------------------------------------------------------------


def test_same_random_state_same_search_and_a_new_seed_differs():
    a, b = toy_search().fit(X_TOY, Y_TOY), toy_search().fit(X_TOY, Y_TOY)
    assert a.cv_results_["params"] == b.cv_results_["params"]
    np.testing.assert_array_equal(
        a.cv_results_["mean_test_score"], b.cv_results_["mean_test_score"]
    )
    assert a.pruned_ == b.pruned_
    c = toy_search(random_state=1).fit(X_TOY, Y_TOY)
    assert c.cv_results_["params"] != a.cv_results_["params"]


def test_cv_results_record_rounds_proposers_and_pruning():
    s = toy_search().fit(X_TOY, Y_TOY)
    r = s.cv_results_
    assert len(r["params"]) == 30 and s.n_rounds_ == 1 + 20 // 5
    np.testing.assert_array_equal(r["search_round"], np.repeat([0, 1, 2, 3, 4], [10, 5, 5, 5, 5]))
    assert set(r["proposed_by"][:10]) == {"initial"}
    assert set(r["proposed_by"][10:]) <= {"random", "predictor"}
    by_predictor = r["proposed_by"] == "predictor"
    assert by_predictor.sum() >= 10  # exploration 0.2
    assert np.isfinite(r["predicted_score"][by_predictor]).all()
    assert np.isnan(r["predicted_score"][~by_predictor]).all()
    # n_pruned counts the pruned_ records of the rounds so far
    for rnd in range(1, 5):
        expected = sum(p["round"] <= rnd for p in s.pruned_)
        assert (r["n_pruned"][r["search_round"] == rnd] == expected).all()
    # the best configuration is the argmax, and refit used it
    assert s.best_score_ == pytest.approx(objective(**s.best_params_))
    assert s.best_estimator_.get_params()["kind"] == s.best_params_["kind"]


def test_initial_sample_is_randomized_search_sample():
    """Round 0 draws exactly what RandomizedSearchCV draws with the same seed."""
    g = toy_search(n_iter=10, n_initial=10).fit(X_TOY, Y_TOY)
    r = RandomizedSearchCV(Toy(), TOY_SPACE, n_iter=10, cv=2, random_state=0).fit(X_TOY, Y_TOY)
    assert g.cv_results_["params"] == r.cv_results_["params"]
    assert g.best_params_ == r.best_params_ and g.n_rounds_ == 1


def test_pipeline_multimetric_refit_and_parallel_jobs():
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300))
    space = {
        "logisticregression__C": loguniform(1e-3, 1e2),
        "standardscaler__with_mean": [True, False],
    }
    kw = dict(n_iter=6, n_initial=4, batch_size=2, n_candidates=100, predictor=FAST, cv=3)
    kw["random_state"] = 0
    one = GBDTSearchCV(pipe, space, **kw).fit(X, y)
    two = GBDTSearchCV(pipe, space, n_jobs=2, **kw).fit(X, y)
    assert one.cv_results_["params"] == two.cv_results_["params"]
    assert one.best_estimator_.steps[-1][1].C == one.best_params_["logisticregression__C"]
    assert one.score(X, y) > 0.9
    multi = GBDTSearchCV(
        pipe, space, scoring=["accuracy", "neg_log_loss"], refit="neg_log_loss", **kw
    )
    multi.fit(X, y)
    assert multi.best_index_ == int(np.argmax(multi.cv_results_["mean_test_neg_log_loss"]))
    assert "mean_test_accuracy" in multi.cv_results_


def test_failing_fits_get_error_score_and_do_not_stop_the_search():
    space = {**TOY_SPACE, "fail": [True, False]}
    with pytest.warns(FitFailedWarning):
        s = GBDTSearchCV(
            Toy(),
            space,
            n_iter=20,
            n_initial=8,
            batch_size=4,
            cv=2,
            random_state=0,
            predictor=FAST,
            n_candidates=200,
        )
        s.fit(X_TOY, Y_TOY)
    failed = np.array([p["fail"] for p in s.cv_results_["params"]])
    assert failed.any() and not failed.all()
    assert np.isnan(s.cv_results_["mean_test_score"][failed]).all()
    assert not s.best_params_["fail"]
    # failures count as the worst score: the predictor steers away from them
    assert failed[8:].mean() < failed[:8].mean()
    with pytest.raises(ValueError, match="planted failure"):
        GBDTSearchCV(Toy(), space, n_iter=4, n_initial=4, cv=2, error_score="raise",
                     random_state=0).fit(X_TOY, Y_TOY)  # fmt: skip
    s = GBDTSearchCV(Toy(), space, n_iter=12, n_initial=8, batch_size=4, cv=2, error_score=-50.0,
                     random_state=0, predictor=FAST, n_candidates=200)  # fmt: skip
    with pytest.warns(FitFailedWarning):
        s.fit(X_TOY, Y_TOY)
    assert (
        s.cv_results_["mean_test_score"][[p["fail"] for p in s.cv_results_["params"]]] == -50
    ).all()


def test_predictor_guided_search_beats_random_search():
    """Same evaluations, five seeds: the guided best is higher on every seed."""
    wins = []
    for seed in range(5):
        g = toy_search(random_state=seed, predictor=None, n_candidates=300).fit(X_TOY, Y_TOY)
        r = RandomizedSearchCV(Toy(), TOY_SPACE, n_iter=30, cv=2, random_state=seed).fit(
            X_TOY, Y_TOY
        )
        wins.append(g.best_score_ - r.best_score_)
    assert min(wins) >= 0.0 and np.mean(wins) > 0.1, wins


def test_small_grid_is_exhausted_without_repeats():
    space = {"kind": ["good", "b"], "k": [1, 2]}
    with pytest.warns(UserWarning, match="holds 4 configurations"):
        s = GBDTSearchCV(
            Toy(), space, n_iter=10, n_initial=2, batch_size=1, cv=2, random_state=0, predictor=FAST
        )
        s.fit(X_TOY, Y_TOY)
    params = s.cv_results_["params"]
    assert len(params) == 4 and len({tuple(sorted(p.items())) for p in params}) == 4


def test_list_of_dicts_space():
    space = [{"kind": ["good"], "x": loguniform(1, 100)}, {"kind": ["b", "c"], "k": randint(1, 6)}]
    s = GBDTSearchCV(
        Toy(),
        space,
        n_iter=16,
        n_initial=6,
        batch_size=5,
        cv=2,
        random_state=0,
        predictor=FAST,
        n_candidates=200,
    )
    s.fit(X_TOY, Y_TOY)
    for p in s.cv_results_["params"]:
        assert set(p) in ({"kind", "x"}, {"kind", "k"})
    assert s.feature_names_[:2] == ["subspace=0", "subspace=1"]


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "space, kw, error, match",
    [
        ({}, {}, ValueError, "param_distributions is empty"),
        ([], {}, ValueError, "param_distributions is empty"),
        ([{}], {}, ValueError, "empty dict"),
        ({"kind": []}, {}, ValueError, r"param_distributions\['kind'\] is an empty list"),
        ({"kind": "good"}, {}, TypeError, r"param_distributions\['kind'\] must be a list"),
        ({"kind": 3}, {}, TypeError, r"param_distributions\['kind'\] must be a list"),
        ({"colour": ["red"]}, {}, ValueError, r"param_distributions names \['colour'\]"),
        (TOY_SPACE, {"n_initial": 31}, ValueError, "n_initial=31 must be at most n_iter=30"),
        (TOY_SPACE, {"n_iter": 0}, InvalidParameterError, "'n_iter' parameter"),
        (TOY_SPACE, {"exploration": 1.5}, InvalidParameterError, "'exploration' parameter"),
        (TOY_SPACE, {"n_candidates": True}, InvalidParameterError, "'n_candidates' parameter"),
        (TOY_SPACE, {"predictor": "gbdt"}, InvalidParameterError, "'predictor' parameter"),
        (
            TOY_SPACE,
            {"scoring": ["r2", "max_error"], "refit": False},
            ValueError,
            "refit must name",
        ),
    ],
)
def test_bad_input_is_refused_naming_the_argument(space, kw, error, match):
    s = GBDTSearchCV(Toy(), space, **{"n_iter": 30, "n_initial": 10, "cv": 2, **kw})
    with pytest.raises(error, match=match):
        s.fit(X_TOY, Y_TOY)
    assert not hasattr(s, "cv_results_")


# -- the encoding -----------------------------------------------------------------------------


def test_encoding_one_hot_ordinal_and_log_scale():
    space = SearchSpace(
        {"kind": ["a", None, (1, 2)], "width": [10, 100, 1000], "alpha": loguniform(1e-3, 1e3),
         "shift": uniform(-1, 2), "flag": [True, False]}
    )  # fmt: skip
    names = space.feature_names
    assert names == ["alpha", "flag=True", "flag=False", "kind=a", "kind=None", "kind=(1, 2)",
                     "shift", "width"]  # fmt: skip
    dims = {d.name: d for d in space.dimensions}
    assert dims["width"].kind == "ordinal" and dims["width"].log
    assert dims["flag"].kind == "categorical" and dims["kind"].kind == "categorical"
    assert dims["alpha"].log and not dims["shift"].log
    params = {"kind": (1, 2), "width": 100, "alpha": 0.01, "shift": -0.5, "flag": False}
    row = space.encode(0, params)
    np.testing.assert_allclose(row, [-2.0, 0, 1, 0, 0, 1, -0.5, 2.0])
    # quartile regions of equal prior mass: equal widths in log10(alpha)
    edges = [10.0**e for e in (-3, -1.5, 0, 1.5, 3)]
    regions = [dims["alpha"].region(i) for i in range(N_REGIONS)]
    np.testing.assert_allclose(regions, list(itertools.pairwise(edges)), rtol=1e-9)


def test_pruned_choices_are_never_drawn():
    space = SearchSpace({"kind": KINDS, "x": loguniform(1e-4, 1e4)})
    dims = {d.name: d for d in space.dimensions}
    dims["kind"].pruned |= {1, 2, 3}
    dims["x"].pruned |= {0, 3}
    rng = np.random.RandomState(0)
    draws = [space.sample(rng)[0] for _ in range(300)]
    assert {p["kind"] for p in draws} == {"good", "e", "f"}
    xs = np.array([p["x"] for p in draws])
    assert xs.min() >= 1e-2 and xs.max() < 1e2


def test_neighbours_move_one_parameter_and_respect_pruning():
    space = SearchSpace(TOY_SPACE)
    dims = {d.name: d for d in space.dimensions}
    dims["kind"].pruned |= {1, 2}
    rng = np.random.RandomState(0)
    params = {"kind": "good", "k": 3, "x": 20.0}
    row = space.encode(0, params)
    moved = {"kind": 0, "k": 0, "x": 0}
    for _ in range(300):
        new, new_row = space.neighbour(row, params, rng)
        changed = [n for n in params if new[n] != params[n]]
        assert len(changed) <= 1 and new["kind"] not in ("b", "c")
        np.testing.assert_array_equal(new_row, space.encode(0, new))
        for n in changed:
            moved[n] += 1
            if n == "x":  # u moves by N(0, 0.1^2): 0.8 decades of x; within 4 sd
                assert abs(math.log10(new["x"] / 20.0)) < 8 * 0.4 + 1e-9
            if n == "k":
                assert isinstance(new["k"], int)
    assert min(moved.values()) > 50


# -- the pruning rule -------------------------------------------------------------------------


class Linear:
    """A fake predictor: a fixed linear function of the features."""

    def __init__(self, w):
        self.w = np.asarray(w, dtype=float)

    def predict(self, rows):
        return np.asarray(rows) @ self.w


def test_partial_dependence_and_the_rule():
    space = SearchSpace({"kind": ["a", "b", "c", "d"]})
    predictor = Linear([0.0, -1.0, -0.1, 0.2])  # one-hot columns: the value of each kind
    pool = np.eye(4)[np.random.RandomState(0).randint(4, size=50)]
    dim = space.dimensions[0]
    np.testing.assert_allclose(choice_effects(predictor, space, dim, pool), [0.0, -1.0, -0.1, 0.2])
    seen = np.eye(4)[[0, 0, 0, 1, 1, 1, 2, 2, 2, 3]]
    scores = predictor.predict(seen)
    assert 0.5 * np.std(scores) == pytest.approx(0.2296, abs=1e-4)
    # effects: PD minus their mean -0.225; b: -0.775 < -0.2296, pruned; c: +0.125, kept
    pruned = prune(predictor, space, pool, seen, scores, seen[0], threshold=0.5, round=1)
    assert [(p.param, p.description) for p in pruned] == [("kind", "kind='b'")]
    assert pruned[0].n_evaluated == 3 == MIN_EVIDENCE and dim.pruned == {1}
    # the incumbent's choice is kept even when its effect is clearly negative
    space2 = SearchSpace({"kind": ["a", "b", "c", "d"]})
    pruned = prune(predictor, space2, pool, seen, scores, seen[3], threshold=0.5, round=1)
    assert pruned == [] and space2.dimensions[0].pruned == set()
    # without evidence (b seen twice) nothing is pruned
    space3 = SearchSpace({"kind": ["a", "b", "c", "d"]})
    few = [0, 1, 3, 4, 6, 9]
    assert (
        prune(predictor, space3, pool, seen[few], scores[few], seen[0], threshold=0.5, round=1)
        == []
    )


def test_pruning_never_removes_the_incumbent():
    """At every round, the best configuration evaluated before it keeps all its choices."""
    for seed in range(2):
        s = toy_search(random_state=seed, prune_threshold=0.2).fit(X_TOY, Y_TOY)
        assert s.pruned_, "the toy objective has clearly bad kinds: something is pruned"
        r = s.cv_results_
        space = SearchSpace(TOY_SPACE)
        dims = {d.name: d for d in space.dimensions}
        for p in s.pruned_:
            before = np.flatnonzero(r["search_round"] < p["round"])
            best = r["params"][before[np.argmax(r["mean_test_score"][before])]]
            assert dims[p["param"]].choice_of(best[p["param"]]) != p["choice"]
        final = {d: dims[d].choice_of(v) for d, v in s.best_params_.items()}
        assert all(final[p["param"]] != p["choice"] for p in s.pruned_)


# -- example spaces ---------------------------------------------------------------------------


def test_example_spaces_name_real_parameters():
    from closedform import ManifoldNetClassifier
    from eigenpro import EigenProClassifier

    for est, space in [
        (ManifoldNetClassifier(), manifold_net_space()),
        (EigenProClassifier(), eigenpro_space()),
        (EigenProClassifier(), eigenpro_space(np.random.RandomState(0).rand(50, 3))),
    ]:
        assert set(space) <= set(est.get_params())
        params, _ = SearchSpace(space).sample(np.random.RandomState(0))
        est.set_params(**params)._validate_params()
