# SPDX-License-Identifier: BSD-3-Clause
import argparse
import json
import math

import numpy as np
import pytest

from benchmarks import torch_defaults_suite as suite

torch = pytest.importorskip("torch")


def _args(*argv):
    parser = argparse.ArgumentParser()
    suite.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture
def tiny_digits(shrink_digits):
    """``datasets.load`` cut to 128 training and 64 test digits (the suite's loader)."""
    shrink_digits(suite, 128)


def test_tiny_run_writes_every_method_finite_and_prints_the_table(
    tiny_digits, tmp_path, capsys, read_png
):
    args = _args("--epochs", "1", "--seeds", "1", "--batch-size", "64", "--out", str(tmp_path))
    payload = suite.run(args)
    out = capsys.readouterr().out
    with open(tmp_path / "torch_defaults_digits.json") as f:
        saved = json.load(f)
    assert read_png(tmp_path / "torch_defaults_digits.png").shape[0] > 100
    assert set(saved) >= {"suite", "dataset", "epochs", "batch_size", "seeds", "machine",
                          "threads", "wall_seconds", "summary", "problems"}  # fmt: skip
    assert saved["threads"] == 1 and saved["epochs"] == 1 and saved["n_train"] == 128
    titles = ["cnn (8x8)", "lstm (8x8)", "transformer (8x8)"]
    assert list(saved["summary"]) == titles == list(payload["summary"])
    for title in titles:
        rows = saved["summary"][title]
        assert list(rows) == list(suite.METHODS)
        for name, row in rows.items():
            values = [row["test_acc_mean"], row["train_loss_mean"], row["seconds_mean"],
                      row["forwards_per_step"]]  # fmt: skip
            assert all(v is not None and math.isfinite(v) for v in values), (title, name)
            assert 0.0 <= row["test_acc_mean"] <= 1.0 and row["diverged"] == 0
            assert [p["epoch"] for p in row["curve"]] == [0, 1]
            assert (row["density"] is not None) == (name in suite.SPARSE), name
        if title != "cnn (8x8)":  # (eval-mode BatchNorm: its running statistics lag 2 steps)
            curve = rows["adam"]["curve"]  # Adam's 2 small steps lowered the training loss
            assert curve[1]["train_loss"] < curve[0]["train_loss"]
        assert rows["adasls"]["forwards_per_step"] >= 1.0
        assert rows["sps"]["forwards_per_step"] == 1.0  # no trial forwards
        assert rows["ssgd"]["reference"] == "sgd" and rows["rigl"]["reference"] == "adam"
    # sparse controllers at their 0.1 density (GMP reaches it at its end step)
    assert saved["summary"]["cnn (8x8)"]["static"]["density"] == pytest.approx(0.1, abs=0.01)
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| model | method |"))
    assert lines[header + 1] == "|---|---|---|---|---|---|---|---|"
    table = lines[header + 2 : header + 2 + 3 * len(suite.METHODS)]
    assert all(line.startswith("| ") and line.count("|") == 9 for line in table)
    assert table[0].startswith("| cnn (8x8) | adam | ")


def test_same_seed_same_run_and_the_model_is_evaluated_in_eval_mode():
    ds = suite.datasets.load(None, n_train=128)
    data = tuple(torch.from_numpy(a) for a in (ds.X_train, ds.y_train, ds.X_test, ds.y_test))
    problem = suite.make_problem("cnn", data, epochs=2, batch_size=64)
    a, facts = suite.train(problem, "adasls", seed=0)
    b, _ = suite.train(problem, "adasls", seed=0)
    assert [p["train_loss"] for p in a] == [p["train_loss"] for p in b]
    assert facts["totals"]["steps"] == 4 and facts["totals"]["forwards"] == a[-1]["forwards"]
    model = problem.model_fn()
    loss, _ = suite.evaluate(problem, model)
    assert model.training  # back in train mode
    model.eval()
    with torch.no_grad():
        expected = float(torch.nn.functional.cross_entropy(model(data[0]), data[1]))
    assert loss == pytest.approx(expected, rel=1e-5)  # eval-mode BatchNorm, whole set


def test_ssgd_prunes_to_the_density_and_fine_tunes_on_the_mask():
    X, y = torch.randn(100, 64), torch.randint(0, 10, (100,))
    problem = suite.make_problem("lstm", (X, y, X, y), epochs=3, batch_size=50)
    points, facts = suite.train(problem, "ssgd", seed=0)
    assert len(points) == 4 and facts["density"] == pytest.approx(0.1, abs=0.01)
    assert np.isfinite([p["train_loss"] for p in points]).all()


def test_unknown_methods_and_models_are_refused():
    with pytest.raises(SystemExit, match="unknown methods"):
        suite._methods(_args("--methods", "adam,magic"))
    with pytest.raises(SystemExit, match="unknown models"):
        suite._models(_args("--models", "cnn,resnet"))
    assert suite._methods(_args("--methods", "adam,sps_c05")) == ["adam", "sps_c05"]


def test_methods_keep_every_default_but_the_steps_per_epoch():
    from solvers.torch import SPS, AdaSLS

    def method(name, n_batches=7, epochs=10):
        return suite.Method(name, suite.cnn(8), n_batches, epochs)

    params = suite.cnn(8).parameters
    assert method("adam").opt.defaults == torch.optim.Adam(params()).defaults
    assert method("adamw").opt.defaults == torch.optim.AdamW(params()).defaults
    for name, cls in (("adasls", AdaSLS), ("sps", SPS)):
        ours, default = method(name).opt.defaults, cls(params()).defaults
        assert ours["n_batches_per_epoch"] == 7 and default["n_batches_per_epoch"] == 500
        assert {**ours, "n_batches_per_epoch": 500} == default
    assert method("adasls_n500").opt.defaults == AdaSLS(params()).defaults
    assert method("sps_c05").opt.defaults["c"] == 0.5
    rigl = method("rigl").controller
    # the ITOP defaults given total_steps = 70: an update every 70 // 24 steps, no end
    assert rigl.schedule.every == 70 // 24 and rigl.schedule.end is None and rigl.density < 0.11
    assert method("rigl_itop").controller.schedule.every == 70 // 24
    assert (method("gmp").controller.scope, method("gmp_global").controller.scope) == (
        "layer", "global",
    )  # fmt: skip
    ssgd = method("ssgd")
    assert (ssgd.controller.lam, ssgd.controller.eps, ssgd.prune_epoch) == (1e-5, 1e-4, 7)
    assert method("ssgd_eps2").controller.eps == 1e-2 and ssgd.density() is None
