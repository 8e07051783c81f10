# SPDX-License-Identifier: BSD-3-Clause
import argparse

import numpy as np
import pytest

from benchmarks import datasets, eigenpro_suite
from benchmarks.report import Curve


def _args(**kw):
    parser = argparse.ArgumentParser()
    eigenpro_suite.add_arguments(parser)
    args = parser.parse_args([])
    for k, v in kw.items():
        setattr(args, k, v)
    return args


def test_settings_fill_in_the_dataset_defaults():
    digits = datasets.Dataset("digits", *[np.zeros(1)] * 4)
    mnist = datasets.Dataset("mnist", *[np.zeros(1)] * 4)
    s = eigenpro_suite.settings(_args(), digits)
    assert (s.epochs, s.sgd_epochs, s.bandwidth, s.device, s.memory_budget) == (
        10, 40, "auto", None, "auto"
    )  # fmt: skip
    s = eigenpro_suite.settings(_args(solvers="eigenpro, sgd", device="cuda"), mnist)
    assert (s.epochs, s.sgd_epochs, s.bandwidth, s.solvers, s.device) == (
        3, 30, 5.0, ("eigenpro", "sgd"), "cuda"
    )  # fmt: skip
    with pytest.raises(SystemExit, match="unknown solvers"):
        eigenpro_suite.settings(_args(solvers="magic"), digits)


def test_summary_compares_eigenpro_with_the_baselines():
    ep, sgd, krr = Curve("eigenpro"), Curve("sgd"), Curve("kernel_ridge")
    for e, (acc, mse) in enumerate([(0.5, 1.0), (0.97, 0.1), (0.99, 0.01)]):
        ep.add(epoch=e, seconds=float(e), test_acc=acc, train_mse=mse)
    for e in range(7):
        sgd.add(epoch=e, seconds=float(e), test_acc=0.9, train_mse=0.5 / (e + 1))
    krr.add(epoch=None, seconds=4.0, test_acc=0.98, train_mse=1e-6)
    s = eigenpro_suite._summary([ep, sgd, krr], gemm_seconds=0.5, rate=2e9, mnist=True)
    assert s["fit_over_gemm"] == 4.0 and s["epochs_to_98.6"] == 2
    assert s["eigenpro_seconds_to_krr_minus_0.1"] == 2.0 and s["speedup_vs_kernel_ridge"] == 2.0
    assert s["sgd_epochs_to_eigenpro_loss"] is None and s["epoch_ratio_sgd_over_eigenpro"] == 3.0
    assert len(s["lines"]) == 5 and "not reached in 6 epochs" in s["lines"][-1]


@pytest.mark.slow
def test_mnist_10k_reaches_97_percent_in_3_epochs(mnist_path):
    from eigenpro import EigenProClassifier

    data = datasets.load(mnist_path, 10000)
    clf = EigenProClassifier(bandwidth=5.0, n_epochs=3, random_state=0)
    clf.fit(data.X_train, data.y_train)
    assert clf.score(data.X_test, data.y_test) >= 0.97
    assert np.all(np.diff(clf.history_["train_mse"]) < 0)


def test_summary_reports_the_peak_memory_next_to_the_budget():
    ep = Curve("eigenpro", params={"memory_budget_bytes": 2**30, "peak_resident_bytes": 3 * 2**28})
    ep.add(epoch=0, seconds=0.0, test_acc=0.5, train_mse=1.0)
    ep.add(epoch=1, seconds=1.0, test_acc=0.9, train_mse=0.1)
    s = eigenpro_suite._summary([ep], gemm_seconds=0.5, rate=2e9, mnist=False)
    assert s["eigenpro_memory_budget_bytes"] == 2**30
    assert s["eigenpro_peak_resident_bytes"] == 3 * 2**28
    line = "EigenPro peak memory during fit: 768 MiB resident above the data"
    assert s["lines"][-1] == line + " (memory budget 1024 MiB)"


def test_eigenpro_fit_records_its_peak_memory_and_budget():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 8))
    y = (X[:, 0] > 0).astype(int)
    data = datasets.Dataset("toy", X[:300], y[:300], X[300:], y[300:])
    common = dict(
        kernel="gaussian", bandwidth="auto", memory_budget=4e6, random_state=0, device=None
    )
    curve, _ = eigenpro_suite._eigenpro(data, 1, common)
    assert curve.params["memory_budget_bytes"] == 4_000_000
    peak = curve.params["peak_resident_bytes"]
    assert peak is None or 0 <= peak < 2**30
    table = eigenpro_suite.format_table([curve], eigenpro_suite.TABLE_COLUMNS)
    header, _, row = table.splitlines()
    assert header.split()[-4:] == ["peak", "MiB", "budget", "MiB"] and row.split()[-1] == "4"


@pytest.mark.gpu
def test_fit_memory_sees_an_allocation_on_the_cuda_device():
    import torch

    with eigenpro_suite.FitMemory("cuda") as memory:
        x = torch.ones(2**20, device="cuda")  # 4 MiB
    assert x.numel() and memory.params()["peak_device_bytes"] >= 4 * 2**20
