# SPDX-License-Identifier: BSD-3-Clause
import argparse
import json

import pytest

from benchmarks import proximal_suite as suite

torch = pytest.importorskip("torch")


def _args(*argv):
    parser = argparse.ArgumentParser()
    suite.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture
def tiny_digits(shrink_digits):
    """``datasets.load`` cut to 192 training and 64 test digits (the suite's loader)."""
    shrink_digits(suite, 192)


def test_tiny_run_selects_on_validation_and_adds_the_mean_step_baseline(
    tiny_digits, tmp_path, capsys, read_png
):
    args = _args("--epochs", "1", "--seeds", "1", "--batches", "16", "--n-val", "64",
                 "--sgd-lrs", "0.01,0.03", "--adam-lrs", "0.001",
                 "--out", str(tmp_path))  # fmt: skip
    payload = suite.run(args)
    out = capsys.readouterr().out
    with open(tmp_path / "proximal_digits.json") as f:
        saved = json.load(f)
    assert saved["n_train"] == 128 and saved["n_val"] == 64
    sel = {r["method"]: r for r in payload["selected"]}
    assert set(sel) == {"sgd", "sgd_mean_step", "prox_sgd", "adam", "adam_mean_step", "prox_adam"}
    factor = sum(1 / (k + 1) for k in range(10)) / 10
    assert sel["sgd_mean_step"]["lr"] == pytest.approx(sel["prox_sgd"]["lr"] * factor)
    assert sel["adam_mean_step"]["lr"] == pytest.approx(sel["prox_adam"]["lr"] * factor)
    best = max(sel["sgd"]["grid"].items(), key=lambda kv: kv[1])
    assert float(best[0]) == sel["sgd"]["lr"]
    for r in payload["runs"]:
        assert r["steps"] == 8 and (r["proximal_steps"] in (None, 8))
        assert (r["proximal_steps"] is not None) == r["method"].startswith("prox_")
    v = payload["verdict"]["16"]["prox_sgd"]
    assert v["survives"] == (v["gain_over_best_plain"] > 0)
    assert "| 16 | prox_sgd |" in out
    assert read_png(tmp_path / "proximal_digits.png").shape[0] > 100
