# SPDX-License-Identifier: BSD-3-Clause
"""eigenpro.sharded: EigenPro 2 over 2 gloo ranks (forked, the ``gloo_ranks`` fixture).

Sharded runs equal one process on the concatenated rows (float64, 1e-10),
send the documented bytes per step, raise on every rank for a bad input on
one, and hand over checkpoints that one process resumes.
"""

import pickle
import time

import numpy as np
import pytest

from eigenpro.sharded import sharded_eigenpro_solve
from eigenpro.solver import eigenpro_solve

GLOO_TIMEOUT = 3.0  # tests/conftest.py's
SLACK = 3.0
#: the group timeout of the runs that must succeed: a rank starved of CPU on a loaded
#: machine may lag by more than GLOO_TIMEOUT
PATIENT = 30.0
N, SPLIT, D = 300, 130, 3
KW = dict(bandwidth=0.5, batch_size=50, subsample_size=100, random_state=0)


def _data():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(N, D))
    Y = np.column_stack([np.sin(4 * X[:, 0]) + X[:, 1], np.cos(3 * X[:, 2])])
    return X, Y


def _rows(rank):
    X, Y = _data()
    part = slice(0, SPLIT) if rank == 0 else slice(SPLIT, N)
    return X[part], Y[part]


def _fit(rank, n_epochs, alpha):
    X, Y = _rows(rank)
    result = sharded_eigenpro_solve(
        "gaussian", X, Y, process_group="world", n_epochs=n_epochs, alpha=alpha, **KW
    )
    return {
        "x": result.x,
        "checkpoint": result.checkpoint,
        "history": result.history,
        "bytes": result.bytes_sent,
        "batch": result.batch_size,
        "step": result.step_size,
    }


@pytest.mark.parametrize("alpha", [0.0, 0.1])
def test_two_ranks_give_the_single_process_iterates(gloo_ranks, alpha):
    reports = gloo_ranks(_fit, 3, alpha, timeout=PATIENT)
    assert all(r["error"] is None for r in reports), reports
    X, Y = _data()
    single = eigenpro_solve("gaussian", X, Y, n_epochs=3, alpha=alpha, **KW)
    sharded = np.concatenate([reports[0]["value"]["x"], reports[1]["value"]["x"]])
    # measured 1e-14: the sums over ranks add in another order
    np.testing.assert_allclose(sharded, single.x, rtol=0, atol=1e-10)
    assert np.abs(single.x).max() > 1.0
    for rep in reports:
        v = rep["value"]
        assert (v["batch"], v["step"]) == (single.batch_size, single.step_size)
        np.testing.assert_allclose(v["history"]["train_mse"], single.history["train_mse"],
                                   rtol=1e-10)  # fmt: skip
        np.testing.assert_allclose(v["checkpoint"].coef, single.x, rtol=0, atol=1e-10)
        np.testing.assert_array_equal(v["checkpoint"].permutation, single.checkpoint.permutation)


def test_bytes_per_step_are_the_batch_rows_and_outputs(gloo_ranks):
    # one epoch more adds, per rank, m (d + 2 l) float64 per step (the batch's
    # rows and targets, then its outputs) and the loss estimate's l outputs per row
    one = gloo_ranks(_fit, 1, 0.0, timeout=PATIENT)
    two = gloo_ranks(_fit, 2, 0.0, timeout=PATIENT)
    outputs = 2
    steps = sum(min(50, N - a) * (D + 2 * outputs) for a in range(0, N, 50))
    loss = N * outputs  # n < LOSS_SAMPLES: every row
    for a, b in zip(one, two, strict=True):
        assert b["value"]["bytes"] - a["value"]["bytes"] == 8 * (steps + loss)


def test_a_two_rank_checkpoint_resumes_in_one_process(gloo_ranks):
    reports = gloo_ranks(_fit, 2, 0.0, timeout=PATIENT)
    checkpoint = reports[1]["value"]["checkpoint"]
    X, Y = _data()
    resumed = eigenpro_solve("gaussian", X, Y, n_epochs=4, resume=checkpoint, **KW)
    full = eigenpro_solve("gaussian", X, Y, n_epochs=4, **KW)
    np.testing.assert_allclose(resumed.x, full.x, rtol=0, atol=1e-10)
    assert resumed.nit == 4


def _one_process_checkpoint_on_two_ranks(rank, checkpoint):
    X, Y = _rows(rank)
    result = sharded_eigenpro_solve("gaussian", X, Y, process_group="world", n_epochs=4,
                                    resume=checkpoint, **KW)  # fmt: skip
    return result.x


def test_a_one_process_checkpoint_resumes_on_two_ranks(gloo_ranks):
    X, Y = _data()
    part = eigenpro_solve("gaussian", X, Y, n_epochs=2, **KW)
    full = eigenpro_solve("gaussian", X, Y, n_epochs=4, **KW)
    reports = gloo_ranks(_one_process_checkpoint_on_two_ranks, part.checkpoint, timeout=PATIENT)
    assert all(r["error"] is None for r in reports), reports
    sharded = np.concatenate([r["value"] for r in reports])
    np.testing.assert_allclose(sharded, full.x, rtol=0, atol=1e-10)


def _bad(rank, case):
    X, Y = _rows(rank)
    if rank == 1:
        if case == "features":
            X = X[:, :2]
        elif case == "empty":
            X, Y = X[:0], Y[:0]
        elif case == "dtype":
            X = X.astype(np.float32)
        elif case == "nan":
            X = X.copy()
            X[0, 0] = np.nan
        elif case == "seed":
            return sharded_eigenpro_solve("gaussian", X, Y, process_group="world",
                                          **{**KW, "random_state": 1})  # fmt: skip
    return sharded_eigenpro_solve("gaussian", X, Y, process_group="world", n_epochs=1, **KW)


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("features", "n_features differs"),
        ("empty", "0 rows on rank"),
        ("dtype", "dtype differs"),
        ("nan", "NaN"),
        ("seed", "random_state differs"),
    ],
)
def test_bad_input_on_one_rank_raises_on_both(gloo_ranks, case, match):
    reports = gloo_ranks(_bad, case)
    for rep in reports:
        assert rep["error"] == "ValueError", rep
        assert match in rep["message"]
        assert rep["elapsed"] < GLOO_TIMEOUT  # no rank waited for the timeout


def _stall(rank):
    from solvers.distributed import Communicator

    X, Y = _rows(rank)
    Communicator("world").all_reduce_sum(np.ones(1))  # both ranks are up and connected
    if rank == 1:
        time.sleep(60)  # killed by the fixture
    return sharded_eigenpro_solve("gaussian", X, Y, process_group="world", n_epochs=1, **KW)


def test_a_stalled_rank_makes_the_other_raise_within_the_timeout(gloo_ranks):
    survivor = gloo_ranks(_stall, wait_for=[0])[0]
    assert survivor["error"] == "RuntimeError", survivor
    assert "stalled past the group's timeout" in survivor["message"]
    assert survivor["elapsed"] < GLOO_TIMEOUT + SLACK


def _digits(rank=None):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X, y = X[:600] / 16, y[:600]
    if rank is None:
        return X, y
    part = slice(0, 250) if rank == 0 else slice(250, 600)
    return X[part], y[part]


EST = dict(bandwidth=3.0, alpha=1e-3, n_epochs=3, random_state=0)


def _fit_estimators(rank):
    from eigenpro import EigenProClassifier, EigenProRegressor

    X, y = _digits(rank)
    X_test, _ = _digits()
    clf = EigenProClassifier(process_group="world", **EST).fit(X, y)
    reg = EigenProRegressor(process_group="world", **EST).fit(X, y.astype(float))
    whole = clf.gathered()
    return {
        "decision": clf.decision_function(X_test),
        "predict": clf.predict(X_test),
        "reg": reg.predict(X_test),
        "classes": clf.classes_,
        "whole_decision": whole.decision_function(X_test),
        "whole_centers": whole.centers_,
        "pickled": pickle.dumps(clf),
    }


def test_sharded_estimators_predict_what_one_process_fits(gloo_ranks):
    from eigenpro import EigenProClassifier, EigenProRegressor

    reports = gloo_ranks(_fit_estimators, timeout=PATIENT)
    assert all(r["error"] is None for r in reports), reports
    X, y = _digits()
    clf = EigenProClassifier(**EST).fit(X, y)
    reg = EigenProRegressor(**EST).fit(X, y.astype(float))
    for rep in reports:
        v = rep["value"]
        np.testing.assert_allclose(v["decision"], clf.decision_function(X), atol=1e-10)
        np.testing.assert_array_equal(v["predict"], clf.predict(X))
        np.testing.assert_allclose(v["reg"], reg.predict(X), atol=1e-10)
        np.testing.assert_array_equal(v["classes"], np.arange(10))
        np.testing.assert_allclose(v["whole_decision"], v["decision"], atol=1e-12)
        np.testing.assert_array_equal(v["whole_centers"], X)
        # a rank's pickle is its share only: predicting alone is refused
        alone = pickle.loads(v["pickled"])
        with pytest.raises(ValueError, match="fitted over 2 ranks"):
            alone.predict(X)


def _labels_on_one_rank(rank):
    from eigenpro import EigenProClassifier

    X, y = _digits(rank)
    y = np.where(y == 9, 8, y) if rank == 1 else y  # rank 1 never sees a 9
    clf = EigenProClassifier(process_group="world", **EST).fit(X, y)
    return clf.classes_


def test_classes_are_the_union_of_the_ranks_labels(gloo_ranks):
    reports = gloo_ranks(_labels_on_one_rank, timeout=PATIENT)
    for rep in reports:
        np.testing.assert_array_equal(rep["value"], np.arange(10))


def _estimator_bad(rank, case):
    from eigenpro import EigenProRegressor

    X, y = _digits(rank)
    params = dict(EST)
    if rank == 1 and case == "features":
        X = X[:, :10]
    if case == "centres":
        params["n_centers"] = 50
    return EigenProRegressor(process_group="world", **params).fit(X, y.astype(float))


@pytest.mark.parametrize(
    ("case", "error", "match"),
    [("features", "ValueError", "n_features differs"),
     ("centres", "NotImplementedError", "n_centers or centers")],
)  # fmt: skip
def test_estimator_bad_input_raises_on_every_rank(gloo_ranks, case, error, match):
    for rep in gloo_ranks(_estimator_bad, case, timeout=PATIENT):
        assert rep["error"] == error, rep
        assert match in rep["message"]


def _degenerate(rank):
    X, Y = _rows(rank)
    return sharded_eigenpro_solve(lambda A, B: -np.ones((len(A), len(B))), X, Y,
                                  process_group="world", n_epochs=1,
                                  **{**KW, "bandwidth": None})  # fmt: skip


def test_a_preconditioner_that_fails_on_rank_0_raises_on_both(gloo_ranks):
    # the kernel is not positive semi-definite: rank 0's fit raises, rank 1 must not wait
    for rep in gloo_ranks(_degenerate):
        assert rep["error"] == "ValueError", rep
        assert "positive semi-definite" in rep["message"]
        assert rep["elapsed"] < GLOO_TIMEOUT
