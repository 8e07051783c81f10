# SPDX-License-Identifier: BSD-3-Clause
import json
import math

import numpy as np
import pytest

from benchmarks import datasets
from benchmarks import million_suite as suite

# -- the synthetic regression -------------------------------------------------------------------


def test_smooth_regression_keeps_a_prefix_and_its_test_set():
    chunk = datasets.REGRESSION_CHUNK
    a = datasets.smooth_regression(chunk + 100, 300, n_features=8, seed=1)
    b = datasets.smooth_regression(2 * chunk + 7, 700, n_features=8, seed=1)
    np.testing.assert_array_equal(a.X_train, b.X_train[: chunk + 100])
    np.testing.assert_array_equal(a.y_train, b.y_train[: chunk + 100])
    np.testing.assert_array_equal(a.X_test, b.X_test[:300])
    # the teacher is one matrix product over all test rows: with BLAS threads its sums
    # may add in another order for another row count (seen: 1 ulp on 6 of 300 rows)
    np.testing.assert_allclose(a.f_test, b.f_test[:300], rtol=1e-13, atol=1e-15)
    assert b.X_train.shape == (2 * chunk + 7, 8) and b.X_train.dtype == np.float32
    assert b.X_train.min() >= 0.0 and b.X_train.max() <= 1.0
    # train and test rows come from different generators
    assert not np.isin(a.X_test[:, 0], a.X_train[:, 0]).any()


def test_smooth_regression_is_seeded():
    a = datasets.smooth_regression(500, 100, seed=3)
    b = datasets.smooth_regression(500, 100, seed=3)
    c = datasets.smooth_regression(500, 100, seed=4)
    for name in ("X_train", "y_train", "X_test", "y_test", "f_test"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.allclose(a.X_train, c.X_train) and not np.allclose(a.f_test, c.f_test)
    np.testing.assert_array_equal(a.teacher(a.X_test), b.teacher(b.X_test))


def test_noise_has_the_stated_variance_and_the_teacher_unit_variance():
    data = datasets.smooth_regression(20000, 20000, noise_std=0.3, seed=0)
    assert data.noise_variance == pytest.approx(0.09)
    np.testing.assert_allclose(data.f_test, data.teacher(data.X_test), rtol=0, atol=0)
    noise = data.y_train - data.teacher(data.X_train)
    # the sample variance of 20000 Gaussian draws has relative spread sqrt(2 / 20000) = 1 %
    assert np.var(noise) == pytest.approx(0.09, rel=0.05)
    assert abs(np.mean(noise)) < 5 * 0.3 / math.sqrt(20000)
    assert np.var(data.f_test) == pytest.approx(1.0, abs=0.1)
    assert abs(np.mean(data.f_test)) < 0.05
    # the teacher is the Bayes predictor: its test error is the noise variance
    assert np.mean((data.y_test - data.f_test) ** 2) == pytest.approx(0.09, rel=0.05)


def test_a_kernel_model_learns_the_teacher_and_a_linear_one_does_not():
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.linear_model import Ridge

    data = datasets.smooth_regression(2000, 1000, seed=0)
    bandwidth = math.sqrt(2 * data.X_train.shape[1] / 12) / 2  # the rule of thumb, r / 2
    kernel = KernelRidge(alpha=1e-2, kernel="rbf", gamma=1 / (2 * bandwidth**2))
    kernel.fit(data.X_train, data.y_train)
    linear = Ridge().fit(data.X_train, data.y_train)
    excess_kernel = np.mean((kernel.predict(data.X_test) - data.f_test) ** 2)
    excess_linear = np.mean((linear.predict(data.X_test) - data.f_test) ** 2)
    variance = np.var(data.f_test)
    assert excess_kernel < 0.25 * variance  # measured 0.14
    assert excess_linear > 0.4 * variance  # measured 0.52: the teacher is not linear
    assert excess_kernel < 0.5 * excess_linear


def test_load_names_the_regression():
    data = datasets.load(datasets.SMOOTH, n_train=300)
    assert isinstance(data, datasets.RegressionDataset)
    assert data.X_train.shape == (300, 32) and data.y_train.dtype == np.float64
    assert data.X_test.shape == (20000, 32)
    with pytest.raises(AttributeError, match="regression"):
        _ = data.n_classes


# -- the suite ------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, budget", [(1_000_000, 8e9), (50000, 2e8), (10, 1e3), (1000, 1e12)])
def test_nystroem_components_is_the_largest_p_in_the_budget(n, budget):
    p = suite.nystroem_components(n, budget)
    assert suite.nystroem_bytes(n, p) <= budget < suite.nystroem_bytes(n, p + 1)


def test_nystroem_components_at_a_million_points():
    # 4 (2 n p + 2 p^2) <= 8e9 at n = 1e6: p = 999
    assert suite.nystroem_components(1_000_000, 8e9) == 999


def test_the_memory_formula_bounds_the_measured_peak():
    """The Nyström ridge's child process: its growth during ``fit`` against the formula."""
    n, p = 20000, 400
    spec = {
        "data": {"n_train": n, "n_test": 200, "n_features": 32, "seed": 0},
        "bandwidth": 1.15, "seed": 0, "model": "nystroem",
        "params": {"n_components": p},
    }  # fmt: skip
    row = suite.run_in_child(spec, timeout=120)
    assert "error" not in row, row.get("error")
    predicted = suite.nystroem_bytes(n, p)  # 64 MB
    assert 0.8 * predicted <= row["fit_peak_bytes"] <= predicted + suite.SLACK
    assert row["peak_rss_bytes"] >= row["rss_before_fit_bytes"] + row["fit_peak_bytes"] - 1
    assert set(row["alpha_scores"]) == {str(a) for a in suite.RIDGE_ALPHAS}  # JSON keys


def test_a_failing_child_gives_a_row_with_the_error():
    spec = {
        "data": {"n_train": 100, "n_test": 10, "n_features": 4, "seed": 0},
        "bandwidth": 1.0, "seed": 0, "model": "unknown", "params": {},
    }  # fmt: skip
    row = suite.run_in_child(spec, timeout=60)
    assert row["error"] == "ValueError: unknown model 'unknown'"
    assert row["peak_rss_bytes"] > 0


def test_suite_runs_at_a_tiny_size(tmp_path, read_png):
    import argparse

    parser = argparse.ArgumentParser()
    suite.add_arguments(parser)
    args = parser.parse_args(
        ["--n-train", "800", "--n-test", "300", "--n-features", "8", "--n-centers", "100",
         "--n-epochs", "2", "--memory-budget", "4e9", "--out", str(tmp_path)]
    )  # fmt: skip
    payload = suite.run(args)
    rows = {r["model"]: r for r in payload["results"]}
    assert list(rows) == ["mean", "linear", "nystroem", "eigenpro"]
    assert rows["nystroem"]["params"]["n_components"] == 800  # capped at n
    noise = payload["noise_variance"]
    for model in ("mean", "linear", "nystroem"):
        r = rows[model]
        assert r["test_mse"] / noise == pytest.approx(r["relative_to_noise"])
        assert 0 < r["peak_rss_bytes"] <= args.memory_budget
    assert rows["nystroem"]["test_mse"] < rows["linear"]["test_mse"] < rows["mean"]["test_mse"]
    data = datasets.smooth_regression(800, 300, n_features=8)
    bias = data.y_train.mean() - data.y_test.mean()
    assert rows["mean"]["test_mse"] == pytest.approx(np.var(data.y_test) + bias**2)
    if not rows["eigenpro"].get("skipped"):
        assert rows["eigenpro"]["test_mse"] < rows["linear"]["test_mse"]
        assert len(rows["eigenpro"]["history"]["test_mse"]) == 3  # epochs 0, 1, 2
    with open(tmp_path / "million.json") as f:
        assert json.load(f)["nystroem_components"] == 800
    assert read_png(str(tmp_path / "million.png")).shape[:2] == (495, 1320)  # 12 x 4.5 in, 110 dpi


def test_ours_is_skipped_with_a_note_without_n_centers(tmp_path, monkeypatch, capsys):
    import argparse

    monkeypatch.setattr(suite, "ours_available", lambda: False)
    parser = argparse.ArgumentParser()
    suite.add_arguments(parser)
    args = parser.parse_args(
        ["--n-train", "300", "--n-test", "50", "--n-features", "4", "--models", "eigenpro",
         "--out", str(tmp_path)]
    )  # fmt: skip
    rows = suite.run(args)["results"]
    assert [r["model"] for r in rows] == ["mean", "eigenpro"]
    assert rows[1]["skipped"] and rows[1]["name"] == "ours: EigenProRegressor(n_centers=20000)"
    assert "ours skipped: EigenProRegressor has no n_centers parameter" in capsys.readouterr().out
