# SPDX-License-Identifier: BSD-3-Clause
"""The main job's suite on a small generated set, and the expanded digits it runs on."""

import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from benchmarks import datasets
from benchmarks.__main__ import main


def test_expanded_digits_are_seeded_deformations_of_disjoint_originals():
    a = datasets.expanded_digits(600, 200, seed=3)
    b = datasets.expanded_digits(600, 200, seed=3)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    assert a.X_train.shape == (600, 256) and a.X_test.shape == (200, 256)
    assert a.X_train.min() >= 0.0 and a.X_train.max() <= 1.0
    assert set(np.unique(a.y_train)) == set(range(10))
    other = datasets.expanded_digits(600, 200, seed=4)
    assert not np.array_equal(a.X_train, other.X_train)
    # every image is a deformation, not a copy: no two training images are equal
    assert len(np.unique(a.X_train, axis=0)) == 600
    # the test images come from held-out originals: a nearest-neighbour classifier fitted on
    # the training images is far from perfect on them, but far above chance
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(1).fit(a.X_train, a.y_train)
    assert 0.5 < knn.score(a.X_test, a.y_test) < 0.99


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
    assert s["kernel_ridge"]["time_ratio"] > 0 and 0.5 < s["eigenpro"]["accuracy"] <= 1
    groups = [r["group"] for r in payload["networks"]]
    assert groups == ["width", "width", "anchor", "torch"]
    assert s["network"]["accuracy"] == payload["networks"][0]["test_accuracy"]


def test_no_suite_lists_the_suites(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "showcase" in out and "The main job" in out
    from benchmarks import SUITES

    assert all(f"  {name} " in out for name in SUITES)
