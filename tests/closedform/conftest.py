# SPDX-License-Identifier: BSD-3-Clause
"""Data shared by the closedform tests."""

import numpy as np
import pytest
from sklearn.datasets import load_digits, make_classification


def _problem(n=300, p=12, classes=3, seed=0):
    return make_classification(
        n_samples=n,
        n_features=p,
        n_informative=6,
        n_redundant=0,
        n_classes=classes,
        n_clusters_per_class=1,
        random_state=seed,
    )


@pytest.fixture
def make_problem():
    """``make_problem(n=300, p=12, classes=3, seed=0) -> (X, y)``: well separated classes."""
    return _problem


@pytest.fixture(scope="module")
def digits():
    """Digits scaled to [0, 1]: 1500 training rows, the rest for testing."""
    X, y = load_digits(return_X_y=True)
    return X[:1500] / 16, y[:1500], X[1500:] / 16, y[1500:]


class _ThreadGroup:
    """Ranks as threads of this process exchanging values through shared slots."""

    def __init__(self, world):
        import threading

        self.world = world
        self.barrier = threading.Barrier(world, timeout=30)
        self.slots = [None] * world


class ThreadRank:
    """One rank of a :class:`_ThreadGroup`: the collectives closedform uses, on NumPy arrays.

    Sums run in rank order, so every rank gets the same bits. Records the labels.
    """

    distributed = True

    def __init__(self, group, rank):
        self.group, self.rank, self.world_size = group, rank, group.world
        self.labels = []

    def _exchange(self, value, what):
        self.labels.append(what)
        g = self.group
        g.slots[self.rank] = value
        g.barrier.wait()
        values = list(g.slots)
        g.barrier.wait()
        return values

    def all_reduce_sum(self, value, what=""):
        values = self._exchange(value, what)
        total = values[0]
        for v in values[1:]:
            total = total + v
        return total

    def all_reduce_max(self, value, what=""):
        return max(self._exchange(value, what))

    def all_gather_rows(self, rows, what=""):
        return np.concatenate(self._exchange(np.asarray(rows), what))

    def row_counts(self, n_rows, what=""):
        return [int(v) for v in self._exchange(int(n_rows), what)]


@pytest.fixture
def thread_ranks():
    """``thread_ranks(work, parts)``: ``work(comm, part)`` on one thread per part, each with its
    rank of an in-process group (:class:`ThreadRank`); returns the results in rank order. A
    stand-in for a process group that mutation testing's single process can run."""
    from concurrent.futures import ThreadPoolExecutor

    def run(work, parts):
        group = _ThreadGroup(len(parts))

        def rank(r, part):
            try:
                return work(ThreadRank(group, r), part)
            except BaseException:
                group.barrier.abort()  # the other ranks raise instead of waiting
                raise

        with ThreadPoolExecutor(len(parts)) as pool:
            futures = [pool.submit(rank, r, part) for r, part in enumerate(parts)]
            return [f.result(timeout=60) for f in futures]

    return run
