# SPDX-License-Identifier: BSD-3-Clause
"""Peak memory of EigenPro against its ``memory_budget``, measured (issue 17).

On 2000 points the training kernel matrix (32 MB in float64) is 16 times the
2 MB budget, and so is the prediction matrix ``K(X_new, centres)``. The bound
is ``1.1 (budget + inputs)``: NumPy allocations traced by tracemalloc in this
process, and the peak resident set (VmHWM) of a fresh process, which also
sees LAPACK workspaces and allocator slack (``RESIDENT_SLACK`` on top). What
the budget covers is written in :mod:`solvers.backend`.
"""

import numpy as np
import pytest

from eigenpro import EigenProClassifier, EigenProRegressor
from eigenpro.kernels import Gaussian
from eigenpro.preconditioner import NystromPreconditioner
from eigenpro.solver import eigenpro_solve
from eigenpro.training_matrix import StreamedTrainingMatrix, packed_bytes
from solvers.backend import MemoryPeak

BUDGET = 2 * 10**6
N, D = 2000, 20
#: The fresh process's data: 3000 points, an 8 MB budget (the kernel matrix is
#: 9 times that), and the resident-set allowance beyond the bound: page
#: granularity, the allocator's per-thread arenas, OpenBLAS's buffers.
RESIDENT_N, RESIDENT_BUDGET = 3000, 8 * 10**6
RESIDENT_SLACK = 2**20

#: The solver's own path: a fixed bandwidth and penalty (no model selection).
FIXED = {"bandwidth": 3.0, "alpha": 0.0}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, D))
    y = np.sin(X[:, 0]) + 0.1 * X[:, 1]
    labels = (X[:, 0] > 0).astype(int) + (X[:, 1] > 1)
    X_new = rng.standard_normal((N, D))
    assert N * N * 8 >= 15 * BUDGET  # the kernel matrices are many times the budget
    return X, y, labels, X_new


def bound(*inputs, budget=BUDGET):
    return 1.1 * (budget + sum(a.nbytes for a in inputs))


def traced(fn):
    with MemoryPeak(trace=True) as peak:
        fn()
    return peak.traced


FITS = {
    "regressor": lambda X, y, labels: EigenProRegressor(
        n_epochs=1, memory_budget=BUDGET, random_state=0, **FIXED
    ).fit(X, y),
    "classifier": lambda X, y, labels: EigenProClassifier(
        n_epochs=1, memory_budget=BUDGET, random_state=0, **FIXED
    ).fit(X, labels),
    "eigenpro_solve": lambda X, y, labels: eigenpro_solve(
        "gaussian", X, y, n_epochs=1, memory_budget=BUDGET, random_state=0
    ),
}


@pytest.mark.parametrize("fit", FITS.values(), ids=FITS.keys())
def test_fit_traced_peak_within_budget_plus_inputs(data, fit):
    X, y, labels, _ = data
    assert traced(lambda: fit(X, y, labels)) <= bound(X, y)


@pytest.mark.parametrize("make", [EigenProRegressor, EigenProClassifier])
def test_fit_with_the_default_bandwidth_and_alpha_within_budget_plus_inputs(data, make):
    X, y, labels, _ = data
    est = make(n_epochs=1, memory_budget=BUDGET, random_state=0)
    target = y if make is EigenProRegressor else labels
    assert traced(lambda: est.fit(X, target)) <= bound(X, y)


def test_fit_on_a_stored_training_matrix_stays_within_budget_plus_inputs():
    # n = 1000 and s = 100: the packed upper triangle (5.2 MB) fits 90 % of 6 MB
    rng = np.random.default_rng(1)
    X = rng.standard_normal((1000, D))
    y = X[:, 0] ** 2
    budget = 6_000_000
    est = EigenProRegressor(
        n_epochs=1, subsample_size=100, batch_size=100, memory_budget=budget, **FIXED
    )
    assert packed_bytes(1000, 100, 100, 8) <= 0.9 * budget < 1000 * 1000 * 8
    peak = traced(lambda: est.fit(X, y))
    assert est.timings_ and peak <= 1.1 * (budget + X.nbytes + y.nbytes)


@pytest.mark.parametrize("make", [EigenProRegressor, EigenProClassifier])
def test_predict_traced_peak_within_budget_plus_inputs(data, make):
    X, y, labels, X_new = data
    est = make(n_epochs=1, memory_budget=BUDGET, random_state=0, **FIXED).fit(
        X, y if make is EigenProRegressor else labels
    )
    assert traced(lambda: est.predict(X_new)) <= bound(X_new)


def test_streamed_batch_holds_one_chunk_of_kernel_rows(data):
    # one chunk of K(X_batch, X) at a time, plus the batch's subsample columns
    X = data[0]
    matrix = StreamedTrainingMatrix(Gaussian(3.0), X, 400, 200, BUDGET)
    coef = np.ones((N, 1))
    rows = matrix.chunk_rows
    assert rows < 400
    own = (rows * N + 400 * 200 + 400) * 8
    for r in range(2):
        assert traced(lambda r=r: matrix.batch_matmul(r, coef)) <= 1.1 * own


@pytest.mark.parametrize("overwrite", [False, True])
def test_calibration_holds_one_or_no_copy_of_the_held_out_matrix(overwrite):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((600, 10))
    kernel = Gaussian(3.0)
    K_hh, K_hs = kernel(X[300:]), kernel(X[300:], X[:300])
    precond = NystromPreconditioner(n_components=60).fit(kernel(X[:300]), n_train=600)
    h, k = 300, 60
    # the eigensolver's copy, (P, PD) and the row blocks' temporaries; plus M unless overwritten
    own = (h * h * (1 if overwrite else 2) + 2 * h * k + 3 * h * h / 8) * 8
    peak = traced(lambda: precond.calibrate(K_hh, K_hs, n_train=600, overwrite=overwrite))
    assert peak <= 1.1 * own


def test_calibration_is_the_same_with_and_without_overwrite():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((400, 6))
    kernel = Gaussian(2.0)
    precond = NystromPreconditioner(n_components=20).fit(kernel(X[:200]), n_train=400)
    K_hh = kernel(X[200:])
    a = precond.calibrate(K_hh.copy(), kernel(X[200:], X[:200]), n_train=400)
    a = a.held_out_eigenvalue_
    b = precond.calibrate(K_hh, kernel(X[200:], X[:200]), n_train=400, overwrite=True)
    assert b.held_out_eigenvalue_ == a
    # the reference: the symmetrised, diagonal-free matrix in one piece
    P, PD = kernel(X[200:], X[:200]) @ precond._V, kernel(X[200:], X[:200]) @ precond._VD
    M = kernel(X[200:]) - PD @ P.T
    M = (M + M.T) / 2
    np.fill_diagonal(M, 0.0)
    np.testing.assert_allclose(a, np.linalg.eigvalsh(M).max() / 199, rtol=1e-12)


RESIDENT_SCRIPT = """
import json, numpy as np
from eigenpro import EigenProRegressor
from solvers.backend import MemoryPeak

rng = np.random.default_rng(0)
X = rng.standard_normal(({n}, {d}))
y = np.sin(X[:, 0]) + 0.1 * X[:, 1]
X_new = rng.standard_normal(({n}, {d}))
# warm-up on 300 points: BLAS, LAPACK and the thread pool start their buffers
EigenProRegressor(n_epochs=1, memory_budget={budget}).fit(X[:300], y[:300]).predict(X_new[:300])
est = EigenProRegressor(n_epochs=1, memory_budget={budget}, random_state=0)
with MemoryPeak() as default_fit:
    est.fit(X, y)
est = EigenProRegressor(n_epochs=1, memory_budget={budget}, random_state=0, **{fixed})
with MemoryPeak() as fit:
    est.fit(X, y)
with MemoryPeak() as predict:
    est.predict(X_new)
peaks = {{"default_fit": default_fit.resident, "fit": fit.resident, "predict": predict.resident}}
print(json.dumps(peaks))
"""


@pytest.fixture(scope="module")
def resident(fresh_process_peaks):
    """Peak resident-set increase of fit and predict in a fresh process (bytes)."""
    script = RESIDENT_SCRIPT.format(n=RESIDENT_N, d=D, budget=RESIDENT_BUDGET, fixed=FIXED)
    return fresh_process_peaks(script, "fit")


def test_fit_peak_resident_set_within_budget_plus_inputs(resident):
    inputs = np.empty(RESIDENT_N * (D + 1))  # X and y
    assert resident["fit"] <= bound(inputs, budget=RESIDENT_BUDGET) + RESIDENT_SLACK


def test_default_fit_peak_resident_set_within_budget_plus_inputs(resident):
    inputs = np.empty(RESIDENT_N * (D + 1))
    assert resident["default_fit"] <= bound(inputs, budget=RESIDENT_BUDGET) + RESIDENT_SLACK


def test_predict_peak_resident_set_within_budget_plus_inputs(resident):
    inputs = np.empty((RESIDENT_N, D))  # X_new
    assert resident["predict"] <= bound(inputs, budget=RESIDENT_BUDGET) + RESIDENT_SLACK


def test_memory_peak_sees_an_array_of_known_size():
    # the instrument itself: 8 MB allocated and freed inside, 1 MB kept outside
    kept = np.ones(2**17)
    with MemoryPeak(trace=True) as peak:
        np.ones(2**20).sum()
    assert 2**23 <= peak.traced <= 2**23 + 2**16 and kept.size
    with MemoryPeak() as peak:
        np.ones(2**21).sum()  # 16 MB touched
    if peak.resident is not None:
        assert 2**24 - 2**20 <= peak.resident <= 2**24 + 2**22
