# SPDX-License-Identifier: BSD-3-Clause
"""benchmarks.defaults_suite: every estimator at its defaults against scikit-learn's."""

import argparse
import json

import pytest

from benchmarks import defaults_suite as suite


def _entry(model, ours, kind, scores):
    return {"model": model, "ours": ours, "kind": kind, "scores": scores, "seconds": [0.1],
            "mean": sum(scores) / len(scores), "std": 0.0}  # fmt: skip


def test_the_gap_is_to_the_best_reference_of_the_same_kind():
    results = {
        "wine": [
            _entry("EigenProClassifier", True, "kernel", [0.96]),
            _entry("SVC", False, "kernel", [0.98]),
            _entry("LinearSVC", False, "linear", [0.99]),  # another kind: not the reference
            _entry("StiefelSVC", True, "linear", [0.97]),
            _entry("LogisticRegression", False, "linear", [0.95]),
        ]
    }
    rows = {r[1]: r for r in suite.summarise(results)}
    assert rows["EigenProClassifier (ours)"][-1] == "-0.020 vs SVC"
    assert rows["StiefelSVC (ours)"][-1] == "-0.020 vs LinearSVC"
    assert rows["SVC"][-1] == ""


def test_a_run_on_built_in_data_writes_every_fold(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    suite.add_arguments(parser)
    args = parser.parse_args(
        ["--datasets", "iris", "--models", "StiefelSVC", "LinearSVC", "--folds", "3",
         "--out", str(tmp_path)]
    )  # fmt: skip
    results = suite.run(args)
    entries = {e["model"]: e for e in results["iris"]}
    assert set(entries) == {"StiefelSVC", "LinearSVC"}
    for e in entries.values():
        assert len(e["scores"]) == 3 and len(e["seconds"]) == 3
        assert e["mean"] == pytest.approx(sum(e["scores"]) / 3)
        assert 0.8 < e["mean"] <= 1.0
    with open(tmp_path / "defaults_partial.json") as f:
        saved = json.load(f)
    assert saved["folds"] == 3 and saved["results"]["iris"][0]["scores"]
    assert (tmp_path / "defaults_partial.png").stat().st_size > 0
    assert "| iris | StiefelSVC (ours) |" in capsys.readouterr().out


def test_the_same_folds_for_every_model():
    X, y, task = suite.load_built_in("wine")
    model = next(m for m in suite.models() if m.name == "StiefelSVC")
    first = suite.cross_validate_model(model, X, y, task, folds=3, seed=0, scale=True)
    again = suite.cross_validate_model(model, X, y, task, folds=3, seed=0, scale=True)
    assert first[0] == again[0]
