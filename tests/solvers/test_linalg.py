# SPDX-License-Identifier: BSD-3-Clause
import numpy as np
import pytest

from solvers.backend import to_numpy
from solvers.linalg import blocked_matmul, top_eigensystem


def _psd(n, rank=None, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, rank or n))
    return A @ A.T / n


def test_top_eigensystem_matches_numpy(backend):
    _xp, _device, to_xp = backend
    A = _psd(30)
    values, vectors = top_eigensystem(to_xp(A), 5)
    values, vectors = to_numpy(values), to_numpy(vectors)
    ref = np.linalg.eigvalsh(A)[::-1][:5]
    np.testing.assert_allclose(values, ref, rtol=1e-10)
    assert np.all(np.diff(values) <= 0)
    # eigen-equation and orthonormality
    np.testing.assert_allclose(A @ vectors, vectors * values, atol=1e-10)
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(5), atol=1e-10)


def test_top_eigensystem_float32_input_is_solved_in_float64(backend):
    _xp, _device, to_xp = backend
    A = _psd(40, rank=5).astype(np.float32)  # rank-deficient: tail is ~0
    values, _ = top_eigensystem(to_xp(A), 40)
    values = to_numpy(values)
    assert values.dtype == np.float64
    assert np.all(values >= 0)  # rounding negatives are clipped
    np.testing.assert_allclose(
        values[:5], np.linalg.eigvalsh(A.astype(np.float64))[::-1][:5], rtol=1e-5
    )


def test_top_eigensystem_rejects_bad_input():
    with pytest.raises(ValueError, match="square"):
        top_eigensystem(np.ones((3, 4)))
    with pytest.raises(ValueError, match="n_components"):
        top_eigensystem(np.eye(3), 4)


@pytest.mark.parametrize("block_rows", [1, 3, 7, 100])
def test_blocked_matmul_equals_dense(backend, block_rows):
    _xp, _device, to_xp = backend
    rng = np.random.default_rng(1)
    M = rng.standard_normal((17, 6))
    V = rng.standard_normal((6, 2))
    Mx = to_xp(M)
    calls = []

    def rows(a, b):
        calls.append(b - a)
        return Mx[a:b, :]

    out = blocked_matmul(rows, 17, to_xp(V), block_rows)
    np.testing.assert_allclose(to_numpy(out), M @ V, rtol=1e-12)
    assert max(calls) <= block_rows and sum(calls) == 17
    vec = blocked_matmul(rows, 17, to_xp(V[:, 0]), block_rows)
    np.testing.assert_allclose(to_numpy(vec), M @ V[:, 0], rtol=1e-12)


def test_top_eigensystem_rejects_non_finite_input():
    A = np.eye(4)
    A[1, 2] = np.nan
    with pytest.raises(FloatingPointError, match="NaN or infinite"):
        top_eigensystem(A)


def test_top_eigensystem_recovers_from_a_failed_lapack_run(monkeypatch):
    import array_api_compat.numpy as cnp

    A = _psd(12)
    real = cnp.linalg.eigh

    def broken(M):
        w, V = real(M)
        V = V.copy()
        V[0, 0] = np.nan
        return w, V

    monkeypatch.setattr(cnp.linalg, "eigh", broken)
    values, vectors = top_eigensystem(A, 3)
    np.testing.assert_allclose(values, np.linalg.eigvalsh(A)[::-1][:3], rtol=1e-10)
    # the recovered vectors are the eigenvectors of those values, orthonormal
    # (measured residuals 2e-15 with eigenvalues ~1-3)
    np.testing.assert_allclose(A @ vectors, vectors * values, atol=1e-14)
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(3), atol=1e-14)
