# SPDX-License-Identifier: BSD-3-Clause
"""The closed-form estimators with ``process_group=``: 2 gloo ranks equal one process.

Each rank passes its own rows (70 and 90 rows of digits, or of a smooth
regression); every rank must end with the model one process fits on the rows
concatenated in rank order: float64, ``atol 1e-10`` on the weights and the
objective, the same penalty, iteration counts and classes. A bad input on one
rank (another feature count, NaN, zero rows) raises on both, and a failed fit
leaves the previous model in place on both. The ranks are forked by the
``gloo_ranks`` fixture (tests/conftest.py), each test within seconds.
"""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits

from closedform import ManifoldNetClassifier, ManifoldNetRegressor, StiefelSVC, svm_head

ATOL = 1e-10
#: the process group's timeout of the tests that only compare results: generous, so that a
#: rank starved of CPU on a loaded machine is not taken for a stalled one
PATIENT = 30.0
SIZES = (70, 90)  # rows on rank 0 and rank 1


def _digits():
    X, y = load_digits(return_X_y=True)
    return X[: sum(SIZES)] / 16.0, y[: sum(SIZES)]


def _binary():
    X, y = _digits()
    return X, y % 2


def _smooth():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(sum(SIZES), 3))
    Y = np.stack([np.sin(3 * X[:, 0]) * X[:, 1], X[:, 2] ** 2], axis=1)
    return X, Y + 0.05 * rng.standard_normal(Y.shape)


def _weights(weighted):
    """None, positive weights, or those with every weight of rank 0's rows zero."""
    if not weighted:
        return None
    w = np.random.default_rng(1).integers(0, 3, size=sum(SIZES)).astype(np.float64) + 0.5
    if weighted == "rank 0 zero":
        w[: SIZES[0]] = 0.0
    return w


def _part(A, rank):
    start = sum(SIZES[:rank])
    return None if A is None else A[start : start + SIZES[rank]]


def _state(est):
    """The fitted attributes to compare (``history_`` holds seconds)."""
    out = {}
    for k, v in vars(est).items():
        if k.endswith("_") and not k.startswith("_") and k != "history_":
            out[k] = v
    return out


def _fit_rank(rank, est, data, method, weighted, loo_rows=None):
    if loo_rows is not None:  # a forked rank: the module's value changes in it only
        svm_head.LOO_ROWS = loo_rows
    X, y = data
    w = _weights(weighted)
    est = clone(est).set_params(process_group="world")
    Xr, yr, wr = _part(X, rank), _part(y, rank), _part(w, rank)
    if method == "fit":
        est.fit(Xr, yr, sample_weight=wr)
    else:  # two batches per rank
        half = Xr.shape[0] // 2
        extra = {"classes": np.unique(y)} if isinstance(est, ManifoldNetClassifier) else {}
        for part in (slice(0, half), slice(half, None)):
            est.partial_fit(
                Xr[part], yr[part], sample_weight=None if wr is None else wr[part], **extra
            )
    return _state(est)


def _fit_one(est, data, method, weighted):
    X, y = data
    w = _weights(weighted)
    est = clone(est)
    if method == "fit":
        return _state(est.fit(X, y, sample_weight=w))
    # the single process' batch k is the concatenation of every rank's batch k
    halves = [(_part(X, r).shape[0] // 2) for r in range(2)]
    extra = {"classes": np.unique(y)} if isinstance(est, ManifoldNetClassifier) else {}
    for first in (True, False):
        rows = []
        for r, h in enumerate(halves):
            idx = np.arange(sum(SIZES[:r]), sum(SIZES[: r + 1]))
            rows.append(idx[:h] if first else idx[h:])
        rows = np.concatenate(rows)
        est.partial_fit(X[rows], y[rows], sample_weight=None if w is None else w[rows], **extra)
    return _state(est)


def _assert_same(ranked, single, atol=ATOL):
    for k, v in single.items():
        got = ranked[k]
        if k == "sample_weight_":  # per rank: compared joined
            continue
        if isinstance(v, list) and v and isinstance(v[0], np.ndarray):
            for a, b in zip(got, v, strict=True):
                np.testing.assert_allclose(a, b, rtol=0, atol=atol, err_msg=k)
        elif isinstance(v, np.ndarray) and v.dtype.kind == "f":
            np.testing.assert_allclose(got, v, rtol=0, atol=atol, err_msg=k)
        elif isinstance(v, np.ndarray):
            np.testing.assert_array_equal(got, v, err_msg=k)
        elif k == "objective_curve_":
            np.testing.assert_allclose(got, v, rtol=0, atol=atol, err_msg=k)
        elif k == "temperature_":
            assert got == pytest.approx(v, rel=1e-8), k  # bounded scalar search, xatol 1e-5
        else:
            assert got == v, k


CLASSIFIER = ManifoldNetClassifier((20,), random_state=0)
CASES = {
    "classifier-defaults": (CLASSIFIER, "digits", "fit", False),
    "classifier-sweeps-weighted": (
        ManifoldNetClassifier((20, 12), max_iter=3, tol=0.0, random_state=0),
        "digits",
        "fit",
        True,
    ),
    "classifier-adaptive": (
        ManifoldNetClassifier(
            (24,),
            adaptive_weights=True,
            keep_ratio=0.9,
            max_iter=2,
            head_max_iter=3,
            init="gaussian",
            random_state=0,
        ),
        "digits",
        "fit",
        False,
    ),
    "classifier-partial_fit": (CLASSIFIER, "digits", "partial_fit", True),
    "regressor-sweeps": (
        ManifoldNetRegressor((16, 8), max_iter=2, tol=0.0, random_state=0),
        "smooth",
        "fit",
        True,
    ),
    "regressor-partial_fit": (
        ManifoldNetRegressor((30,), random_state=0),
        "smooth",
        "partial_fit",
        False,
    ),
    "svc-defaults": (StiefelSVC(), "digits", "fit", False),
    # a rank whose rows all weigh zero takes part with zeros
    "regressor-zero-weight-rank": (
        ManifoldNetRegressor((16,), max_iter=2, tol=0.0, random_state=0),
        "smooth",
        "fit",
        "rank 0 zero",
    ),
    # more units than rows: alpha="auto" scores the dual form, on the gathered rows. The
    # covariance of 200 units on 160 rows is singular and the chosen penalty 1e-4 of its
    # scale, so the rounding of sums taken in another order grows by a condition number of
    # about 1e6: 1e-8 (measured: 6e-10 on weights of size 3)
    "classifier-wide": (
        ManifoldNetClassifier((200,), random_state=0),
        "digits",
        "fit",
        True,
        {"atol": 1e-8},
    ),
    # LOO_ROWS=100 of the 160 rows: the scored rows are drawn from the concatenation
    "svc-loo-subset": (StiefelSVC(max_iter=5), "digits", "fit", True, {"loo_rows": 100}),
    # two classes for the constrained heads: with more, their first W is unique only up to
    # a direction the SVD picks (StiefelSVC's docstring), which rounding may change
    "svc-gpi-weighted": (StiefelSVC("gpi", alpha=1e-3, max_iter=5), "binary", "fit", True),
    "svc-stiefel": (StiefelSVC("stiefel", max_iter=5), "binary", "fit", False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_two_ranks_fit_the_model_of_one_process_on_the_concatenation(gloo_ranks, monkeypatch, case):
    est, data, method, weighted, *options = CASES[case]
    options = options[0] if options else {}
    atol, loo_rows = options.get("atol", ATOL), options.get("loo_rows")
    data = {"digits": _digits, "smooth": _smooth, "binary": _binary}[data]()
    reports = gloo_ranks(_fit_rank, est, data, method, weighted, loo_rows, timeout=PATIENT)
    if loo_rows is not None:
        monkeypatch.setattr(svm_head, "LOO_ROWS", loo_rows)
    single = _fit_one(est, data, method, weighted)
    for rep in reports:
        assert rep["error"] is None, rep
        _assert_same(rep["value"], single, atol)
    if "sample_weight_" in single and single["sample_weight_"] is not None:
        joined = np.concatenate([rep["value"]["sample_weight_"] for rep in reports])
        np.testing.assert_allclose(joined, single["sample_weight_"], rtol=0, atol=atol)


def _bad_rank(rank, est, bad):
    X, y = _digits()
    Xr, yr = _part(X, rank), _part(y, rank)
    est = clone(est).set_params(process_group="world").fit(Xr, yr)
    before = pickle.dumps(_state(est))
    if rank == 1:
        if bad == "n_features":
            Xr = Xr[:, :-1]
        elif bad == "nan":
            Xr = Xr.copy()
            Xr[3, 5] = np.nan
        elif bad == "zero rows":
            Xr, yr = Xr[:0], yr[:0]
    try:
        est.fit(Xr, yr)
    except (ValueError, RuntimeError) as err:
        return type(err).__name__, str(err), pickle.dumps(_state(est)) == before
    return None


@pytest.mark.parametrize(
    "bad, match",
    [
        ("n_features", r"n_features differs across the ranks .*rank 0: 64, rank 1: 63"),
        ("nan", "NaN"),
        ("zero rows", r"X has 0 rows on rank\(s\) \[1\]"),
    ],
)
@pytest.mark.parametrize(
    "est", [CLASSIFIER, StiefelSVC(max_iter=3)], ids=lambda e: type(e).__name__
)
def test_bad_input_on_one_rank_raises_on_both_and_keeps_the_previous_model(
    gloo_ranks, est, bad, match
):
    import re

    for rep in gloo_ranks(_bad_rank, est, bad, timeout=PATIENT):
        assert rep["error"] is None, rep
        kind, message, unchanged = rep["value"]
        assert kind == "ValueError", message
        assert re.search(match, message), message
        assert unchanged


def _dies_mid_fit(rank):
    X, y = _digits()
    est = ManifoldNetClassifier((20,), max_iter=4, tol=0.0, random_state=0)
    est.set_params(process_group="world").fit(_part(X, rank), _part(y, rank))
    before = pickle.dumps(_state(est))

    def callback(info):
        if rank == 1 and info["iteration"] == 1:
            raise KeyError("planted failure")

    try:
        est.set_params(callback=callback).fit(_part(X, rank), _part(y, rank))
    except Exception as err:
        return type(err).__name__, str(err), pickle.dumps(_state(est)) == before
    return None


def test_a_rank_failing_mid_fit_makes_the_other_raise_and_keep_its_model(gloo_ranks):
    survivor, failed = (rep["value"] for rep in gloo_ranks(_dies_mid_fit, timeout=5.0))
    assert failed[0] == "KeyError" and failed[2]
    assert survivor[0] == "RuntimeError", survivor
    assert "raised, exited or stalled past the group's timeout" in survivor[1]
    assert survivor[2]


def test_early_stopping_with_a_process_group_is_not_implemented(gloo_ranks):
    est = ManifoldNetClassifier((10,), early_stopping=True)
    for rep in gloo_ranks(_fit_rank, est, _digits(), "fit", False, timeout=PATIENT):
        assert rep["error"] == "NotImplementedError"
        assert "early_stopping=True with a process_group" in rep["message"]


@pytest.mark.parametrize("est", [CLASSIFIER, ManifoldNetRegressor(), StiefelSVC()])
def test_process_group_is_a_plain_parameter(est):
    assert est.get_params()["process_group"] is None
    assert clone(clone(est).set_params(process_group="world")).process_group == "world"
    with pytest.raises(ValueError, match="'process_group' parameter"):
        clone(est).set_params(process_group="all").fit(*_digits())
    with pytest.raises(ValueError, match="init_process_group"):
        clone(est).set_params(process_group="world").fit(*_digits())


def _fit_rank_torch(rank, est):
    import sklearn
    import torch

    X, y = _digits()
    with sklearn.config_context(array_api_dispatch=True):
        est = clone(est).set_params(process_group="world")
        est.fit(torch.from_numpy(_part(X, rank)), torch.from_numpy(_part(y, rank)))
        coefs = est.coef_ if hasattr(est, "coef_") else est.coefs_[-1]
        return type(coefs).__name__, coefs.numpy(), est.alpha_, est.n_iter_


@pytest.mark.parametrize(
    "est", [StiefelSVC(max_iter=5), CLASSIFIER], ids=lambda e: type(e).__name__
)
def test_torch_inputs_on_two_ranks_fit_the_numpy_model_of_one_process(gloo_ranks, est):
    pytest.importorskip("array_api_compat")
    single = clone(est).fit(*_digits())
    coefs = single.coef_ if hasattr(single, "coef_") else single.coefs_[-1]
    for rep in gloo_ranks(_fit_rank_torch, est, timeout=PATIENT):
        assert rep["error"] is None, rep
        kind, got, alpha, n_iter = rep["value"]
        assert kind == "Tensor"
        np.testing.assert_allclose(got, coefs, rtol=0, atol=ATOL)
        assert (alpha, n_iter) == (single.alpha_, single.n_iter_)
