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
