# SPDX-License-Identifier: BSD-3-Clause
import numpy as np
import pytest

from eigenpro.kernels import Gaussian, Laplacian, make_kernel
from eigenpro.training_matrix import (
    BatchProduct,
    PackedTrainingMatrix,
    StreamedTrainingMatrix,
    make_training_matrix,
    packed_bytes,
)
from solvers.backend import to_numpy

rng = np.random.default_rng(0)
X = rng.uniform(size=(300, 8))
KERNELS = [Gaussian(0.9), Laplacian(1.5), make_kernel(lambda A, B: (A @ B.T + 1) ** 2)]


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("block", [1, 37, 64, 300])
def test_training_matrices_return_exact_batch_products(backend, kernel, block):
    *_, to_xp = backend
    K = kernel(X)
    coef = rng.standard_normal((300, 2))
    s = 25
    packed = PackedTrainingMatrix(kernel, to_xp(X), block, s)
    streamed = StreamedTrainingMatrix(kernel, to_xp(X), block, s, memory_budget=300 * 8 * 3 * 5)
    assert streamed.chunk_rows == 5
    for tk in (packed, streamed):
        assert tk.blocks[0][0] == 0 and tk.blocks[-1][1] == 300
        for r, (a, b) in enumerate(tk.blocks):
            product = tk.batch_matmul(r, to_xp(coef))
            assert isinstance(product, BatchProduct)
            G, K_s = product
            np.testing.assert_allclose(to_numpy(G), K[a:b] @ coef, rtol=1e-6, atol=1e-9)
            np.testing.assert_allclose(to_numpy(K_s), K[a:b, :s], rtol=1e-9, atol=1e-7)
        F = to_numpy(tk.leading_matmul(100, to_xp(coef)))
        assert F.shape[0] >= 100
        np.testing.assert_allclose(F, K[: F.shape[0]] @ coef, rtol=1e-6, atol=1e-9)


def test_packed_matrix_stores_half_the_matrix():
    n, block, s = 3000, 100, 100
    need = packed_bytes(n, block, s, 4)
    assert need < 0.6 * n * n * 4
    tk = make_training_matrix(
        Gaussian(1.0),
        np.ones((n, 2), np.float32),
        block_size=block,
        n_subsample=s,
        memory_budget=need / 0.9 + 1,
    )
    assert isinstance(tk, PackedTrainingMatrix)
    assert sum(u.size for u in tk.upper) * 4 + tk.subsample_cols.size * 4 == need
    tk = make_training_matrix(
        Gaussian(1.0),
        np.ones((n, 2), np.float32),
        block_size=block,
        n_subsample=s,
        memory_budget=need,
    )
    assert isinstance(tk, StreamedTrainingMatrix)
    with pytest.raises(MemoryError, match="upper"):
        make_training_matrix(
            Gaussian(1.0),
            np.ones((n, 2)),
            block_size=block,
            n_subsample=s,
            memory_budget=10**6,
            precompute=True,
        )


def test_names_before_the_redesign_still_work():
    from eigenpro import training_kernel

    assert training_kernel.PackedKernel is PackedTrainingMatrix
    assert training_kernel.StreamedKernel is StreamedTrainingMatrix
    assert training_kernel.make_training_kernel is make_training_matrix
    assert training_kernel.packed_bytes is packed_bytes
    coef = rng.standard_normal((300, 2))
    tk = PackedTrainingMatrix(Gaussian(0.9), X, 64, 10)
    new, old = tk.batch_matmul(2, coef), tk.row_block(2, coef)
    np.testing.assert_array_equal(new.outputs, old[0])
    np.testing.assert_array_equal(tk.leading_matmul(70, coef), tk.rows_matmul(70, coef))
