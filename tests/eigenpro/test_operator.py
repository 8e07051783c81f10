# SPDX-License-Identifier: BSD-3-Clause
import numpy as np
import pytest

from eigenpro.kernels import Gaussian, Laplacian, make_kernel
from eigenpro.operator import KernelOperator
from solvers.backend import to_numpy

rng = np.random.default_rng(0)
X = rng.uniform(size=(300, 8))
Z = rng.uniform(size=(70, 8))
V = rng.standard_normal((70, 3))
KERNELS = [Gaussian(0.9), Laplacian(1.5), make_kernel(lambda A, B: (A @ B.T + 1) ** 2)]


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_operator_stored_and_blocked_agree_with_dense(backend, kernel):
    *_, to_xp = backend
    K = kernel(X, Z)
    stored = KernelOperator(kernel, to_xp(X), to_xp(Z), memory_budget=10**8, precompute=True)
    blocked = KernelOperator(kernel, to_xp(X), to_xp(Z), memory_budget=70 * 8 * 3 * 7)
    assert stored.precomputed and not blocked.precomputed and blocked.block_rows == 7
    # sqrt (Laplacian) turns a 1e-16 rounding of d^2 at d = 0 into 1e-8
    np.testing.assert_allclose(to_numpy(stored.matrix), K, rtol=1e-10, atol=1e-7)
    for op in (stored, blocked):
        np.testing.assert_allclose(to_numpy(op.matmul(to_xp(V))), K @ V, rtol=1e-6)
        np.testing.assert_allclose(to_numpy(op.matmul(to_xp(V[:, 0]))), K @ V[:, 0], rtol=1e-6)


def test_kernel_operator_precompute_beyond_budget_raises():
    with pytest.raises(MemoryError, match="kernel matrix needs"):
        KernelOperator(Gaussian(1.0), X, Z, memory_budget=1000, precompute=True)
