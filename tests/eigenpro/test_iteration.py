# SPDX-License-Identifier: BSD-3-Clause
"""Each phase of the EigenPro iteration on its own."""

import dataclasses
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from eigenpro._iteration import (
    MAX_STEP_HALVINGS,
    DivergenceGuard,
    SolverSettings,
    batch_and_step,
    check_inputs,
    default_subsample_size,
    fit_preconditioner,
    initial_coefficients,
    make_plan,
    run_epoch,
    train_mse,
)
from eigenpro.kernels import Gaussian
from eigenpro.preconditioner import step_size_for_batch
from eigenpro.training_matrix import PackedTrainingMatrix, StreamedTrainingMatrix
from solvers._validation import InvalidParameterError

# ---- SolverSettings ---------------------------------------------------- #


def test_settings_defaults_are_valid_and_frozen():
    settings = SolverSettings()
    assert settings.n_epochs == 10 and settings.step_size == "auto"
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.alpha = 1.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("n_epochs", 0),
        ("n_epochs", True),
        ("n_epochs", 2.0),
        ("alpha", -1.0),
        ("alpha", float("inf")),
        ("step_size", 0.0),
        ("step_size", "big"),
        ("batch_size", 0),
        ("subsample_size", "all"),
        ("n_components", -1),
        ("damping", 0.0),
        ("damping", 1.5),
        ("memory_budget", -1),
        ("precompute_kernel", "yes"),
        ("tol", 0.0),
        ("callback", 3),
        ("verbose", -1),
        ("bandwidth", 0.0),
        ("kernel", 2.5),
        ("random_state", "seed"),
    ],
)
def test_settings_reject_bad_values_by_name(name, value):
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of eigenpro_solve"):
        SolverSettings(**{name: value})


def test_settings_accept_numpy_scalars():
    settings = SolverSettings(
        n_epochs=np.int64(3), alpha=np.float32(0.5), precompute_kernel=np.True_
    )
    assert settings.n_epochs == 3


# ---- check_inputs ------------------------------------------------------ #


def test_check_inputs_shapes_targets_like_x(regression_data):
    X, Y = regression_data
    data = check_inputs(X.astype(np.float32), Y[:, 0])
    assert data.vector_target and data.Y.shape == (400, 1) and data.Y.dtype == np.float32
    assert data.n_samples == 400 and data.n_outputs == 1 and data.coef0 is None
    data = check_inputs(X, Y, coef0=np.ones(400 * 2).reshape(400, 2))
    assert not data.vector_target and data.coef0.shape == (400, 2)
    assert check_inputs(X, Y[:, :1], coef0=np.ones(400)).coef0.shape == (400, 1)


@pytest.mark.parametrize(
    ("X", "Y", "coef0", "match"),
    [
        (np.ones(5), np.ones(5), None, "2-D"),
        (np.ones((5, 2), dtype=np.int64), np.ones(5), None, "floating dtype"),
        (np.ones((1, 2)), np.ones(1), None, "at least 2 samples"),
        (np.ones((5, 2)), np.ones(4), None, "samples but Y"),
        (np.ones((5, 2)), np.ones(5), np.ones((5, 2)), "coef0 must have shape"),
        (np.array([[1.0, np.nan]] * 5), np.ones(5), None, "X holds NaN or infinity"),
        (np.ones((5, 2)), np.array([1.0, 2.0, np.nan, 0.0, 1.0]), None, "Y holds NaN"),
        (np.ones((5, 2)), np.ones(5), np.full(5, np.inf), "coef0 holds NaN or infinity"),
    ],
)
def test_check_inputs_errors(X, Y, coef0, match):
    with pytest.raises(ValueError, match=match):
        check_inputs(X, Y, coef0)


# ---- planning ---------------------------------------------------------- #


def test_default_subsample_size():
    assert default_subsample_size(500) == 500
    assert default_subsample_size(50_000) == 2000
    assert default_subsample_size(200_000) == 4000
    assert default_subsample_size(200_000, "cuda") == 12000
    # six float64 s x s matrices (tests/eigenpro/test_memory.py measures them)
    assert default_subsample_size(50_000, memory_budget=48 * 300**2) == 300
    assert default_subsample_size(50_000, memory_budget=48 * 300**2 - 1) == 299


def test_plan_permutes_once_and_keeps_the_subsample_first(make_small_plan, regression_data):
    X, Y = regression_data
    _, _, plan = make_small_plan(seed=4)
    perm = np.random.RandomState(4).permutation(400)  # the only draw before the epochs
    np.testing.assert_array_equal(plan.permutation, perm)
    np.testing.assert_array_equal(perm[plan.inverse], np.arange(400))
    np.testing.assert_array_equal(plan.X, X[perm])
    np.testing.assert_array_equal(plan.Y, Y[perm])
    assert plan.subsample_size == 100 and plan.preconditioner.subsample_size_ == 100
    assert plan.zero_mse == pytest.approx(np.mean(Y**2))
    assert set(plan.timings) == {"preconditioner", "kernel_matrix"}
    assert plan.kernel == Gaussian(0.6)
    assert plan.matrix.blocks[0] == (0, plan.batch_size)


def test_plan_chooses_the_default_bandwidth(make_small_plan, regression_data):
    _, _, plan = make_small_plan(bandwidth=None)
    assert plan.kernel.bandwidth == Gaussian().default_bandwidth(regression_data[0])


@pytest.mark.parametrize(
    ("precompute", "budget", "kind"),
    [
        (True, "auto", PackedTrainingMatrix),
        (np.True_, "auto", PackedTrainingMatrix),
        (False, "auto", StreamedTrainingMatrix),
        ("auto", 2**30, PackedTrainingMatrix),
        ("auto", 2**20, StreamedTrainingMatrix),
    ],
)
def test_plan_stores_the_matrix_when_asked_or_fitting(make_small_plan, precompute, budget, kind):
    _, _, plan = make_small_plan(precompute_kernel=precompute, memory_budget=budget)
    assert isinstance(plan.matrix, kind)
    assert plan.kernel_precomputed == (kind is PackedTrainingMatrix)


def test_preconditioner_is_calibrated_only_with_enough_held_out_points(regression_data):
    X = regression_data[0]
    kernel, settings = Gaussian(0.6), SolverSettings()
    assert hasattr(fit_preconditioner(kernel, X, 100, settings), "held_out_eigenvalue_")
    assert not hasattr(fit_preconditioner(kernel, X, 390, settings), "held_out_eigenvalue_")


def test_batch_and_step(make_small_plan):
    _, _, plan = make_small_plan()
    precond = plan.preconditioner
    beta, lam = precond.beta_, precond.preconditioned_eigenvalue_
    m, eta = batch_and_step(precond, 400, SolverSettings())
    assert m == min(400, int(precond.critical_batch_size_))
    assert eta == step_size_for_batch(m, beta, lam)
    assert batch_and_step(precond, 400, SolverSettings(batch_size=50, step_size=3)) == (50, 3.0)
    m, eta = batch_and_step(precond, 400, SolverSettings(batch_size=1000))
    assert m == 400 and eta == max(step_size_for_batch(400, beta, lam), 1 / lam)


def test_coordinate_step_of_a_short_last_batch_is_the_rule_for_its_size(make_small_plan):
    _, _, plan = make_small_plan(batch_size=300)
    assert plan.coordinate_step(300) == plan.step_size / 300
    # the last batch gets the step the rule gives its own size (eta(16) / eta(300) of the
    # plan's step), which is stable for 16 points; past the critical batch size that is
    # more per point than eta / 300, so the test tells it from a plain eta / m
    beta = plan.preconditioner.beta_
    lam = plan.preconditioner.preconditioned_eigenvalue_
    rule = step_size_for_batch(16, beta, lam) / step_size_for_batch(300, beta, lam)
    assert plan.coordinate_step(16) == pytest.approx(plan.step_size * rule / 16, rel=1e-12)
    assert plan.coordinate_step(16) > 1.01 * plan.step_size / 300
    assert plan.coordinate_step(16) * 16 <= plan.step_size  # the batch's step never grows
    assert plan.halved().step_size == plan.step_size / 2
    assert plan.halved().matrix is plan.matrix


def test_initial_coefficients(make_small_plan, regression_data):
    _, data, plan = make_small_plan()
    coef = initial_coefficients(plan, data)
    assert coef.shape == (400, 2) and not coef.any()
    coef0 = np.arange(800.0).reshape(400, 2)
    _, data, plan = make_small_plan(coef0=coef0)
    coef = initial_coefficients(plan, data)
    np.testing.assert_array_equal(coef, coef0[plan.permutation])
    np.testing.assert_array_equal(plan.original_order(coef), coef0)
    np.testing.assert_array_equal(plan.original_order(coef[:, :1], True), coef0[:, 0])


# ---- one epoch --------------------------------------------------------- #


def test_train_mse_is_the_residual_of_the_ridge_system(make_small_plan):
    _, _, plan = make_small_plan(alpha=0.5)
    coef = np.random.default_rng(1).standard_normal((400, 2))
    K = plan.kernel(plan.X)
    R = K @ coef + 0.5 * coef - plan.Y
    assert train_mse(plan, coef) == pytest.approx(np.mean(R**2), rel=1e-10)


def test_run_epoch_is_plain_sgd_without_components(make_small_plan):
    _, _, plan = make_small_plan(n_components=0, batch_size=100, step_size=1.0, alpha=0.1)
    coef = np.zeros((400, 2))
    order = [2, 0, 3, 1]
    assert run_epoch(plan, coef, order) is False
    K, expected = plan.kernel(plan.X), np.zeros((400, 2))
    for r in order:
        a, b = 100 * r, 100 * r + 100
        G = K[a:b] @ expected + 0.1 * expected[a:b] - plan.Y[a:b]
        expected[a:b] -= 1.0 / 100 * G
    np.testing.assert_allclose(coef, expected, rtol=1e-10, atol=1e-12)


def test_run_epoch_applies_the_eigenpro_correction(make_small_plan):
    _, _, plan = make_small_plan(batch_size=400)
    coef = np.zeros((400, 2))
    run_epoch(plan, coef, [0])
    G = -plan.Y
    lr = plan.step_size / 400
    expected = -lr * G
    expected[:100] += lr * plan.preconditioner.correction(plan.kernel(plan.X, plan.X[:100]).T @ G)
    np.testing.assert_allclose(coef, expected, rtol=1e-10, atol=1e-12)
    assert plan.preconditioner.n_components_ > 0


def test_run_epoch_reports_a_diverging_batch(make_small_plan):
    _, _, plan = make_small_plan(batch_size=50, step_size=1e6)
    coef = np.zeros((400, 2))
    assert run_epoch(plan, coef, range(8)) is True
    assert run_epoch(plan, np.zeros((400, 2)), []) is False


# ---- divergence guard -------------------------------------------------- #


def test_guard_detects_a_rise_over_the_best_epoch():
    guard = DivergenceGuard(np.zeros((3, 1)), mse=1.0, zero_mse=1.0)
    assert not guard.rose(1.5) and guard.rose(1.6) and guard.rose(float("nan"))
    guard.accept(np.ones((3, 1)), 0.1)
    assert guard.best_mse == 0.1 and guard.rose(0.2)
    guard.accept(np.ones((3, 1)), 0.15)  # accepted, but the best stays
    assert guard.best_mse == 0.1


def test_guard_restarts_from_the_last_accepted_epoch_with_half_the_step(make_small_plan):
    _, _, plan = make_small_plan()
    coef = np.ones((400, 2))
    guard = DivergenceGuard(coef, mse=1.0, zero_mse=1.0)
    coef[:] = np.nan  # the epoch went wrong in place
    with pytest.warns(ConvergenceWarning, match="diverged in epoch 3") as record:
        halved, restart = guard.restart(plan, 3)
    assert record[0].filename == __file__
    assert halved.step_size == plan.step_size / 2 and guard.halvings == 1
    np.testing.assert_array_equal(restart, np.ones((400, 2)))
    restart[:] = 5.0  # a copy: the next restart starts from the accepted values again
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        _, again = guard.restart(halved, 3)
    np.testing.assert_array_equal(again, np.ones((400, 2)))


def test_guard_gives_up_after_max_halvings(make_small_plan):
    _, _, plan = make_small_plan()
    guard = DivergenceGuard(np.zeros((400, 2)), mse=1.0, zero_mse=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(MAX_STEP_HALVINGS):
            plan, _ = guard.restart(plan, 1)
        with pytest.raises(RuntimeError, match="diverged even after"):
            guard.restart(plan, 1)


def test_make_plan_draws_only_the_permutation(regression_data):
    settings = SolverSettings(kernel="gaussian", bandwidth=0.6, subsample_size=50)
    rng = np.random.RandomState(9)
    make_plan(settings, check_inputs(*regression_data), rng)
    reference = np.random.RandomState(9)
    reference.permutation(400)
    assert rng.randint(10**9) == reference.randint(10**9)
