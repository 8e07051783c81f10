# SPDX-License-Identifier: BSD-3-Clause
"""solvers.distributed.Communicator on 2 gloo ranks (forked, the ``gloo_ranks`` fixture).

The collectives equal their single-process meaning (a sum, a concatenation in
rank order, the source's values) for NumPy float64 and torch; ``bytes_sent``
equals its documented formula; a bad input on one rank raises the same
ValueError on both; a rank that raises, exits or stalls makes the other raise
a RuntimeError naming the collective within the group's timeout.
"""

import os
import pickle
import time

import numpy as np
import pytest
import torch

from solvers.distributed import (
    HEADER_LENGTH,
    Communicator,
    ProcessGroupParamMixin,
    process_group_constraint,
    resolve_process_group,
)

GROUP_TIMEOUT = 3.0  # the group's timeout in the tests of failures: how long a survivor waits
SLACK = 3.0


def _rows(rank):
    """Rank ``rank``'s rows: 3 rows on rank 0, 5 on rank 1, float64."""
    return np.random.default_rng(rank).standard_normal((3 + 2 * rank, 4))


def _collectives(rank):
    comm = Communicator("world")
    X = _rows(rank)
    out = {"rank": comm.rank, "world_size": comm.world_size}
    out["sum_np"] = comm.all_reduce_sum(X[:3])
    out["sum_torch"] = comm.all_reduce_sum(torch.from_numpy(X[:3]))
    out["sum_float"] = comm.all_reduce_sum(float(rank) + 0.5)
    out["max"] = comm.all_reduce_max(np.array([rank, -rank], dtype=np.float64))
    out["input_unchanged"] = bool(np.array_equal(X, _rows(rank)))
    out["gather_np"] = comm.all_gather_rows(X)
    out["gather_torch"] = comm.all_gather_rows(torch.from_numpy(X).float())
    out["gather_empty"] = comm.all_gather_rows(X[: 2 * rank])  # 0 rows on rank 0
    out["bcast"] = comm.broadcast(X[:3] + 10 * rank, src=1)
    out["bcast_torch"] = comm.broadcast(torch.arange(4, dtype=torch.int64) * (rank + 1), src=0)
    return out


def test_collectives_equal_their_single_process_results(gloo_ranks):
    reports = gloo_ranks(_collectives)
    X0, X1 = _rows(0), _rows(1)
    for r, rep in enumerate(reports):
        assert rep["error"] is None, rep
        v = rep["value"]
        assert (v["rank"], v["world_size"]) == (r, 2)
        assert v["sum_np"].dtype == np.float64
        np.testing.assert_allclose(v["sum_np"], X0[:3] + X1[:3], rtol=0, atol=1e-15)
        assert isinstance(v["sum_torch"], torch.Tensor) and v["sum_torch"].dtype == torch.float64
        np.testing.assert_allclose(v["sum_torch"].numpy(), X0[:3] + X1[:3], rtol=0, atol=1e-15)
        assert v["sum_float"] == 2.0 and isinstance(v["sum_float"], float)
        np.testing.assert_array_equal(v["max"], [1.0, 0.0])
        assert v["input_unchanged"]
        np.testing.assert_array_equal(v["gather_np"], np.concatenate([X0, X1]))
        assert v["gather_torch"].dtype == torch.float32
        np.testing.assert_array_equal(
            v["gather_torch"].numpy(), np.concatenate([X0, X1]).astype(np.float32)
        )
        np.testing.assert_array_equal(v["gather_empty"], X1[:2])
        np.testing.assert_array_equal(v["bcast"], X1[:3] + 10)
        np.testing.assert_array_equal(v["bcast_torch"].numpy(), np.arange(4))


def _counted(rank):
    comm = Communicator("world")
    X = _rows(rank)  # (3 + 2 rank, 4) float64
    comm.all_reduce_sum(X[:3])
    after_reduce = comm.bytes_sent
    comm.broadcast(X[:3], src=0)
    after_bcast = comm.bytes_sent
    comm.all_gather_rows(X.astype(np.float32))
    return after_reduce, after_bcast, comm.bytes_sent


def test_bytes_sent_equals_the_documented_formula(gloo_ranks):
    reports = gloo_ranks(_counted)
    for r, rep in enumerate(reports):
        reduce_bytes = 3 * 4 * 8  # its own float64 tensor
        bcast_bytes = 3 * 4 * 8 if r == 0 else 0  # only the source sends
        gather_bytes = HEADER_LENGTH * 8 + 5 * 4 * 4  # header + rows padded to the longest (5)
        assert rep["value"] == (
            reduce_bytes,
            reduce_bytes + bcast_bytes,
            reduce_bytes + bcast_bytes + gather_bytes,
        )


def test_a_single_process_communicator_is_the_identity():
    comm = Communicator()
    X = _rows(0)
    assert comm.all_reduce_sum(X) is X and comm.all_gather_rows(X) is X
    assert comm.broadcast(X) is X
    assert (comm.rank, comm.world_size, comm.bytes_sent) == (0, 1, 0)
    comm.agree("fit", n_features=3)
    assert comm.check_nonempty(0) == [0]  # a single process' empty X is the caller's to refuse


def _disagree(rank, facts_by_rank):
    comm = Communicator("world")
    comm.agree("Estimator.fit", **facts_by_rank[rank])
    return "agreed"


@pytest.mark.parametrize(
    "facts, match",
    [
        ([{"n_features": 4}, {"n_features": 5}], r"n_features differs .*rank 0: 4, rank 1: 5"),
        (
            [{"dtype": "float64", "n": 1}, {"dtype": "float32", "n": 1}],
            r"dtype differs .*rank 0: 'float64', rank 1: 'float32'",
        ),
    ],
    ids=["n_features", "dtype"],
)
def test_agree_raises_the_same_error_on_every_rank(gloo_ranks, facts, match):
    reports = gloo_ranks(_disagree, facts)
    assert [rep["error"] for rep in reports] == ["ValueError", "ValueError"]
    assert reports[0]["message"] == reports[1]["message"]
    assert "Estimator.fit" in reports[0]["message"]
    import re

    assert re.search(match, reports[0]["message"]), reports[0]["message"]
    assert gloo_ranks(_disagree, [facts[0], facts[0]])[1]["value"] == "agreed"


def _nonempty(rank):
    comm = Communicator("world")
    return comm.check_nonempty(3 * rank, name="X")


def test_zero_rows_on_one_rank_raises_on_both(gloo_ranks):
    reports = gloo_ranks(_nonempty)
    for rep in reports:
        assert rep["error"] == "ValueError", rep
        assert "X has 0 rows on rank(s) [0]" in rep["message"]
        assert "[0, 3]" in rep["message"]


def _together(rank):
    comm = Communicator("world")
    with comm.raise_together("Estimator.fit: validating X"):
        if rank == 1:
            raise ValueError("Input X contains NaN.")
    return "passed"


def test_an_error_inside_raise_together_raises_on_every_rank(gloo_ranks):
    reports = gloo_ranks(_together)
    assert [rep["error"] for rep in reports] == ["ValueError", "ValueError"]
    assert reports[1]["message"] == "Input X contains NaN."  # its own error
    assert reports[0]["message"] == (
        "Estimator.fit: validating X failed on rank 1 of the process group: "
        "ValueError: Input X contains NaN."
    )


def _mismatched_rows(rank):
    return Communicator("world").all_gather_rows(np.zeros((2, 3 + rank)))


def test_gathering_rows_of_different_widths_raises_on_every_rank(gloo_ranks):
    for rep in gloo_ranks(_mismatched_rows):
        assert rep["error"] == "ValueError"
        assert "rank 0: float64 (n, 3), rank 1: float64 (n, 4)" in rep["message"]


def _faulty(rank, kind, collective):
    comm = Communicator("world")
    comm.all_reduce_sum(np.ones(2))  # both ranks are up
    if rank == 1:
        if kind == "raise":
            raise KeyError("planted")
        if kind == "exit":
            os._exit(3)
        time.sleep(60)  # stall: killed by the fixture
    if collective == "all_reduce":
        comm.all_reduce_sum(np.ones(2))
    else:
        comm.all_gather_rows(np.ones((2, 2)))


@pytest.mark.parametrize(
    "kind, collective",
    [("raise", "all_reduce"), ("exit", "all_gather"), ("stall", "all_reduce")],
)
def test_a_rank_that_fails_makes_the_other_raise_within_the_timeout(gloo_ranks, kind, collective):
    reports = gloo_ranks(_faulty, kind, collective, wait_for=[0], timeout=GROUP_TIMEOUT)
    survivor = reports[0]
    assert survivor["error"] == "RuntimeError", survivor
    assert (
        f"(torch.distributed.{collective} over 2 ranks, this is rank 0) failed"
        in (survivor["message"])
    )
    assert "raised, exited or stalled past the group's timeout" in survivor["message"]
    assert survivor["cause"] is not None  # the backend's error, chained
    assert survivor["elapsed"] < GROUP_TIMEOUT + SLACK
    if kind == "stall":  # the group's timeout ended the wait
        assert survivor["elapsed"] > 0.8 * GROUP_TIMEOUT


def test_resolve_process_group_refuses_what_is_not_a_group():
    assert resolve_process_group(None) is None
    with pytest.raises(TypeError, match="process_group must be None, 'world' or a torch"):
        resolve_process_group(3)
    with pytest.raises(ValueError, match="got 'everyone'"):
        resolve_process_group("everyone")
    import torch.distributed as dist

    if not dist.is_initialized():
        with pytest.raises(ValueError, match="init_process_group"):
            resolve_process_group("world")
    allowed = process_group_constraint()
    assert allowed[0] is None
    assert not allowed[2].is_satisfied_by(object())


class _Holder(ProcessGroupParamMixin):
    def __init__(self, process_group=None):
        self.process_group = process_group

    def get_params(self, deep=True):
        return {"process_group": self.process_group}

    def set_params(self, **params):
        self.__dict__.update(params)
        return self


def _clone_and_pickle(rank):
    import torch.distributed as dist
    from sklearn.base import clone

    group = dist.new_group([0, 1])
    holder = _Holder(group)
    copy = clone(holder)
    restored = pickle.loads(pickle.dumps(holder))
    world = pickle.loads(pickle.dumps(clone(_Holder("world"))))
    return copy.process_group is group, restored.process_group, world.process_group


def test_clone_shares_a_process_group_and_pickling_drops_it(gloo_ranks):
    for rep in gloo_ranks(_clone_and_pickle):
        assert rep["value"] == (True, None, "world"), rep


def _reduced_statistics(rank):
    from solvers.ridge import GramStatistics

    comm = Communicator("world")
    H = _rows(rank)
    T = _rows(rank + 2)[: H.shape[0], :2]
    w = np.linspace(0.5, 2.0, H.shape[0])
    local = GramStatistics().update(H, T, w, block_rows=2)
    total = local.all_reduce(comm)
    names = ("mean", "scatter", "cross", "target_mean", "target_scatter")
    return {k: getattr(total, k) for k in names}, total.weight_sum, total.n_samples, comm.bytes_sent


def test_gram_statistics_all_reduce_equals_the_statistics_of_the_concatenation(gloo_ranks):
    from solvers.ridge import GramStatistics

    H = np.concatenate([_rows(0), _rows(1)])
    T = np.concatenate([_rows(2)[:3, :2], _rows(3)[:5, :2]])
    w = np.concatenate([np.linspace(0.5, 2.0, 3), np.linspace(0.5, 2.0, 5)])
    one = GramStatistics().update(H, T, w)
    p, c = 4, 2
    for rep in gloo_ranks(_reduced_statistics):
        stats, weight_sum, n_samples, sent = rep["value"]
        for k, v in stats.items():
            np.testing.assert_allclose(v, getattr(one, k), rtol=0, atol=1e-13, err_msg=k)
        assert weight_sum == pytest.approx(one.weight_sum, abs=1e-13) and n_samples == 8
        # the empty-rank check (one int64), then (2 + p + c) and (p^2 + p c + c) float64
        assert sent == 8 + 8 * (2 + p + c) + 8 * (p * p + p * c + c)
