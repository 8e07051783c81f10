# SPDX-License-Identifier: BSD-3-Clause
"""Peak memory of the closed-form estimators against ``memory_budget``, measured (issue 17).

The budget bounds the row blocks of the Gram, cross-moment and prediction
passes; the data (a float64 ``n x p`` feature matrix 4.6 times the 2 MB
budget here, or ``n x width`` activations) are the closed-form analogue of a
kernel matrix. The bound is ``1.1 (budget + inputs)``: NumPy allocations
traced by tracemalloc in this process, and the peak resident set (VmHWM) of a
fresh process with ``RESIDENT_SLACK`` for allocator slack and library
buffers. What the budget covers is written in :mod:`solvers.backend`.
"""

import numpy as np
import pytest

from closedform import ManifoldNetClassifier, StiefelSVC
from solvers.backend import MemoryPeak

BUDGET = 2 * 10**6
RESIDENT_SLACK = 2**20

NETWORK_HOLDS_ACTIVATIONS = pytest.mark.xfail(
    strict=True,
    reason=(
        "issue 17 (by design): the layerwise fit holds the n x width activations, their "
        "new values and the pulled-back targets of every hidden layer whole; the budget "
        "bounds only the row blocks of its Gram and cross-moment passes (a fit within it "
        "needs blocked forward/backward sweeps in closedform/_base.py and network.py)"
    ),
)


def traced(fn):
    with MemoryPeak(trace=True) as peak:
        fn()
    return peak.traced


def bound(*inputs, extra=0):
    return 1.1 * (BUDGET + sum(a.nbytes for a in inputs) + extra)


@pytest.fixture(scope="module")
def features():
    """3000 x 400 float64 features (9.2 MB) and three classes."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3000, 400))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    assert X.nbytes > 4 * BUDGET
    return X, y


@pytest.fixture(scope="module")
def network_data():
    """2000 x 30 inputs for a network of 400 units: 6.4 MB of activations per layer."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((2000, 30))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    return X, y


def activations(X, widths):
    """The per-sample arrays the network fit holds: 4 per hidden unit and sample.

    (The current and the new activations, the pulled-back targets and their
    pre-activations; plus four ``width x width`` Gram-sized matrices per layer.)
    """
    n = X.shape[0]
    return 4 * 8 * (n * sum(widths) + sum(w * w for w in widths))


@pytest.mark.parametrize("adaptive", [False, True])
def test_stiefel_svc_fit_traced_peak_within_budget_plus_inputs(features, adaptive):
    X, y = features
    est = StiefelSVC(memory_budget=BUDGET, adaptive_weights=adaptive, keep_ratio=0.9)
    assert traced(lambda: est.fit(X, y)) <= bound(X, y)


def test_stiefel_svc_fit_beyond_one_copy_of_x_stays_within_budget(features):
    # what the fit allocates besides its one float64 copy of X: blocks and p x p matrices
    X, y = features
    p = X.shape[1]
    peak = traced(lambda: StiefelSVC(memory_budget=BUDGET).fit(X, y))
    assert peak - X.nbytes <= 1.1 * (BUDGET + 3 * p * p * 8)


@NETWORK_HOLDS_ACTIVATIONS
def test_manifold_net_fit_traced_peak_within_budget_plus_inputs(network_data):
    X, y = network_data
    est = ManifoldNetClassifier((400,), max_iter=2, memory_budget=BUDGET, random_state=0)
    assert traced(lambda: est.fit(X, y)) <= bound(X, y)


@pytest.mark.parametrize("widths", [(400,), (200, 200)])
def test_manifold_net_fit_traced_peak_within_budget_inputs_and_activations(network_data, widths):
    X, y = network_data
    est = ManifoldNetClassifier(widths, max_iter=2, memory_budget=BUDGET, random_state=0)
    assert traced(lambda: est.fit(X, y)) <= bound(X, y, extra=activations(X, widths))


def test_manifold_net_predict_traced_peak_within_budget_plus_inputs(network_data):
    X, y = network_data
    est = ManifoldNetClassifier((400,), max_iter=1, memory_budget=BUDGET, random_state=0)
    est.fit(X, y)
    assert X.shape[0] * 400 * 8 > 3 * BUDGET  # the activations are several budgets
    assert traced(lambda: est.predict(X)) <= bound(X)


RESIDENT_SCRIPT = """
import json, numpy as np
from closedform import ManifoldNetClassifier, StiefelSVC
from solvers.backend import MemoryPeak

rng = np.random.default_rng(0)
X = rng.standard_normal((3000, 400))
y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
Z = rng.standard_normal((2000, 30))
# warm-up: BLAS, LAPACK and the thread pool start their buffers
StiefelSVC(memory_budget={budget}).fit(X[:300], y[:300])
net = ManifoldNetClassifier((400,), max_iter=1, memory_budget={budget}, random_state=0)
net.fit(Z, y[:2000]).predict(Z[:300])
with MemoryPeak() as svc:
    StiefelSVC(memory_budget={budget}).fit(X, y)
with MemoryPeak() as predict:
    net.predict(Z)
print(json.dumps({{"svc_fit": svc.resident, "net_predict": predict.resident}}))
"""


@pytest.fixture(scope="module")
def resident(fresh_process_peaks):
    """Peak resident-set increases in a fresh process (bytes)."""
    return fresh_process_peaks(RESIDENT_SCRIPT.format(budget=BUDGET), "svc_fit")


def test_stiefel_svc_fit_peak_resident_set_within_budget_plus_inputs(resident):
    inputs = np.empty(3000 * 401)  # X and y
    assert resident["svc_fit"] <= bound(inputs) + RESIDENT_SLACK


def test_manifold_net_predict_peak_resident_set_within_budget_plus_inputs(resident):
    inputs = np.empty((2000, 30))
    assert resident["net_predict"] <= bound(inputs) + RESIDENT_SLACK
