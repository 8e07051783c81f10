# SPDX-License-Identifier: BSD-3-Clause
"""Shared test configuration.

scikit-learn's array-API mode needs ``SCIPY_ARRAY_API=1`` before SciPy is
imported, so it is set here, first. Tests marked ``gpu`` are skipped unless a
CUDA device is visible to torch or CuPy.
"""

import os

os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np
import pytest
from hypothesis import settings

# Hypothesis profiles of the property tests (tests/**/test_properties.py):
# "default" keeps the suite fast and deterministic (derandomize: the same
# examples on every run, so CI never flakes on a new draw); HYPOTHESIS_PROFILE=slow
# runs 300 examples per property.
settings.register_profile("default", max_examples=25, deadline=None, derandomize=True)
settings.register_profile("slow", max_examples=300, deadline=None, derandomize=True)
settings.load_profile("slow" if os.environ.get("HYPOTHESIS_PROFILE") == "slow" else "default")


@pytest.fixture(scope="session")
def plant():
    """``plant(X, value, dtype=None) -> X``: a property test's planted value, in place.

    ``X`` is a 2-D float64 NumPy array or torch tensor. ``None`` leaves it as
    it is, ``"constant"`` makes its first column constant, ``"dup"`` repeats
    its first row, a number (NaN, inf, 1e300, 1e-300...) goes to the middle
    row's last column. ``dtype`` (NumPy) casts afterwards: 1e300 becomes inf
    in float32.
    """

    def apply(X, value, dtype=None):
        if isinstance(value, str):
            if value == "constant":
                X[:, 0] = 2.0
            elif value == "dup":
                X[1:] = X[0]
        elif value is not None:
            X[X.shape[0] // 2, X.shape[1] - 1] = value
        if dtype is not None:
            with np.errstate(over="ignore"):
                X = X.astype(dtype)
        return X

    return apply


@pytest.fixture(scope="session")
def attribute_bytes():
    """``attribute_bytes(obj) -> dict``: every attribute of ``obj``, bit for bit.

    NumPy arrays as (dtype, shape, bytes), everything else pickled (its repr
    when it does not pickle): a failed call must leave this unchanged.
    """
    import pickle

    def snapshot(obj):
        out = {}
        for k, v in sorted(vars(obj).items()):
            if isinstance(v, np.ndarray):
                out[k] = (v.dtype.str, v.shape, v.tobytes())
            else:
                try:
                    out[k] = pickle.dumps(v)
                except Exception:
                    out[k] = repr(v)
        return out

    return snapshot


def cuda_available():
    try:
        import torch

        if torch.cuda.is_available():
            return True
    except ImportError:
        pass
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    if cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none is visible")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def namespaces():
    """(name, xp, device) for every array library available on this machine."""
    import array_api_compat

    out = [("numpy", array_api_compat.array_namespace(np.empty(0)), "cpu")]
    try:
        import array_api_strict

        out.append(("array_api_strict", array_api_strict, None))
    except ImportError:
        pass
    try:
        import torch

        out.append(("torch-cpu", array_api_compat.array_namespace(torch.empty(0)), "cpu"))
        out.append(
            pytest.param(
                ("torch-cuda", array_api_compat.array_namespace(torch.empty(0)), "cuda"),
                marks=pytest.mark.gpu,
            )
        )
    except ImportError:
        pass
    try:
        import cupy

        out.append(
            pytest.param(
                ("cupy", array_api_compat.array_namespace(cupy.empty(0)), None),
                marks=pytest.mark.gpu,
            )
        )
    except ImportError:
        pass
    return out


@pytest.fixture(params=namespaces(), ids=lambda p: p[0])
def backend(request):
    """An (xp, device, to_xp) triple; ``to_xp(a)`` moves a NumPy array there."""
    name, xp, device = request.param

    def to_xp(a):
        if name == "torch-cuda":
            import torch

            return torch.as_tensor(a, device="cuda")
        if name == "array_api_strict":
            return xp.asarray(a)
        return xp.asarray(a, device=device) if device is not None else xp.asarray(a)

    return xp, device, to_xp


@pytest.fixture(scope="session")
def fresh_process_peaks():
    """``fresh_process_peaks(script, probe)``: the JSON dict a script prints last, run alone.

    The script runs in a fresh Python process with the repository on its path
    (peak resident sets are per process); the test is skipped when the
    ``probe`` entry is None (the peak cannot be reset on this system).
    """
    import json
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def run(script, probe):
        path = os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])
        out = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "PYTHONPATH": path},
        )
        assert out.returncode == 0, out.stderr
        peaks = json.loads(out.stdout.strip().splitlines()[-1])
        if peaks[probe] is None:
            pytest.skip("the peak resident set cannot be reset here (/proc/self/clear_refs)")
        return peaks

    return run


#: the gloo process group's default timeout in ``gloo_ranks`` (seconds): how long a rank waits
#: for another (tests of stalls rely on it); tests that only compare results may pass a
#: generous ``timeout=``, so that a rank starved of CPU on a loaded machine is not taken for
#: a stalled one
GLOO_TIMEOUT = 3.0


def _gloo_rank(rank, world_size, init_file, out_dir, timeout, target, args):
    """One rank of ``gloo_ranks``: join the group, run ``target``, pickle what happened."""
    import datetime
    import pickle
    import time

    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)  # no OpenMP pool in a forked child
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=timeout),
    )
    start = time.monotonic()
    try:
        report = {"value": target(rank, *args), "error": None}
    except Exception as err:
        report = {
            "error": type(err).__name__,
            "message": str(err),
            "cause": type(err.__cause__).__name__ if err.__cause__ is not None else None,
        }
    report["elapsed"] = time.monotonic() - start
    with open(os.path.join(out_dir, f"rank{rank}.pkl"), "wb") as f:
        pickle.dump(report, f)


@pytest.fixture
def gloo_ranks(tmp_path, monkeypatch):
    """``gloo_ranks(target, *args, wait_for=None, timeout=None) -> list``: run on 2 gloo ranks.

    Each rank is a forked process (the test is skipped where fork or
    ``torch.distributed`` is missing) that joins a gloo group on the loopback
    (``file://`` rendezvous, ``timeout`` seconds, :data:`GLOO_TIMEOUT` when
    None) and calls
    ``target(rank, *args)``. Returns one report per rank (None for a rank
    that left none, e.g. one that exited): ``{"value", "error", "elapsed"}``,
    with ``"message"`` and ``"cause"`` (the chained exception's type name)
    when ``target`` raised. The ranks in ``wait_for`` (default: all) get
    ``hard_limit`` seconds; every rank still running then is killed, and a
    waited-for rank that had not finished fails the test: nothing can hang.
    """
    import multiprocessing
    import pickle
    import sys

    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        pytest.skip("torch is not installed")
    if not dist.is_available():
        pytest.skip("this torch build has no torch.distributed")
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("the ranks are forked (their targets live in test modules)")
    loopback = {"linux": "lo", "darwin": "lo0"}.get(sys.platform)
    if loopback:
        monkeypatch.setenv("GLOO_SOCKET_IFNAME", loopback)
    counter = iter(range(1000))

    def run(target, *args, world_size=2, wait_for=None, hard_limit=120.0, timeout=None):
        ctx = multiprocessing.get_context("fork")
        out = tmp_path / f"run{next(counter)}"
        out.mkdir()
        timeout = GLOO_TIMEOUT if timeout is None else timeout
        common = (world_size, str(out / "init"), str(out), timeout, target, args)
        procs = [
            ctx.Process(target=_gloo_rank, args=(r, *common), daemon=True)
            for r in range(world_size)
        ]
        waited = range(world_size) if wait_for is None else wait_for
        try:
            for p in procs:
                p.start()
            for r in waited:
                procs[r].join(hard_limit)
            hung = [r for r in waited if procs[r].is_alive()]
        finally:
            for p in procs:
                if p.is_alive():
                    p.kill()
                p.join(5)
        if hung:
            pytest.fail(f"rank(s) {hung} still running after {hard_limit} s")
        reports = []
        for r in range(world_size):
            path = out / f"rank{r}.pkl"
            reports.append(pickle.loads(path.read_bytes()) if path.exists() else None)
        return reports

    return run


@pytest.fixture
def one_rank_group(tmp_path):
    """A gloo process group of this process alone (``group.WORLD``): the distributed code
    paths, in-process."""
    dist = pytest.importorskip("torch.distributed")
    if dist.is_initialized():
        pytest.skip("a process group is already initialised")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        yield dist.group.WORLD
    finally:
        dist.destroy_process_group()


class TwinRanks:
    """A stand-in process group of two ranks that hold the same rows: sums double and a
    gather returns the rows twice. Records each collective's label in ``labels``."""

    distributed = True

    def __init__(self):
        self.labels = []

    def all_reduce_sum(self, value, what=""):
        self.labels.append(what)
        return 2 * value

    def all_gather_rows(self, rows, what=""):
        self.labels.append(what)
        return np.concatenate([rows, rows])


@pytest.fixture
def twin_ranks():
    """A fresh :class:`TwinRanks`."""
    return TwinRanks()
