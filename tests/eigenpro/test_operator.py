# SPDX-License-Identifier: BSD-3-Clause
import numpy as np
import pytest

from eigenpro.kernels import Gaussian, Laplacian, make_kernel
from eigenpro.operator import KernelOperator
from solvers.backend import to_numpy

rng = np.random.default_rng(0)
X = rng.uniform(size=(300, 8))
V = rng.standard_normal((300, 3))


@pytest.mark.parametrize("kernel", [Gaussian(0.9), Laplacian(1.5), make_kernel(lambda A, B: (A @ B.T + 1) ** 2)])
def test_stored_and_blocked_operators_agree_with_dense(backend, kernel):
    xp, device, to_xp = backend
    K = kernel(X)
    Xx, Vx = to_xp(X), to_xp(V)
    stored = KernelOperator(kernel, Xx, memory_budget=10**8, precompute=True)
    # a budget of a few rows forces many small blocks
    blocked = KernelOperator(kernel, Xx, memory_budget=300 * 8 * 2 * 7, precompute="auto")
    assert stored.precomputed and not blocked.precomputed
    assert blocked.block_rows == 7
    # sqrt (Laplacian) turns a 1e-16 rounding of d^2 at d = 0 into 1e-8
    np.testing.assert_allclose(to_numpy(stored.matrix), K, rtol=1e-10, atol=1e-7)
    for op in (stored, blocked):
        np.testing.assert_allclose(to_numpy(op.matmul(Vx)), K @ V, rtol=1e-6)
        idx = np.array([3, 10, 11, 200, 299])
        np.testing.assert_allclose(to_numpy(op.matmul(Vx, to_xp(idx))), K[idx] @ V, rtol=1e-6)
        seen = 0
        for start, stop, block in op.row_blocks(to_xp(idx)):
            np.testing.assert_allclose(to_numpy(block), K[idx[start:stop]], rtol=1e-10, atol=1e-7)
            seen += stop - start
        assert seen == len(idx)


def test_symmetric_precompute_is_exactly_symmetric_and_matches_rectangular():
    k = Gaussian(0.7)
    Xl = rng.uniform(size=(2500, 5))  # more than one precompute block and mirror tile
    K = KernelOperator(k, Xl, memory_budget=10**9, precompute=True).matrix
    np.testing.assert_allclose(K, K.T, rtol=0, atol=1e-15)  # GEMM rounding only
    K_rect = KernelOperator(k, Xl, Xl.copy(), memory_budget=10**9, precompute=True).matrix
    np.testing.assert_allclose(K, K_rect, rtol=1e-12, atol=1e-14)


def test_precompute_true_beyond_budget_raises():
    with pytest.raises(MemoryError, match="kernel matrix needs"):
        KernelOperator(Gaussian(1.0), X, memory_budget=1000, precompute=True)


def test_rectangular_operator_for_prediction():
    Z = rng.uniform(size=(50, 8))
    op = KernelOperator(Gaussian(0.9), Z, X, memory_budget=8 * 300 * 2 * 4, precompute=False)
    assert op.block_rows == 4
    np.testing.assert_allclose(op.matmul(V), Gaussian(0.9)(Z, X) @ V, rtol=1e-10)
