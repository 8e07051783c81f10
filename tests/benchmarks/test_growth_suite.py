# SPDX-License-Identifier: BSD-3-Clause
import argparse
import json

import numpy as np
import pytest

from benchmarks import growth_suite as suite

torch = pytest.importorskip("torch")


def _args(*argv):
    parser = argparse.ArgumentParser()
    suite.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_fresh_units_keep_the_function_within_the_budget():
    from solvers.torch.growth import model_flops

    net = suite.cnn([2, 3, 5], 8, 0)
    X = torch.randn(20, 1, 8, 8)
    before = model_flops(net, X[:1])
    wide, count = suite.fresh_units(net, 0.8 * before, X[:1], torch.Generator().manual_seed(0))
    torch.testing.assert_close(wide(X), net(X))
    added = model_flops(wide, X[:1], nonzero=False) - before
    assert 0 < added <= 0.8 * before and sum(count.values()) > 0
    assert suite.widths_of(wide) == [
        w + count[i] for w, i in zip([2, 3, 5], (0, 3, 7), strict=True)
    ]


def _run(method, accs, flops):
    return {"method": method, "seed": 0, "points": [
        {"epoch": e, "flops": f, "widths": [2, 4, 16], "test_acc": a, "test_loss": 1 - a}
        for e, (a, f) in enumerate(zip(accs, flops, strict=True), start=1)]}  # fmt: skip


RUNS = [
    _run("s2d", [0.9, 0.95], [1e5, 2e5]),
    _run("firefly", [0.9, 0.97], [1e5, 2e5]),
    _run("gmp_firefly", [0.96], [2e5]),
    _run("scratch_firefly", [0.975], [2e5]),
]


def test_summary_states_the_targets():
    s = suite.summarize(RUNS)
    t = s["targets"]
    assert t["firefly_vs_pruned_points"] == pytest.approx(1.0)
    assert t["firefly_vs_scratch_points"] == pytest.approx(-0.5)
    assert t["energy_or_firefly_at_or_above_pruned"] and t["firefly_above_s2d"]
    lines = suite.format_table(s).splitlines()
    assert lines[0] == "| method | final widths | MFLOPs | test acc. (mean) | seeds | test NLL |"
    assert lines[3] == "| firefly | 2-4-16 | 0.200 | 97.00 % | 97.00 | 0.0300 |"


def test_plot_writes_a_png(tmp_path, read_png):
    path = suite.plot(str(tmp_path / "g.png"), RUNS, "title")
    assert read_png(path).shape[:2] == (440, 1210)  # 11 x 4 inches at 110 dpi


def test_a_tiny_run_on_digits_writes_every_method(tmp_path):
    args = _args(
        "--start", "2,2,4", "--wide", "3,4,8", "--rounds", "1", "--warmup-epochs", "1",
        "--epochs-per-round", "1", "--final-epochs", "1", "--n-score", "200",
        "--out", str(tmp_path),
    )  # fmt: skip
    payload = suite.run(args)
    with open(tmp_path / "growth.json") as f:
        saved = json.load(f)
    assert saved["dataset"] == "digits" and set(saved["summary"]["methods"]) == {
        *suite.GROWTH,
        *suite.BASELINES,
    }
    for r in payload["runs"]:
        if r["method"] in ("energy", "firefly", "fresh"):
            log = r["rounds"][0]
            assert 0 <= log["added_flops"] <= log["budget"]  # within the round's FLOPs budget
        if r["method"].startswith("gmp"):
            target = next(q for q in payload["runs"] if q["method"] == r["method"][4:])["points"][
                -1
            ]["flops"]
            assert r["points"][-1]["flops"] == pytest.approx(target, rel=0.05)
    assert (tmp_path / "growth.png").exists()
    assert np.isfinite(saved["summary"]["methods"]["firefly"]["test_acc_mean"])
