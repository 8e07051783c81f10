# SPDX-License-Identifier: BSD-3-Clause
"""The per-epoch log: history, callback, tol, progress lines and the result."""

import time

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from eigenpro._epoch_log import EpochLog, progress_bar


def start(make_small_plan, **settings):
    settings, data, plan = make_small_plan(**settings)
    return plan, EpochLog(settings, plan, data.vector_target, time.perf_counter(), 2.0)


def test_history_starts_at_epoch_zero_and_grows(make_small_plan):
    plan, log = start(make_small_plan)
    assert log.history["epoch"] == [0] and log.history["train_mse"] == [2.0]
    coef = np.zeros((400, 2))
    assert log.record(plan, 1, 1.0, coef) is False
    assert log.record(plan, 2, 0.5, coef) is False
    assert log.history["epoch"] == [0, 1, 2] and log.history["train_mse"] == [2.0, 1.0, 0.5]
    assert np.all(np.diff(log.history["time"]) >= 0)
    result = log.result(plan, coef)
    assert (result.nit, result.fun, result.status, result.success) == (2, 0.5, 0, True)
    assert result.message == "Completed all epochs."
    assert result.batch_size == plan.batch_size and result.step_size == plan.step_size
    assert result.kernel_precomputed == plan.kernel_precomputed
    np.testing.assert_array_equal(result.subsample, plan.permutation[:100])


def test_tol_stops_and_running_out_warns(make_small_plan):
    plan, log = start(make_small_plan, tol=0.1)
    coef = np.zeros((400, 2))
    assert log.record(plan, 1, 0.5, coef) is False
    assert log.record(plan, 2, 0.2, coef) is True
    assert "fell below tol" in log.message and log.status == 0
    plan, log = start(make_small_plan, tol=0.1, n_epochs=1)
    log.record(plan, 1, 0.5, coef)
    with pytest.warns(ConvergenceWarning, match="did not reach tol=0.1") as record:
        log.ran_out()
    assert record[0].filename == __file__
    assert log.status == 1 and not log.result(plan, coef).success


def test_running_out_without_tol_is_success(make_small_plan, recwarn):
    plan, log = start(make_small_plan)
    log.record(plan, 1, 0.5, np.zeros((400, 2)))
    log.ran_out()
    assert log.status == 0 and not recwarn.list


def test_callback_sees_the_original_order_and_can_stop(make_small_plan):
    seen = []

    def callback(result):
        seen.append(result)
        time.sleep(0.05)  # not counted in the history's times
        raise StopIteration

    plan, log = start(make_small_plan, callback=callback)
    coef = np.arange(800.0).reshape(400, 2)
    assert log.record(plan, 1, 0.5, coef) is True
    assert log.status == 99 and "StopIteration" in log.message
    np.testing.assert_array_equal(seen[0].x, plan.original_order(coef))
    assert (seen[0].nit, seen[0].fun) == (1, 0.5) and seen[0].history is log.history
    assert seen[0].kernel_bytes == plan.matrix.nbytes
    assert log.callback_time >= 0.05
    before = time.perf_counter() - log.t_start
    log.record(plan, 2, 0.4, coef)
    assert log.history["time"][-1] <= before - 0.05 + 1.0


def test_verbose_prints_a_line_per_epoch(make_small_plan, capsys):
    plan, log = start(make_small_plan, verbose=1)
    log.record(plan, 1, 0.5, np.zeros((400, 2)))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[EigenPro] n=400 s=100") and "epoch 1/10" in lines[1]


def test_progress_bar_only_when_very_verbose():
    items = [1, 2]
    assert progress_bar(items, 0, "x") is items and progress_bar(items, 1, "x") is items
    tqdm = pytest.importorskip("tqdm")
    assert isinstance(progress_bar(items, 2, "x"), tqdm.std.tqdm)
