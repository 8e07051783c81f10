# SPDX-License-Identifier: BSD-3-Clause
"""The command line of every suite, on small runs of the built-in digits."""

import itertools
import json

import pytest

pytest.importorskip("matplotlib")

from benchmarks.__main__ import main


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


def test_optimizers_suite_on_a_synthetic_problem_writes_json_png_and_summary(tmp_path, capsys):
    pytest.importorskip("torch")
    args = ["optimizers", "--problems", "synthetic", "--margins", "0.1", "--seeds", "2"]
    main([*args, "--epochs-synthetic", "2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "synthetic margin 0.1" in out and "equal_epochs" in out
    payload = json.loads((tmp_path / "optimizers_digits.json").read_text())
    assert (tmp_path / "optimizers_digits.png").stat().st_size > 10_000
    assert payload["args"]["seeds"] == 2 and list(payload["problems"]) == ["synthetic margin 0.1"]
    results = payload["problems"]["synthetic margin 0.1"]["results"]
    assert set(results) == {
        "adam", "amsgrad", "adagrad", "amsgrad_armijo", "adagrad_armijo", "sgd_armijo", "sps",
        "amsgrad_armijo_numpy",
    }  # fmt: skip
    assert len(results["adam"]["grid"]) == 7 and len(results["sps"]["runs"]) == 2
    assert [p["epoch"] for p in results["amsgrad_armijo"]["runs"][0]] == [0, 1, 2]
    rows = payload["summary"]["synthetic margin 0.1"]["rows"]
    assert rows["amsgrad_armijo"]["train_loss"] < 0.6931  # below the loss at w = 0


def test_closedform_suite_on_digits_writes_json_png_and_table(tmp_path, capsys):
    main(["closedform", "--widths", "40", "--skip-linear-svc", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "test acc" in out and "gain over the ELM" in out
    payload = json.loads((tmp_path / "closedform_digits.json").read_text())
    assert (tmp_path / "closedform_digits.png").stat().st_size > 10_000
    names = [r["name"] for r in payload["results"]]
    assert "ours 40" in names and not any(n.startswith("LinearSVC") for n in names)
    assert payload["default_width"] == 40 and set(payload["summary"]["gain_over_elm_points"]) == {
        "40"
    }
    ours = next(r for r in payload["results"] if r["name"] == "ours 40")
    assert ours["test_accuracy"] > 0.8 and ours["n_iter"] == 1 and "params" in ours
