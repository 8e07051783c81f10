# SPDX-License-Identifier: BSD-3-Clause
"""No hangs across processes: a rank that fails makes the others raise, within the timeout.

Two gloo ranks on the loopback (``file://`` rendezvous, a process group
timeout of :data:`GROUP_TIMEOUT` seconds). Rank ``faulty`` raises, exits
(``os._exit``) or stalls (sleeps) in the middle of

- a DDP line-search step of :class:`solvers.torch.AdaSLS`, inside a trial
  forward: the survivor is averaging the trial's loss
  (:func:`solvers.torch.optim.trial.average_over_ranks`);
- a sparse controller's training, just before a mask update: the survivor is
  broadcasting or receiving the new masks
  (:func:`solvers.torch.sparse.distributed.broadcast_masks_`).

The survivor must raise a ``RuntimeError`` that says which collective failed
(the backend's error chained as its cause) within the group's timeout, and
leave its parameters (and masks) as they were before the failed step. Every
test is bounded by :data:`HARD_LIMIT`: a rank still running then is killed
and the test fails, so a regression cannot hang the suite. The ranks are
forked where the platform allows it (a few tenths of a second instead of
seconds of ``import torch`` per rank).
"""

import datetime
import json
import os
import re
import sys
import time

import pytest
import torch
from torch import nn

from solvers.torch import AdaSLS, DynamicSparsity

#: the process group's timeout, seconds: how long a survivor may wait for a stalled rank
GROUP_TIMEOUT = 3.0
#: outer bound of one test, seconds (rank start-up included)
HARD_LIMIT = 60.0
#: slack on top of GROUP_TIMEOUT for the survivor's error to surface
SLACK = 3.0


class Fault(Exception):
    """What the faulty rank raises."""


def fail(kind):
    """Raise, exit or stall, as the faulty rank does."""
    if kind == "raise":
        raise Fault("planted failure")
    if kind == "exit":
        os._exit(3)
    time.sleep(HARD_LIMIT)  # "stall": the test kills this rank at the end


def _init(rank, init_file):
    import torch.distributed as dist

    torch.set_num_threads(1)  # no OpenMP pool in a forked child
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=2,
        timeout=datetime.timedelta(seconds=GROUP_TIMEOUT),
    )


def _line_search_run(rank, faulty, kind, out):
    """DDP AdaSLS; the faulty rank fails in the first trial forward of step 3."""
    torch.manual_seed(0)
    model = nn.parallel.DistributedDataParallel(
        nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    )
    opt = AdaSLS(model.parameters(), n_batches_per_epoch=4)
    out["now"] = lambda: [p.detach().clone() for p in model.parameters()]
    g = torch.Generator().manual_seed(10 + rank)  # different data on each rank
    X, y = torch.randn(40, 8, generator=g), torch.randint(0, 3, (40,), generator=g)
    for step in range(5):
        xb, yb = X[step * 8 : (step + 1) * 8], y[step * 8 : (step + 1) * 8]
        calls = []

        def closure():
            calls.append(1)
            if rank == faulty and step == 3 and len(calls) == 2:
                fail(kind)
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            return loss

        out["before"] = out["now"]()
        out["start"] = time.monotonic()
        opt.step(closure)


def _sparse_run(rank, faulty, kind, out):
    """A sparse controller (masks updated every 2 steps) on a model trained locally.

    The model is not wrapped in DDP, so the mask broadcast is the first
    collective to meet the failure (with DDP, the gradient all-reduce would).
    The faulty rank fails before step 4, whose mask update the survivor reaches.
    """
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sparse = DynamicSparsity(model, opt, 0.3, grow="set", update_every=2, total_steps=8, seed=rank)
    out["now"] = lambda: [m.clone() for m in sparse.masks.values()]
    g = torch.Generator().manual_seed(10 + rank)
    X, y = torch.randn(48, 8, generator=g), torch.randint(0, 3, (48,), generator=g)
    for step in range(1, 7):
        if rank == faulty and step == 4:
            fail(kind)
        xb, yb = X[step * 6 : (step + 1) * 6], y[step * 6 : (step + 1) * 6]
        opt.zero_grad()
        nn.functional.cross_entropy(model(xb), yb).backward()
        out["before"] = out["now"]()
        out["start"] = time.monotonic()
        opt.step()


RUNS = {"line_search": _line_search_run, "sparse": _sparse_run}


def _rank(rank, run, faulty, kind, init_file, out_dir):
    """One rank: run, then write what happened to ``out_dir/rank<r>.json``."""
    _init(rank, init_file)
    out = {}
    report = {"error": None}
    try:
        RUNS[run](rank, faulty, kind, out)
    except Exception as err:
        cause = err.__cause__
        report = {
            "error": type(err).__name__,
            "message": str(err),
            "backend_cause": isinstance(cause, RuntimeError),
            "elapsed": time.monotonic() - out["start"],
            "unchanged": all(
                torch.equal(a, b) for a, b in zip(out["before"], out["now"](), strict=True)
            ),
        }
        if rank == faulty:  # it ends as an uncaught exception would: the process exits
            _write(out_dir, rank, report)
            raise
    _write(out_dir, rank, report)


def _write(out_dir, rank, report):
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(report, f)


def run_ranks(tmp_path, monkeypatch, run, faulty, kind):
    """Start both ranks, wait for the survivor (at most HARD_LIMIT s); its report.

    Whatever is still running at the end (the stalled rank, or a hung
    survivor) is killed; a survivor that did not finish fails the test.
    """
    import multiprocessing

    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("this torch build has no torch.distributed (some macOS/Windows wheels)")
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    if method == "fork":
        # DDP and the optimizers import torch._dynamo lazily, which takes seconds: once
        # here rather than in every forked rank (both ranks at once on two cores)
        import torch._dynamo  # noqa: F401
    ctx = multiprocessing.get_context(method)
    loopback = {"linux": "lo", "darwin": "lo0"}.get(sys.platform)
    if loopback:
        monkeypatch.setenv("GLOO_SOCKET_IFNAME", loopback)
    args = (run, faulty, kind, str(tmp_path / "init"), str(tmp_path))
    procs = [ctx.Process(target=_rank, args=(r, *args), daemon=True) for r in range(2)]
    try:
        for p in procs:
            p.start()
        survivor = procs[1 - faulty]
        survivor.join(HARD_LIMIT)
        hung = survivor.is_alive()
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
            p.join(5)
    if hung:
        pytest.fail(f"rank {1 - faulty} still waited {HARD_LIMIT} s after rank {faulty} {kind}")
    path = tmp_path / f"rank{1 - faulty}.json"
    assert path.exists(), f"rank {1 - faulty} died without a report (exit {survivor.exitcode})"
    return {
        r: json.loads((tmp_path / f"rank{r}.json").read_text())
        for r in range(2)
        if (tmp_path / f"rank{r}.json").exists()
    }


def check_survivor(report, match, kind):
    """A RuntimeError naming the collective, within the timeout, nothing changed."""
    assert report["error"] == "RuntimeError", report
    assert re.search(match, report["message"]), report["message"]
    assert report["backend_cause"], "the backend's error is not chained as the cause"
    assert report["elapsed"] < GROUP_TIMEOUT + SLACK, report
    if kind == "stall":  # the group's timeout ended the wait, not something else
        assert report["elapsed"] > 0.8 * GROUP_TIMEOUT, report
    assert report["unchanged"], "the failed step changed the survivor's state"


def check_faulty(reports, faulty, kind):
    """A rank that raised ends with its own exception, not a wrapped one."""
    if kind == "raise":
        assert reports[faulty]["error"] == "Fault", reports[faulty]


@pytest.mark.parametrize("kind", ["raise", "exit", "stall"])
def test_a_rank_failing_in_a_ddp_line_search_step_makes_the_other_raise(
    kind, tmp_path, monkeypatch
):
    reports = run_ranks(tmp_path, monkeypatch, "line_search", 1, kind)
    match = r"Averaging the line search's loss over 2 ranks \(torch\.distributed\.all_reduce\)"
    check_survivor(reports[0], match + " failed", kind)
    check_faulty(reports, 1, kind)


@pytest.mark.parametrize(
    "faulty, kind",
    [(1, "raise"), (0, "exit"), pytest.param(1, "stall", marks=pytest.mark.slow)],
    ids=["raise", "exit-of-the-source", "stall"],
)
def test_a_rank_failing_before_a_mask_update_makes_the_other_raise(
    faulty, kind, tmp_path, monkeypatch
):
    # rank 0 is the source of the broadcast: a survivor sending and one receiving
    reports = run_ranks(tmp_path, monkeypatch, "sparse", faulty, kind)
    match = r"Broadcasting the sparse masks from rank 0 \(torch\.distributed\.broadcast"
    check_survivor(reports[1 - faulty], match, kind)
    check_faulty(reports, faulty, kind)
