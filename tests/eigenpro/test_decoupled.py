# SPDX-License-Identifier: BSD-3-Clause
"""eigenpro.decoupled: EigenPro 3 on centres apart from the data."""

from typing import NamedTuple

import numpy as np
import pytest
from sklearn.kernel_approximation import Nystroem
from sklearn.linear_model import Ridge
from sklearn.utils import check_random_state

from eigenpro import EigenProClassifier, EigenProRegressor
from eigenpro import decoupled as dc
from eigenpro._iteration import SolverSettings, check_inputs, make_plan, run_epoch
from solvers.backend import MemoryPeak

BANDWIDTH = 0.5


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, 3))
    return X, np.sin(4 * X[:, :1]) + X[:, 1:2]


class AllRowsRun(NamedTuple):
    """One EigenPro 2 epoch on 300 rows, and a decoupled plan with every row a centre."""

    eigenpro2: object  # its plan
    coef: object  # EigenPro 2's coefficients after the epoch
    decoupled: object  # the decoupled plan
    centers: object
    batches: list  # the epoch's batches, as training rows


def _all_rows_run(project_every="auto"):
    X, Y = _data()
    settings = SolverSettings(
        kernel="gaussian", bandwidth=BANDWIDTH, batch_size=50, subsample_size=100
    )
    data = check_inputs(X, Y)
    plan = make_plan(settings, data, check_random_state(0))
    coef = np.zeros((300, 1))
    order = np.random.RandomState(1).permutation(len(plan.matrix.blocks))
    run_epoch(plan, coef, order)
    rng = check_random_state(0)
    Z, rows = dc._resolve_centers(data.X, None, 300, rng)
    dplan = dc.make_decoupled_plan(settings, data, Z, rows, rng, project_every)
    perm, blocks = np.asarray(plan.permutation), plan.matrix.blocks
    assert np.array_equal(rows, perm)  # the same draws: the same subsample and batches
    batches = [perm[blocks[r][0] : blocks[r][1]] for r in order]
    return AllRowsRun(plan, coef, dplan, Z, batches)


def _same_function(run, theta):
    X_new = np.random.default_rng(5).uniform(size=(200, 3))
    ours = run.decoupled.kernel(X_new, run.centers) @ theta
    theirs = run.decoupled.kernel(X_new, run.eigenpro2.X) @ run.coef
    # measured 1.7e-6 (jitter 1e-7 of k(z, z) on a numerically singular K_ZZ)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    assert np.abs(theirs).max() > 1.0


def test_all_rows_as_centres_take_eigenpro2_steps():
    # Z = X: K_ZZ^-1 K_ZB g is the batch's own coefficients, so one epoch over
    # the same batches gives EigenPro 2's function (up to the projection's jitter)
    run = _all_rows_run()
    plan, dplan = run.eigenpro2, run.decoupled
    assert (dplan.batch_size, dplan.step_size) == (plan.batch_size, plan.step_size)
    theta = np.zeros((300, 1))
    dc.run_decoupled_epoch(dplan, theta, run.batches)
    _same_function(run, theta)


@pytest.mark.parametrize("project_every", [1, 3, 100])
def test_delayed_projection_on_all_rows_takes_eigenpro2_steps(project_every):
    # EigenPro 4 keeps each batch as temporary centres until the projection: with
    # Z = X those are centres already, so the function after every batch, and
    # after the epoch's final projection, is EigenPro 2's whatever the delay
    run = _all_rows_run(project_every)
    dplan = run.decoupled
    assert dplan.subsample_among_centers and dplan.project_every == project_every
    theta = np.zeros((300, 1))
    average = dc.IterateAverage(theta)
    dc.run_delayed_epoch(dplan, theta, run.batches, average)
    # one entry of the mean per projection
    assert average.count == -(-len(run.batches) // project_every)
    _same_function(run, theta)


def _nystrom_solution(kernel, X, Y, Z, alpha):
    K_xz, K_zz = kernel(X, Z), kernel(Z, Z)
    return np.linalg.lstsq(K_xz.T @ K_xz + alpha * K_zz, K_xz.T @ Y, rcond=None)[0]


def test_delayed_and_projected_steps_agree_for_drawn_centres():
    X, Y = _data()
    settings = SolverSettings(kernel="gaussian", bandwidth=BANDWIDTH, alpha=0.1, batch_size=40,
                              subsample_size=30)  # fmt: skip
    data = check_inputs(X, Y)
    rng = check_random_state(0)
    Z, rows = dc._resolve_centers(data.X, None, 80, rng)
    plan = dc.make_decoupled_plan(settings, data, Z, rows, rng, 1)
    batches = dc.epoch_batches(np.random.RandomState(2), 300, plan.batch_size)
    a, b = np.zeros((80, 1)), np.zeros((80, 1))
    dc.run_decoupled_epoch(plan, a, batches)  # P_Z = Pi P Pi, with A = K_ZZ^-1 K_ZS V D
    dc.run_delayed_epoch(plan, b, batches)  # P on the data, S's correction on coef at once
    X_new = np.random.default_rng(5).uniform(size=(200, 3))
    k = plan.kernel
    np.testing.assert_allclose(k(X_new, Z) @ a, k(X_new, Z) @ b, atol=1e-4)
    assert np.abs(k(X_new, Z) @ a).max() > 0.5


def test_project_every_needs_centres_among_the_rows():
    X, Y = _data()
    with pytest.raises(ValueError, match="project_every > 1 needs centres drawn"):
        dc.decoupled_solve("gaussian", X, Y, centers=X[:20], bandwidth=BANDWIDTH, project_every=2)


@pytest.mark.parametrize("alpha", [0.1, 1.0])
def test_full_batches_converge_to_the_nystrom_least_squares_solution(alpha):
    # the minimiser of sum_i (f(x_i) - y_i)^2 + alpha |f|^2 over span k(., Z):
    # (K_ZX K_XZ + alpha K_ZZ) theta = K_ZX Y, which Nystroem + Ridge also gives;
    # the centres are not training rows, so the preconditioner's subsample is not
    # among them (P_Z = Pi_Z P Pi_Z keeps the fixed point)
    X, Y = _data(400)
    Z = np.random.default_rng(7).uniform(size=(40, 3))
    result = dc.decoupled_solve(
        "gaussian", X, Y, centers=Z, bandwidth=BANDWIDTH, alpha=alpha, n_epochs=60,
        batch_size=400, random_state=0,
    )  # fmt: skip
    k = result.kernel
    X_new = np.random.default_rng(1).uniform(size=(100, 3))
    exact = k(X_new, Z) @ _nystrom_solution(k, X, Y, Z, alpha)
    features = Nystroem(gamma=1.0 / (2 * BANDWIDTH**2), n_components=40).fit(Z)
    ridge = Ridge(alpha=alpha, fit_intercept=False).fit(features.transform(X), Y)
    sklearn = ridge.predict(features.transform(X_new)).reshape(-1, 1)
    np.testing.assert_allclose(sklearn, exact, atol=1e-6)
    # measured 3e-5 (alpha 0.1) after 60 epochs of preconditioned gradient descent
    np.testing.assert_allclose(k(X_new, Z) @ result.x, exact, atol=2e-4)
    assert result.x.shape == (40, 1)
    assert np.array_equal(result.centers, Z)


def test_averaged_mini_batches_reach_the_nystrom_solution():
    X, Y = _data(400)
    Z = X[:40]
    result = dc.decoupled_solve("gaussian", X, Y, centers=Z, bandwidth=BANDWIDTH, alpha=0.1,
                                n_epochs=60, random_state=0)  # fmt: skip
    assert result.batch_size < 400
    k = result.kernel
    X_new = np.random.default_rng(1).uniform(size=(100, 3))
    error = np.abs(k(X_new, Z) @ (result.x - _nystrom_solution(k, X, Y, Z, 0.1))).max()
    # measured 0.0036 for the mean of the iterates; the last iterate stays at
    # 0.013, SGD's noise floor with a constant step
    assert error < 0.01
    zero = np.abs(k(X_new, Z) @ _nystrom_solution(k, X, Y, Z, 0.1)).max()
    assert zero > 1.0


def test_drawn_centres_are_distinct_training_rows_and_seeded():
    X, Y = _data()
    a = dc.decoupled_solve("gaussian", X, Y, n_centers=30, bandwidth=BANDWIDTH, n_epochs=2,
                           random_state=3)  # fmt: skip
    b = dc.decoupled_solve("gaussian", X, Y, n_centers=30, bandwidth=BANDWIDTH, n_epochs=2,
                           random_state=3)  # fmt: skip
    rows = [int(np.flatnonzero((X == z).all(axis=1))[0]) for z in a.centers]
    assert len(set(rows)) == 30
    np.testing.assert_array_equal(a.x, b.x)
    # the Nyström subsample is among the centres
    assert set(np.asarray(a.subsample).tolist()) <= set(rows)


def test_coef0_continues_from_the_same_iterate():
    X, Y = _data()
    kw = dict(centers=X[:50], bandwidth=BANDWIDTH, random_state=0)
    first = dc.decoupled_solve("gaussian", X, Y, n_epochs=2, **kw)
    more = dc.decoupled_solve("gaussian", X, Y, n_epochs=2, coef0=first.x, **kw)
    # the loss subset is fixed: the continued run starts where the first ended
    assert more.history["train_mse"][0] == pytest.approx(first.history["train_mse"][-1], rel=1e-12)
    assert more.history["train_mse"][-1] < more.history["train_mse"][0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"centers": np.zeros((5, 2))}, "centers must have shape"),
        ({"n_centers": 301}, "n_centers must be between 1"),
        ({"n_centers": 0}, "n_centers"),
        ({}, "exactly one of centers and n_centers"),
        ({"centers": np.zeros((5, 3)), "n_centers": 5}, "exactly one"),
        ({"centers": np.full((5, 3), np.nan)}, "NaN"),
        ({"centers": np.zeros((5, 3), dtype=np.float32)}, "dtype"),
        ({"n_centers": 5, "coef0": np.zeros((4, 1))}, "coef0 must have shape"),
    ],
)
def test_bad_input_is_named(kwargs, match):
    X, Y = _data()
    with pytest.raises(ValueError, match=match):
        dc.decoupled_solve("gaussian", X, Y, bandwidth=BANDWIDTH, **kwargs)


def test_projection_that_does_not_fit_the_budget_is_refused():
    X, Y = _data()
    with pytest.raises(MemoryError, match="fewer centres or a larger memory_budget"):
        dc.decoupled_solve(
            "gaussian", X, Y, n_centers=300, bandwidth=BANDWIDTH, memory_budget=300 * 300 * 8
        )


def test_peak_memory_stays_within_the_budget():
    # n = 6000 rows, p = 1500 centres, a 40 MB budget: the factor (18 MB) and
    # the tiles fit; without tiling one batch block alone would take more
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(6000, 10)).astype(np.float32)
    Y = np.sin(X[:, :2].sum(axis=1, keepdims=True)).astype(np.float32)
    budget = 40e6
    with MemoryPeak(trace=True) as peak:
        dc.decoupled_solve("gaussian", X, Y, n_centers=1500, bandwidth=1.0, n_epochs=1,
                           subsample_size=500, batch_size=6000, memory_budget=budget,
                           random_state=0)  # fmt: skip
    data_bytes = X.nbytes + Y.nbytes
    assert peak.traced - data_bytes <= budget


def test_estimators_fit_on_centres_and_predict_with_them():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = X / 16
    clf = EigenProClassifier(n_centers=400, n_epochs=4, random_state=0).fit(X[:1400], y[:1400])
    assert clf.centers_.shape == (400, 64)
    assert clf.coef_.shape == (400, 10)
    assert clf.score(X[1400:], y[1400:]) > 0.93
    reg = EigenProRegressor(centers=X[:100], bandwidth=2.0, alpha=0.0, n_epochs=3)
    reg.fit(X[:1400], y[:1400].astype(float))
    np.testing.assert_array_equal(reg.centers_, X[:100])
    assert reg.predict(X[1400:]).shape == (397,)


def test_estimator_warm_start_continues_on_the_previous_centres():
    X, Y = _data()
    y = Y[:, 0]
    reg = EigenProRegressor(n_centers=60, bandwidth=BANDWIDTH, alpha=0.0, n_epochs=2,
                            random_state=0, warm_start=True)  # fmt: skip
    reg.fit(X, y)
    centres, last = reg.centers_.copy(), reg.history_["train_mse"][-1]
    reg.fit(X, y)
    np.testing.assert_array_equal(reg.centers_, centres)
    assert reg.history_["train_mse"][0] == pytest.approx(last, rel=1e-12)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"n_centers": 301}, "exceeds the number of samples"),
        ({"centers": np.zeros((4, 2)), "n_centers": "all"}, "centers has 2 features"),
        ({"centers": np.zeros((4, 3)), "n_centers": 4}, "not both"),
    ],
)
def test_estimator_bad_centres_leave_the_previous_model(params, match):
    X, Y = _data()
    reg = EigenProRegressor(n_centers=20, bandwidth=BANDWIDTH, n_epochs=1, random_state=0)
    reg.fit(X, Y[:, 0])
    before = reg.coef_.copy()
    reg.set_params(**params)
    with pytest.raises(ValueError, match=match):
        reg.fit(X, Y[:, 0])
    np.testing.assert_array_equal(reg.coef_, before)


def test_iterate_average_is_the_mean_of_what_it_was_given():
    average = dc.IterateAverage(np.zeros((3, 2), dtype=np.float32))
    rng = np.random.default_rng(0)
    seen = [rng.standard_normal((3, 2)).astype(np.float32) for _ in range(5)]
    for x in seen:
        average.add(x)
    np.testing.assert_allclose(average.value(), np.mean(seen, axis=0), rtol=1e-6)
    assert average.value().dtype == np.float32


def test_torch_inputs_compute_in_torch_and_match_numpy():
    torch = pytest.importorskip("torch")
    X, Y = _data(400)
    kw = dict(n_centers=50, bandwidth=BANDWIDTH, alpha=0.1, n_epochs=3, random_state=0)
    ours = dc.decoupled_solve("gaussian", X, Y, **kw)
    theirs = dc.decoupled_solve("gaussian", torch.from_numpy(X), torch.from_numpy(Y), **kw)
    assert isinstance(theirs.x, torch.Tensor) and isinstance(theirs.centers, torch.Tensor)
    # measured 7e-10 on coefficients of size 31: the same iterates in another library
    np.testing.assert_allclose(theirs.x.numpy(), ours.x, rtol=0, atol=1e-7)
