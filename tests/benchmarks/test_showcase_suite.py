# SPDX-License-Identifier: BSD-3-Clause
"""The main job's suite on a small generated set, and the expanded digits it runs on."""

import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("torch")

from sklearn.datasets import load_digits

from benchmarks import datasets
from benchmarks.__main__ import main


def test_expanded_digits_are_seeded_deformations_of_disjoint_originals():
    a, (train, test) = datasets.expanded_digits(600, 200, seed=3, return_sources=True)
    b = datasets.expanded_digits(600, 200, seed=3)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    assert a.X_train.shape == (600, 256) and a.X_test.shape == (200, 256)
    assert a.X_train.min() >= 0.0 and a.X_train.max() <= 1.0
    assert set(np.unique(a.y_train)) == set(range(10))
    other = datasets.expanded_digits(600, 200, seed=4)
    assert not np.array_equal(a.X_train, other.X_train)
    # every image is a deformation, not a copy: no two training images are equal
    assert len(np.unique(a.X_train, axis=0)) == 600
    # training and test images come from disjoint originals, with their labels
    assert not set(train) & set(test)
    _, y = load_digits(return_X_y=True)
    np.testing.assert_array_equal(a.y_train, y[train])
    np.testing.assert_array_equal(a.y_test, y[test])
    # more training images keep the test set and extend the training set
    more = datasets.expanded_digits(2500, 200, seed=3)
    np.testing.assert_array_equal(more.X_test, a.X_test)
    np.testing.assert_array_equal(more.X_train[:600], a.X_train)


def test_load_knows_the_built_in_names():
    assert datasets.load("digits").name == "digits"
    assert datasets.load(datasets.EXPANDED, n_train=300).X_train.shape == (300, 256)


def test_showcase_writes_both_comparisons(tmp_path, capsys):
    args = ["showcase", "--n-train", "1500", "--epochs", "2", "--sgd-epochs", "2",
            "--torch-epochs", "2", "--widths", "100", "--torch-widths", "64",
            "--nystroem-components", "300", "--out", str(tmp_path)]  # fmt: skip
    main(args)
    out = capsys.readouterr().out
    assert "EigenPro:" in out and "ManifoldNetClassifier():" in out
    payload = json.loads((tmp_path / "showcase.json").read_text())
    assert (tmp_path / "showcase.png").stat().st_size > 10_000
    solvers = {c["solver"] for c in payload["curves"]}
    assert solvers == {"eigenpro", "sgd", "kernel_ridge", "nystroem"}
    s = payload["summary"]
    curves = {c["solver"]: c["points"] for c in payload["curves"]}
    ratio = curves["kernel_ridge"][-1]["seconds"] / curves["eigenpro"][-1]["seconds"]
    assert s["kernel_ridge"]["time_ratio"] == pytest.approx(ratio)
    assert s["eigenpro"]["accuracy"] == curves["eigenpro"][-1]["test_acc"] > 0.5
    groups = [r["group"] for r in payload["networks"]]
    assert groups == ["width", "width", "anchor", "torch"]
    assert s["network"]["accuracy"] == payload["networks"][0]["test_accuracy"]


def test_no_suite_lists_the_suites(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "showcase" in out and "The main job" in out
    from benchmarks import SUITES

    assert all(f"  {name} " in out for name in SUITES)
