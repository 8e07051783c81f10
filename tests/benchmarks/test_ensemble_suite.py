# SPDX-License-Identifier: BSD-3-Clause
import argparse
import json
import math

import pytest

from benchmarks import ensemble_suite as suite
from benchmarks import vision

torch = pytest.importorskip("torch")


def _args(*argv):
    parser = argparse.ArgumentParser()
    suite.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture
def tiny_digits(shrink_digits):
    """``datasets.load`` cut to 320 training and 64 test digits (the suite's loader)."""
    shrink_digits(suite, 320)


def test_tiny_run_writes_every_model_and_method(tiny_digits, tmp_path, capsys, read_png):
    args = _args("--models", "pretrained", "--epochs", "1", "--seeds", "1", "--batch", "32",
                 "--n-samples", "2", "--snapshots", "4", "--rank", "3", "--bn-samples", "64",
                 "--n-val", "64", "--out", str(tmp_path))  # fmt: skip
    payload = suite.run(args)
    out = capsys.readouterr().out
    with open(tmp_path / "ensemble_digits.json") as f:
        saved = json.load(f)
    assert [s["model"] for s in saved["summary"]] == ["pretrained"]
    for r in payload["results"]:
        assert r["snapshots"] == 4 and r["extra_steps"] == 4  # half an epoch of 8 steps
        for method in suite.METHODS:
            m = r["methods"][method]
            assert 0 <= m["acc"] <= 1 and math.isfinite(m["nll"]) and 0 <= m["ece"] <= 1
        assert set(r["targets"]) == {"ensemble_diag", "ensemble_swag", "ensemble_diag_val",
                                     "ensemble_swag_val"}  # fmt: skip
        assert r["methods"]["ensemble_swag_val"]["scale"] in suite.SCALES
    assert saved["n_train"] == 256 and saved["n_val"] == 64
    assert "| pretrained | ensemble_swag |" in out
    assert read_png(tmp_path / "ensemble_digits.png").shape[0] > 100


def test_extra_phase_longer_than_an_epoch_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="extra"):
        suite.run(_args("--extra", "1.5", "--out", str(tmp_path)))
    with pytest.raises(SystemExit, match="unknown models"):
        suite.run(_args("--models", "resnet", "--out", str(tmp_path)))


def test_targets_compare_with_swa_and_the_better_final_model():
    methods = {
        "final": {"acc": 0.97, "nll": 0.1, "ece": 0.0},
        "final+extra": {"acc": 0.98, "nll": 0.1, "ece": 0.0},
        "swa": {"acc": 0.98, "nll": 0.08, "ece": 0.0},
        "ensemble_diag": {"acc": 0.975, "nll": 0.07, "ece": 0.0},
        "ensemble_swag": {"acc": 0.98, "nll": 0.09, "ece": 0.0},
    }
    methods["ensemble_diag_val"] = methods["ensemble_diag"]
    methods["ensemble_swag_val"] = methods["ensemble_swag"]
    got = suite.targets(methods)
    assert got["ensemble_diag"] == {"nll_below_swa": True, "acc_at_least_final": False}
    assert got["ensemble_swag"] == {"nll_below_swa": False, "acc_at_least_final": True}
    assert got["ensemble_swag_val"] == got["ensemble_swag"]


def test_metrics_against_their_definitions():
    proba = torch.tensor(
        [[0.95, 0.05], [0.65, 0.35], [0.25, 0.75], [0.15, 0.85]], dtype=torch.float64
    )
    y = torch.tensor([0, 1, 1, 1])
    m = vision.metrics(proba, y, bins=10)
    assert m["acc"] == pytest.approx(0.75)
    nll = -(math.log(0.95) + math.log(0.35) + math.log(0.75) + math.log(0.85)) / 4
    assert m["nll"] == pytest.approx(nll)
    # one point per bin: |correct - confidence| / 4 each
    ece = (abs(1 - 0.95) + abs(0 - 0.65) + abs(1 - 0.75) + abs(1 - 0.85)) / 4
    assert m["ece"] == pytest.approx(ece)


def test_lenet5_takes_digits_resized_to_28():
    ds = suite.datasets.load(None, n_train=5)
    X, _, Xt, _ = vision.image_tensors(ds)
    assert X.shape == (5, 1, 28, 28) and Xt.shape[1:] == (1, 28, 28)
    assert vision.lenet5(0, batchnorm=True)(X).shape == (5, 10)
