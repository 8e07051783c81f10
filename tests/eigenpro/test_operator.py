# SPDX-License-Identifier: BSD-3-Clause
import numpy as np
import pytest

from eigenpro.kernels import Gaussian, Laplacian, make_kernel
from eigenpro.operator import KernelOperator
from eigenpro.training_kernel import (
    PackedKernel,
    StreamedKernel,
    make_training_kernel,
    packed_bytes,
)
from solvers.backend import to_numpy

rng = np.random.default_rng(0)
X = rng.uniform(size=(300, 8))
Z = rng.uniform(size=(70, 8))
V = rng.standard_normal((70, 3))
KERNELS = [Gaussian(0.9), Laplacian(1.5), make_kernel(lambda A, B: (A @ B.T + 1) ** 2)]


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_operator_stored_and_blocked_agree_with_dense(backend, kernel):
    xp, device, to_xp = backend
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


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("block", [1, 37, 64, 300])
def test_training_kernels_return_exact_row_blocks(backend, kernel, block):
    xp, device, to_xp = backend
    K = kernel(X)
    coef = rng.standard_normal((300, 2))
    s = 25
    packed = PackedKernel(kernel, to_xp(X), block, s)
    streamed = StreamedKernel(kernel, to_xp(X), block, s, memory_budget=300 * 8 * 3 * 5)
    assert streamed.chunk_rows == 5
    for tk in (packed, streamed):
        assert tk.blocks[0][0] == 0 and tk.blocks[-1][1] == 300
        for r, (a, b) in enumerate(tk.blocks):
            G, K_s = tk.row_block(r, to_xp(coef))
            np.testing.assert_allclose(to_numpy(G), K[a:b] @ coef, rtol=1e-6, atol=1e-9)
            np.testing.assert_allclose(to_numpy(K_s), K[a:b, :s], rtol=1e-9, atol=1e-7)
        F = to_numpy(tk.rows_matmul(100, to_xp(coef)))
        assert F.shape[0] >= 100
        np.testing.assert_allclose(F, K[: F.shape[0]] @ coef, rtol=1e-6, atol=1e-9)


def test_packed_kernel_stores_half_the_matrix():
    n, block, s = 3000, 100, 100
    need = packed_bytes(n, block, s, 4)
    assert need < 0.6 * n * n * 4
    tk = make_training_kernel(
        Gaussian(1.0),
        np.ones((n, 2), np.float32),
        block_size=block,
        n_subsample=s,
        memory_budget=need / 0.9 + 1,
    )
    assert isinstance(tk, PackedKernel)
    assert sum(u.size for u in tk.upper) * 4 + tk.subsample_cols.size * 4 == need
    tk = make_training_kernel(
        Gaussian(1.0),
        np.ones((n, 2), np.float32),
        block_size=block,
        n_subsample=s,
        memory_budget=need,
    )
    assert isinstance(tk, StreamedKernel)
    with pytest.raises(MemoryError, match="upper"):
        make_training_kernel(
            Gaussian(1.0),
            np.ones((n, 2)),
            block_size=block,
            n_subsample=s,
            memory_budget=10**6,
            precompute=True,
        )
