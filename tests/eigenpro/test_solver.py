# SPDX-License-Identifier: BSD-3-Clause
import time
import types
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import eigenpro._epoch_log
import eigenpro.solver
from eigenpro.kernels import Gaussian, make_kernel
from eigenpro.solver import eigenpro_solve
from solvers.backend import to_numpy

rng = np.random.default_rng(0)
X = rng.uniform(size=(400, 5))
Y = np.stack([np.sin(3 * X[:, 0]) + X[:, 1], np.cos(2 * X[:, 2])], axis=1)


def test_converges_to_the_exact_ridge_solution():
    alpha = 0.5
    K = Gaussian(0.6)(X)
    exact = np.linalg.solve(K + alpha * np.eye(len(X)), Y)
    res = eigenpro_solve("gaussian", X, Y, bandwidth=0.6, alpha=alpha, n_epochs=60, random_state=0)
    np.testing.assert_allclose(res.x, exact, rtol=0, atol=1e-6 * np.abs(exact).max() + 1e-8)
    assert res.success and res.nit == 60


def test_interpolates_training_data_without_ridge():
    # alpha = 0: the fitted values converge to the targets (K is invertible)
    res = eigenpro_solve("gaussian", X, Y, bandwidth=0.3, n_epochs=40, random_state=0)
    fitted = Gaussian(0.3)(X) @ res.x
    assert np.mean((fitted - Y) ** 2) < 1e-4 * np.mean(Y**2)
    mse = np.array(res.history["train_mse"])
    assert mse[-1] < 1e-3 * mse[0]


def test_stored_and_blocked_kernels_give_the_same_iterates():
    kw = dict(bandwidth=0.6, n_epochs=4, random_state=3, subsample_size=100)
    budget = 400 * 8 * 2 * 13  # 13-row blocks
    for kernel, rtol in (("gaussian", 1e-10), ("laplacian", 1e-6)):
        a = eigenpro_solve(kernel, X, Y, precompute_kernel=True, **kw)
        b = eigenpro_solve(kernel, X, Y, precompute_kernel=False, memory_budget=budget, **kw)
        assert a.kernel_precomputed and not b.kernel_precomputed
        assert a.batch_size == b.batch_size and a.step_size == b.step_size
        # equal up to rounding (GEMMs of other shapes); sqrt(d^2) near d = 0
        # makes the Laplacian's rounding larger
        np.testing.assert_allclose(a.x, b.x, rtol=rtol, atol=rtol * 1e-3)


@pytest.mark.parametrize("kernel", ["gaussian", "laplacian", "cauchy", "matern32", "matern52"])
@pytest.mark.parametrize("scale", [0.05, 0.3, 1.0, 5.0, 50.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_auto_step_size_never_diverges(kernel, scale, dtype):
    rng = np.random.default_rng(42)
    Xd = rng.standard_normal((600, 10)).astype(dtype)
    yd = (Xd[:, 0] > 0).astype(dtype) + 0.1 * Xd[:, 1]
    kern = make_kernel(kernel)
    bandwidth = scale * kern.default_bandwidth(Xd)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # no step halving needed
        res = eigenpro_solve(
            kernel, Xd, yd, bandwidth=bandwidth, n_epochs=5, random_state=0, subsample_size=150
        )
    mse = np.array(res.history["train_mse"])
    assert np.all(np.isfinite(mse))
    assert mse[-1] <= mse[0]
    floor = 1e-6 * mse[0]  # below it, rounding noise
    assert np.all(mse[1:] <= 1.5 * np.minimum.accumulate(mse)[:-1] + floor)
    assert res.x.dtype == dtype


def test_too_large_step_is_halved_with_a_warning():
    with pytest.warns(ConvergenceWarning, match="halved"):
        res = eigenpro_solve(
            "gaussian", X, Y, bandwidth=0.6, step_size=1e4, n_epochs=3, random_state=0
        )
    assert res.step_size < 1e4
    assert res.history["train_mse"][-1] < res.history["train_mse"][0]


def test_callback_history_and_stop_iteration(monkeypatch):
    # a clock the callback moves an hour ahead: the callback's own running time must not be
    # counted in history["time"] (nor in the time the next callback is given)
    offset = [0.0]
    clock = types.SimpleNamespace(perf_counter=lambda: time.perf_counter() + offset[0])
    monkeypatch.setattr(eigenpro.solver, "time", clock)
    monkeypatch.setattr(eigenpro._epoch_log, "time", clock)
    seen = []

    def callback(r):
        seen.append((r.nit, r.fun, r.time))
        offset[0] += 3600.0
        if r.nit == 2:
            raise StopIteration

    res = eigenpro_solve(
        "gaussian", X, Y, bandwidth=0.6, n_epochs=10, callback=callback, random_state=0
    )
    assert [s[0] for s in seen] == [1, 2]
    assert res.nit == 2 and res.status == 99 and "StopIteration" in res.message
    assert res.history["epoch"] == [0, 1, 2]
    assert res.history["train_mse"][1:] == [s[1] for s in seen]
    assert res.history["time"][1:] == [s[2] for s in seen]
    assert offset[0] == 7200.0
    assert 0 <= res.history["time"][0] <= res.history["time"][1] <= res.history["time"][2] < 60.0


def test_tol_stops_early_or_warns():
    res = eigenpro_solve("gaussian", X, Y, bandwidth=0.6, n_epochs=50, tol=1e-2, random_state=0)
    assert res.nit < 50 and res.status == 0
    with pytest.warns(ConvergenceWarning, match="did not reach tol"):
        eigenpro_solve("gaussian", X, Y, bandwidth=0.6, n_epochs=1, tol=1e-12, random_state=0)


def test_warm_start_continues_the_same_iteration():
    kw = dict(bandwidth=0.6, random_state=0, batch_size=64, step_size=20.0)
    full = eigenpro_solve("gaussian", X, Y, n_epochs=4, **kw)
    part = eigenpro_solve("gaussian", X, Y, n_epochs=2, **kw)
    more = eigenpro_solve("gaussian", X, Y, n_epochs=2, coef0=part.x, **kw)
    assert more.history["train_mse"][-1] < part.history["train_mse"][-1]
    # it starts where the first part stopped, and ends at the loss of training in one go: the
    # same plan (permutation, preconditioner, step); only the epochs' batch orders differ
    # (each run draws them from the seed afresh), measured: 5e-5 relative
    assert more.history["train_mse"][0] == pytest.approx(part.fun, rel=1e-13)
    assert more.fun == pytest.approx(full.fun, rel=2e-4)


def test_plain_sgd_is_n_components_zero():
    res = eigenpro_solve(
        "gaussian", X, Y, bandwidth=0.6, n_components=0, n_epochs=2, batch_size=50, random_state=0
    )
    p = res.preconditioner
    assert p.n_components_ == 0
    # the iterates are those of plain kernel SGD with the reported step: the points permuted
    # by the seed's first draw, batches of 50 consecutive points, each epoch's batch order the
    # seed's next draw, a_B -= (eta / m) (K_B a - y_B)
    seed = np.random.RandomState(0)
    perm = seed.permutation(len(X))
    K, Yp = Gaussian(0.6)(X[perm]), Y[perm]
    coef = np.zeros_like(Yp)
    for _ in range(2):
        for r in seed.permutation(len(X) // 50):
            batch = slice(50 * r, 50 * r + 50)
            coef[batch] -= res.step_size / 50 * (K[batch] @ coef - Yp[batch])
    np.testing.assert_allclose(res.x, coef[perm.argsort()], rtol=0, atol=1e-13)  # measured 4e-16
    assert np.abs(coef).max() > 0.1  # not vacuous: the iterates moved


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_epochs": 0}, "n_epochs"),
        ({"alpha": -1.0}, "alpha"),
        ({"batch_size": 0}, "batch_size"),
        ({"step_size": -2.0}, "step_size"),
        ({"subsample_size": 0}, "subsample_size"),
        ({"n_components": 500}, "n_components"),
        ({"kernel": "poly"}, "Unknown kernel"),
        ({"bandwidth": -1.0}, "bandwidth"),
    ],
)
def test_bad_arguments(kwargs, match):
    kw = {"kernel": "gaussian", "bandwidth": 0.5, **kwargs}
    kernel = kw.pop("kernel")
    with pytest.raises(ValueError, match=match):
        eigenpro_solve(kernel, X, Y, **kw)


def test_bad_shapes():
    with pytest.raises(ValueError, match="2-D"):
        eigenpro_solve("gaussian", X[:, 0], Y)
    with pytest.raises(ValueError, match="samples but Y"):
        eigenpro_solve("gaussian", X, Y[:10])
    with pytest.raises(ValueError, match="at least 2 samples"):
        eigenpro_solve("gaussian", X[:1], Y[:1])


def test_same_iterates_on_every_backend(backend):
    *_, to_xp = backend
    kw = dict(bandwidth=0.6, n_epochs=3, random_state=1, subsample_size=120)
    ref = eigenpro_solve("gaussian", X, Y, **kw)
    got = eigenpro_solve("gaussian", to_xp(X), to_xp(Y), **kw)
    assert got.batch_size == ref.batch_size and got.step_size == pytest.approx(ref.step_size)
    np.testing.assert_allclose(to_numpy(got.x), ref.x, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("extra", [0, 2, 10, 40, 100])
def test_few_points_beyond_the_subsample_keep_a_large_batch(extra):
    # the held-out calibration must not be swamped by k(x, x) / h for small h
    rng = np.random.default_rng(5)
    Xs = rng.uniform(size=(300 + extra, 5))
    ys = np.sin(4 * Xs[:, 0])
    res = eigenpro_solve(
        "gaussian", Xs, ys, bandwidth=0.5, subsample_size=300, n_epochs=3, random_state=0
    )
    base = eigenpro_solve(
        "gaussian",
        Xs[:300],
        ys[:300],
        bandwidth=0.5,
        subsample_size=300,
        n_epochs=3,
        random_state=0,
    )
    assert res.batch_size >= 0.3 * base.batch_size
    assert res.history["train_mse"][-1] < 0.05 * res.history["train_mse"][0]


def test_tol_is_reachable_with_ridge():
    res = eigenpro_solve(
        "gaussian", X, Y, bandwidth=0.6, alpha=1.0, n_epochs=200, tol=1e-3, random_state=0
    )
    assert res.status == 0 and res.nit < 200


def test_explicit_components_beyond_the_critical_batch_still_converge():
    rng = np.random.default_rng(2)
    Xs = rng.uniform(size=(400, 3))
    ys = np.cos(3 * Xs[:, 0]) + Xs[:, 1]
    res = eigenpro_solve(
        "gaussian", Xs, ys, bandwidth=1.5, n_components=60, n_epochs=5, random_state=0
    )
    assert res.history["train_mse"][-1] < 0.1 * res.history["train_mse"][0]
    assert np.all(np.isfinite(res.x))


def test_truthy_precompute_flag_stores_the_kernel():
    res = eigenpro_solve("gaussian", X, Y, bandwidth=0.6, n_epochs=1, precompute_kernel=np.True_)
    assert res.kernel_precomputed


def test_warm_start_from_another_seed_resumes_where_it_stopped():
    first = eigenpro_solve("gaussian", X, Y, bandwidth=0.6, n_epochs=3, random_state=0)
    # a negligible step: the coefficients must come back where they were put in
    again = eigenpro_solve(
        "gaussian", X, Y, bandwidth=0.6, n_epochs=1, random_state=7, coef0=first.x, step_size=1e-12
    )
    np.testing.assert_allclose(again.x, first.x, rtol=1e-9, atol=1e-12)
    # the same coefficients, summed in another order: measured 1e-14 relative
    assert again.history["train_mse"][0] == pytest.approx(first.history["train_mse"][-1], rel=1e-13)


def test_memory_stays_within_the_budget_when_streaming():
    import tracemalloc

    rng = np.random.default_rng(3)
    n = 3000
    Xs = rng.uniform(size=(n, 10))
    ys = np.sin(3 * Xs[:, 0])
    budget = 8 * 2**20
    tracemalloc.start()
    try:
        res = eigenpro_solve(
            "gaussian", Xs, ys, bandwidth=0.5, n_epochs=1, memory_budget=budget, random_state=0
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not res.kernel_precomputed
    assert res.preconditioner.subsample_size_ <= 512
    # the n x n float64 matrix alone would be 72 MB; blocks, the subsample
    # eigenproblem and the data stay within a few budgets
    assert peak < 3 * budget, peak / 2**20


def test_warnings_point_at_the_caller():
    with pytest.warns(ConvergenceWarning) as record:
        eigenpro_solve(
            "gaussian", X, Y, bandwidth=0.6, step_size=1e4, n_epochs=1, tol=1e-12, random_state=0
        )
    messages = " ".join(str(w.message) for w in record)
    assert "halved" in messages and "did not reach tol" in messages
    assert all(w.filename == __file__ for w in record)


def test_names_of_the_module_before_the_phases_moved():
    from eigenpro import solver

    assert solver.LOSS_SAMPLES == 4096 and solver.MAX_STEP_HALVINGS == 30
    assert solver.default_subsample_size(500) == 500
    assert solver.__all__ == ["eigenpro_solve"]


# -- issue 21: the mutants of eigenpro/solver.py that survived -----------------------------


def test_defaults_run_ten_silent_epochs(capsys):
    res = eigenpro_solve("gaussian", X[:150], Y[:150, 0], bandwidth=0.6, random_state=0)
    assert res.nit == 10 and res.history["epoch"] == list(range(11))
    assert res.x.shape == (150,)  # a vector target gives vector coefficients
    assert capsys.readouterr().out == ""


def test_verbose_prints_the_setup_and_every_epoch_and_shows_a_labelled_bar(capsys):
    eigenpro_solve(
        "gaussian", X[:150], Y[:150], bandwidth=0.6, n_epochs=2, verbose=1, random_state=0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[EigenPro] n=150 ")
    assert [line.split()[1:3] for line in lines[1:]] == [["epoch", "1/2"], ["epoch", "2/2"]]
    pytest.importorskip("tqdm")
    eigenpro_solve(
        "gaussian", X[:150], Y[:150], bandwidth=0.6, n_epochs=2, verbose=2, random_state=0
    )
    err = capsys.readouterr().err
    assert "epoch 1" in err and "epoch 2" in err and "epoch 3" not in err


def test_damping_and_precompute_settings_reach_the_run():
    res = eigenpro_solve(
        "gaussian",
        X[:200],
        Y[:200],
        bandwidth=0.6,
        n_epochs=1,
        damping=0.5,
        precompute_kernel=False,
        random_state=0,
    )
    assert res.preconditioner.damping == 0.5
    assert res.kernel_precomputed is False
    stored = eigenpro_solve(
        "gaussian",
        X[:200],
        Y[:200],
        bandwidth=0.6,
        n_epochs=1,
        precompute_kernel=True,
        random_state=0,
    )
    assert stored.kernel_precomputed is True


def test_checkpoint_permutation_is_read_only():
    seen = []
    eigenpro_solve(
        "gaussian",
        X[:150],
        Y[:150],
        bandwidth=0.6,
        n_epochs=1,
        random_state=0,
        callback=lambda r: seen.append(r.checkpoint),
    )
    with pytest.raises(ValueError, match="read-only"):
        seen[0].permutation[0] = 1  # a callback cannot corrupt the run it checkpoints


def test_divergence_warning_names_the_epoch():
    with pytest.warns(ConvergenceWarning, match=r"diverged in epoch 1; restarting"):
        eigenpro_solve("gaussian", X, Y, bandwidth=0.6, step_size=1e4, n_epochs=1, random_state=0)


def test_a_one_rank_process_group_gives_the_single_process_solve(one_rank_group):
    """eigenpro_solve(process_group=...) hands every setting to the sharded solver: on one rank
    it is the single-process solve (iterates, history, callback, resolved settings)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    Y = np.sin(X[:, :2]) + 0.1 * rng.normal(size=(200, 2))
    coef0 = 0.01 * rng.normal(size=(200, 2))
    settings = dict(bandwidth=2.0, alpha=1e-3, n_epochs=3, subsample_size=60, n_components=8,
                    batch_size=32, step_size=5.0, damping=0.9, tol=1e-9, random_state=1,
                    coef0=coef0, memory_budget=2**26)  # fmt: skip
    seen = {"one": [], "group": []}
    ref = eigenpro_solve(
        "laplacian", X, Y, callback=lambda r: seen["one"].append(r.nit), **settings
    )
    res = eigenpro_solve(
        "laplacian", X, Y, process_group=one_rank_group,
        callback=lambda r: seen["group"].append(r.nit), **settings,
    )  # fmt: skip
    # measured: 1.8e-9 in the coefficients, 2.4e-11 in the training MSE (the preconditioner is
    # fitted on rank 0 and broadcast, the kernel blocks summed in another order)
    np.testing.assert_allclose(res.x, ref.x, rtol=0, atol=1e-8)
    np.testing.assert_allclose(res.history["train_mse"], ref.history["train_mse"], rtol=1e-9)
    assert res.nit == ref.nit == 3 and seen["group"] == seen["one"] == [1, 2, 3]
    assert (res.batch_size, res.step_size, res.bandwidth) == (32, 5.0, 2.0)
