# SPDX-License-Identifier: BSD-3-Clause
import itertools
import json
import os

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from benchmarks.__main__ import main

MNIST = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "mnist.npz")


def test_eigenpro_suite_on_digits_writes_json_png_and_table(tmp_path, capsys):
    main(["eigenpro", "--epochs", "3", "--sgd-epochs", "4", "--out", str(tmp_path), "--tag", "_t"])
    out = capsys.readouterr().out
    assert "test acc %" in out and "GEMM rate" in out
    payload = json.loads((tmp_path / "eigenpro_digits_n1437_cpu_t.json").read_text())
    assert (tmp_path / "eigenpro_digits_n1437_cpu_t.png").stat().st_size > 10_000
    curves = {c["solver"]: c for c in payload["curves"]}
    assert set(curves) == {"eigenpro", "sgd", "kernel_ridge", "nystroem"}
    ep = curves["eigenpro"]["points"]
    assert [p["epoch"] for p in ep] == [0, 1, 2, 3]
    assert ep[-1]["test_acc"] > 0.95
    assert ep[-1]["train_mse"] < ep[0]["train_mse"]
    assert all(b["seconds"] >= a["seconds"] for a, b in itertools.pairwise(ep))
    assert payload["summary"]["fit_over_gemm"] > 0
    # the SGD baseline picked a stable step from its grid
    sgd = curves["sgd"]["params"]
    assert sgd["grid"][str(sgd["step_multiplier"])]["stable"]


def test_unknown_solver_is_rejected(tmp_path):
    with pytest.raises(SystemExit, match="unknown solvers"):
        main(["eigenpro", "--solvers", "eigenpro,magic", "--out", str(tmp_path)])


@pytest.mark.slow
@pytest.mark.skipif(
    not os.path.exists(MNIST), reason="MNIST file ../shared/data/mnist.npz not present"
)
def test_mnist_10k_reaches_97_percent_in_3_epochs():
    from benchmarks import datasets
    from eigenpro import EigenProClassifier

    data = datasets.load(MNIST, 10000)
    clf = EigenProClassifier(bandwidth=5.0, n_epochs=3, random_state=0)
    clf.fit(data.X_train, data.y_train)
    assert clf.score(data.X_test, data.y_test) >= 0.97
    assert np.all(np.diff(clf.history_["train_mse"]) < 0)


def test_sparse_suite_on_digits_writes_json_png_and_table(tmp_path, capsys):
    args = ["sparse", "--epochs", "4", "--seeds", "1", "--jobs", "1", "--timing-rounds", "1"]
    main([*args, "--densities", "0.2", "--split-widths", "16,24", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "| method | density |" in out and "timing rigl" in out
    payload = json.loads((tmp_path / "sparse_digits.json").read_text())
    assert (tmp_path / "sparse_digits.png").stat().st_size > 10_000
    rows = {r["method"]: r for r in payload["summary"]}
    assert set(rows) == {
        "dense",
        "static",
        "set",
        "rigl",
        "rigl_itop",
        "ssgd",
        "gmp",
        "snip",
        "synflow",
    }
    runs = {r["method"]: r for r in payload["runs"]}
    for m in ("static", "set", "rigl", "gmp", "snip", "synflow", "ssgd"):
        assert runs[m]["final_density"] == pytest.approx(0.2, abs=0.01), m
    assert runs["set"]["itop_rate"] > 0.2
    assert payload["timing"]["methods"]["dense"]["relative_to_dense"] == 1.0
    split = payload["splitting"]["summary"]
    assert split["s2d"]["final_width"][0] > 16 and split["scratch"]["final_width"] == [24]
    assert split["random"]["final_width"] == [24] and split["fresh"]["final_width"] == [24]


def test_splitting_baselines_grow_without_changing_the_function():
    import torch

    from benchmarks.sparse_suite import _fresh_units, _mlp, _random_directions
    from solvers.torch import NeuronSplitting

    small, X = _mlp(20, 6, 0), torch.randn(50, 20)
    y = torch.randint(0, 10, (50,))
    wide = _fresh_units(small, 9, 1)
    assert wide[0].out_features == 9
    torch.testing.assert_close(wide(X), small(X))
    splitter = NeuronSplitting(small, seed=0)
    eig = splitter.score([(X, y)])
    splitter.eigen_ = _random_directions(eig, torch.Generator().manual_seed(0))
    assert all(float(e.lambda_min.max()) < 0 for e in splitter.eigen_.values())
    v = splitter.eigen_[0].v_min
    torch.testing.assert_close(v.norm(dim=1), torch.ones(6, dtype=v.dtype))
    assert float((v * eig[0].v_min).sum(1).abs().max()) < 0.99  # not the eigenvectors
    grown = splitter.split(3, eps=1e-3, warn=False)
    assert grown[0].out_features == 9
    assert float((grown(X) - small(X)).abs().max()) < 1e-4
