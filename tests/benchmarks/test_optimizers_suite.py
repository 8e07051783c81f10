# SPDX-License-Identifier: BSD-3-Clause
import numpy as np
import pytest

from benchmarks import optimizers_suite as suite

torch = pytest.importorskip("torch")


def _problem(epochs=2):
    X, y = suite.separable_data(400, 5, 0.1, seed=0)
    return suite.linear_problem("p", (X[:200], y[:200], X[200:], y[200:]), epochs)


def test_linear_problem_starts_at_log_2_and_trains_reproducibly():
    problem = _problem()
    assert problem.n_batches == 2 and problem.batch_size == 100 and not problem.deep
    points, steps = suite.train(problem, "adam", 0.1, seed=0)
    again, _ = suite.train(problem, "adam", 0.1, seed=0)
    assert steps == 4 and [p["epoch"] for p in points] == [0, 1, 2]
    assert points[0]["train_loss"] == pytest.approx(np.log(2), rel=1e-6)
    assert points[-1]["train_loss"] < points[0]["train_loss"]
    assert [p["train_loss"] for p in points] == [p["train_loss"] for p in again]


def test_line_search_counts_forwards_and_a_diverged_run_stops():
    points, _ = suite.train(_problem(), "amsgrad_armijo", None, seed=1)
    assert points[-1]["forwards"] >= 4
    diverged, _ = suite.train(_problem(epochs=3), "adam", 1e30, seed=0)
    assert diverged[-1]["train_loss"] is None or len(diverged) == 4


def test_mlp_problem_and_step_timing():
    X = torch.randn(300, 8)
    y = torch.randint(0, 10, (300,))
    problem = suite.mlp_problem("m", (X, y, X, y), [6], epochs=1)
    assert problem.deep and problem.n_batches == 3
    seconds, forwards = suite.seconds_per_step(problem, "sps", None, steps=3)
    assert seconds > 0 and forwards == 1.0
    timing, per_round = suite.interleaved_timing(problem, {"adam": 1e-3, "sps": None}, rounds=3)
    assert set(timing) == {"adam", "sps"} and timing["adam"][1] == 1.0
    assert [len(v) for v in per_round.values()] == [3, 3]
    assert timing["sps"][0] == pytest.approx(float(np.median(per_round["sps"])))
    # the ratio is the median of the rounds' ratios, not the ratio of the medians
    rounds = {"a": [1.0, 4.0, 2.0], "b": [1.0, 1.0, 4.0]}
    assert suite.round_ratio(rounds, "a", "b") == 1.0


def test_mean_curve_cuts_to_the_shortest_run():
    runs = [
        [{"epoch": 0, "seconds": 0.0, "forwards": 0, "train_loss": 1.0, "test_acc": 0.5},
         {"epoch": 1, "seconds": 1.0, "forwards": 2, "train_loss": 0.5, "test_acc": 0.7}],
        [{"epoch": 0, "seconds": 0.0, "forwards": 0, "train_loss": 3.0, "test_acc": None}],
    ]  # fmt: skip
    assert suite.mean_curve(runs) == [
        {"epoch": 0, "seconds": 0.0, "cpu_seconds": None, "forwards": 0.0, "train_loss": 2.0,
         "test_acc": None}
    ]  # fmt: skip


def test_equal_time_is_read_on_both_clocks():
    def curve(losses, wall, cpu):
        return [
            dict(epoch=e, seconds=wall * e, cpu_seconds=cpu * e, forwards=e, steps=e,
                 train_loss=f, test_acc=0.9)
            for e, f in enumerate(losses)
        ]  # fmt: skip

    # ours: 2 wall / 1.5 CPU seconds an epoch, Adam 1 / 1; both clocks stop at Adam's end
    # (2 s): ours is at epoch 1 by the wall clock (0.6) and 4/3 by the CPU clock (0.47)
    adam = curve([1.0, 0.6, 0.4], 1.0, 1.0)
    ours = curve([1.0, 0.6, 0.2], 2.0, 1.5)
    problems = {"p": {"results": {"adam": {"lr": 1e-3, "runs": [adam]},
                                  "amsgrad_armijo": {"lr": None, "runs": [ours]}}}}  # fmt: skip
    entry = suite.summarize(problems)["p"]
    assert entry["equal_epochs"]["met"]
    wall, cpu = entry["equal_time"], entry["equal_cpu_time"]
    assert wall["seconds"] == 2.0 and wall["ours"] == pytest.approx(0.6) and not wall["met"]
    assert cpu["seconds"] == 2.0 and cpu["adam"] == pytest.approx(0.4)
    assert cpu["ours"] == pytest.approx(0.6 - 0.4 * (0.5 / 1.5)) and not cpu["met"]
    assert "equal_cpu_time" in suite.format_summary(suite.summarize(problems))
