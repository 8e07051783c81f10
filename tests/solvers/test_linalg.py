# SPDX-License-Identifier: BSD-3-Clause
import numpy as np
import pytest

from solvers.backend import to_numpy
from solvers.linalg import (
    blocked_matmul,
    check_squares_summable,
    cho_solve,
    cholesky,
    cholesky_threads,
    generalized_procrustes,
    polar,
    solve_triangular,
    stiefel_quadratic,
    top_eigensystem,
    weighted_moments,
)


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
    with pytest.raises(
        FloatingPointError, match=r"^top_eigensystem: the matrix has NaN or infinite"
    ) as e:
        top_eigensystem(A)
    assert str(e.value).endswith("(for a kernel matrix: check the kernel function and the data).")


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


# -- the rest of the module (issue 21: the mutants of solvers/linalg.py that survived) --


def test_top_eigensystem_defaults_to_all_pairs_and_clips_negative_values(backend):
    _xp, _device, to_xp = backend
    # eigenvalues 3, 1, -2 (an indefinite symmetric matrix: the tail is clipped at 0)
    Q = np.linalg.qr(np.random.default_rng(3).standard_normal((3, 3)))[0]
    A = Q @ np.diag([3.0, 1.0, -2.0]) @ Q.T
    values, vectors = top_eigensystem(to_xp(A))
    np.testing.assert_allclose(to_numpy(values), [3.0, 1.0, 0.0], atol=1e-12)
    assert tuple(vectors.shape) == (3, 3)
    # the pairs stay matched after the flip: column j spans the j-th eigenvector
    np.testing.assert_allclose(np.abs(to_numpy(vectors).T @ Q), np.eye(3), atol=1e-12)
    empty, basis = top_eigensystem(to_xp(A), 0)
    assert tuple(empty.shape) == (0,) and tuple(basis.shape) == (3, 0)


def test_top_eigensystem_uses_the_symmetric_part():
    rng = np.random.default_rng(4)
    S = _psd(6)
    K = rng.standard_normal((6, 6))
    values, _ = top_eigensystem(S + (K - K.T), 2)  # a skew part changes nothing
    np.testing.assert_allclose(values, np.linalg.eigvalsh(S)[::-1][:2], rtol=1e-12)


def test_blocked_matmul_writes_into_out_and_treats_small_blocks_as_one_row():
    rng = np.random.default_rng(5)
    M, V = rng.standard_normal((5, 3)), rng.standard_normal((3, 2))
    out = np.full((5, 2), np.nan)
    sizes = []

    def rows(a, b):
        sizes.append(b - a)
        return M[a:b]

    assert blocked_matmul(rows, 5, V, 0, out=out) is out
    np.testing.assert_allclose(out, M @ V, rtol=1e-12)
    assert sizes == [1] * 5


def test_check_squares_summable_threshold_is_sqrt_max_over_terms():
    limit = np.sqrt(np.finfo(np.float64).max / 4)
    check_squares_summable(np.array([[0.99 * limit, -0.99 * limit]]), "X", 4)
    for bad in (1.01 * limit, -1.01 * limit):  # the largest magnitude, of either sign
        with pytest.raises(ValueError, match=r"X holds values too large: max \|X\|.*4 squares"):
            check_squares_summable(np.array([[bad, 0.0]]), "X", 4)
    # terms below 1 count as one square; empty arrays pass
    check_squares_summable(np.array([0.99 * np.sqrt(np.finfo(np.float64).max)]), "X", 0)
    with pytest.raises(ValueError, match="too large"):
        check_squares_summable(np.array([1.01 * np.sqrt(np.finfo(np.float64).max)]), "X", 0)
    check_squares_summable(np.empty((0, 3)), "X", 4)
    check_squares_summable(np.empty((3, 0)), "X", 4)
    # float32's own maximum
    limit32 = np.sqrt(float(np.finfo(np.float32).max) / 10)
    with pytest.raises(ValueError, match="float32"):
        check_squares_summable(np.array([1.01 * limit32], dtype=np.float32), "X", 10)


@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("transpose", [False, True])
def test_solve_triangular_matches_the_dense_solve(backend, lower, transpose):
    _xp, _device, to_xp = backend
    rng = np.random.default_rng(6)
    T = rng.standard_normal((5, 5)) + 5.0 * np.eye(5)
    T = np.tril(T) if lower else np.triu(T)
    B = rng.standard_normal((5, 2))
    X = to_numpy(solve_triangular(to_xp(T), to_xp(B), lower=lower, transpose=transpose))
    np.testing.assert_allclose((T.T if transpose else T) @ X, B, atol=1e-12)


def test_cholesky_and_cho_solve(backend):
    _xp, _device, to_xp = backend
    G = _psd(7) + 0.1 * np.eye(7)
    B = np.random.default_rng(7).standard_normal((7, 3))
    L = cholesky(to_xp(G))
    np.testing.assert_allclose(to_numpy(L), np.linalg.cholesky(G), rtol=1e-12)
    np.testing.assert_allclose(G @ to_numpy(cho_solve(L, to_xp(B))), B, atol=1e-10)


def test_cholesky_retries_with_the_jitter_of_the_trace():
    # rank 2 of 4: LAPACK's factorisation fails; the retry factors G + jitter tr(G)/p I
    v = np.random.default_rng(8).standard_normal((4, 2))
    G = v @ v.T
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.cholesky(G)
    L = cholesky(G, jitter=1e-6)
    shift = 1e-6 * np.trace(G) / 4
    np.testing.assert_allclose(L @ L.T, G + shift * np.eye(4), atol=1e-12)
    np.testing.assert_allclose(L, np.linalg.cholesky(G + shift * np.eye(4)), atol=1e-9)


def _blas_threads():
    from threadpoolctl import threadpool_info

    return [m["num_threads"] for m in threadpool_info() if m["user_api"] == "blas"]


@pytest.mark.parametrize("retry", [False, True])
def test_large_numpy_factorisations_run_on_one_blas_thread(monkeypatch, retry):
    """OpenBLAS's threaded dpotrf crashes from p ~ 16000: above THREADED_CHOLESKY_MAX (made 5
    here) both the factorisation and its retry run on one BLAS thread; smaller ones and torch
    keep the threads they had."""
    from threadpoolctl import threadpool_limits

    from solvers import linalg

    seen, factor = [], np.linalg.cholesky

    def recorded(G):
        seen.append((G.shape[0], _blas_threads()))
        if retry and len(seen) == 1:
            raise np.linalg.LinAlgError("not positive definite")
        return factor(G)

    monkeypatch.setattr(np.linalg, "cholesky", recorded)
    monkeypatch.setattr(linalg, "THREADED_CHOLESKY_MAX", 5)
    with threadpool_limits(limits=2, user_api="blas"):  # two threads even under OMP_NUM_THREADS=1
        before = _blas_threads()
        assert set(before) == {2}
        for p in (5, 6):
            G = _psd(p) + np.eye(p)
            np.testing.assert_allclose(cholesky(G), factor(G), rtol=1e-8)
        assert [p for p, _ in seen] == ([5, 5, 6] if retry else [5, 6])
        assert [threads for p, threads in seen if p == 5] == [before] * (1 + retry)
        assert [set(threads) for p, threads in seen if p == 6] == [{1}]
        assert _blas_threads() == before
        with cholesky_threads(np, 6):
            assert set(_blas_threads()) == {1}
        with cholesky_threads(pytest.importorskip("torch"), 10**6):
            assert _blas_threads() == before


def test_polar_is_the_orthogonal_factor(backend):
    _xp, _device, to_xp = backend
    rng = np.random.default_rng(9)
    Q = np.linalg.qr(rng.standard_normal((6, 3)))[0]
    S = _psd(3) + np.eye(3)  # symmetric positive definite
    # A = Q S is a polar decomposition, so polar(A) = Q exactly
    np.testing.assert_allclose(to_numpy(polar(to_xp(Q @ S))), Q, atol=1e-12)


def test_generalized_procrustes_value_is_the_nuclear_norm(backend):
    _xp, _device, to_xp = backend
    rng = np.random.default_rng(10)
    G = _psd(6) + 0.2 * np.eye(6)
    C = rng.standard_normal((6, 2))
    L = np.linalg.cholesky(G)
    W = to_numpy(generalized_procrustes(to_xp(L), to_xp(C)))
    np.testing.assert_allclose(W.T @ G @ W, np.eye(2), atol=1e-10)
    # max tr(Q^T L^-1 C) over Q^T Q = I is the nuclear norm of L^-1 C
    nuclear = np.linalg.svd(np.linalg.solve(L, C), compute_uv=False).sum()
    np.testing.assert_allclose(np.trace(W.T @ C), nuclear, rtol=1e-12)


def test_stiefel_quadratic_with_no_linear_term_finds_the_smallest_eigenspace():
    # min tr(W^T A W) on W^T W = I is the sum of the c smallest eigenvalues (Ky Fan)
    rng = np.random.default_rng(11)
    Q = np.linalg.qr(rng.standard_normal((6, 6)))[0]
    lam = np.array([5.0, 4.0, 3.0, 2.0, 0.5, -1.0])
    A = Q @ np.diag(lam) @ Q.T
    W0 = np.linalg.qr(rng.standard_normal((6, 2)))[0]
    W, objectives = stiefel_quadratic(A, np.zeros((6, 2)), W0, max_iter=2000, tol=1e-14)
    np.testing.assert_allclose(W.T @ W, np.eye(2), atol=1e-12)
    assert objectives[-1] == pytest.approx(-0.5, abs=1e-9)
    assert objectives[-1] == pytest.approx(np.trace(W.T @ A @ W), rel=1e-12)
    assert 1 < len(objectives) < 2000  # stopped by tol, not by max_iter
    # an explicit eta (an upper bound on lambda_max) reaches the same minimum
    _, obj_eta = stiefel_quadratic(A, np.zeros((6, 2)), W0, max_iter=2000, tol=1e-14, eta=6.0)
    assert obj_eta[-1] == pytest.approx(-0.5, abs=1e-9)
    with pytest.raises(ValueError, match="p >= c"):
        stiefel_quadratic(np.eye(2), np.ones((2, 3)))


def test_stiefel_quadratic_stops_on_the_relative_decrease():
    rng = np.random.default_rng(12)
    M = rng.standard_normal((20, 8))
    A, B = M.T @ M, rng.standard_normal((8, 3))
    _, loose = stiefel_quadratic(A, B, max_iter=500, tol=1e-3)
    _, tight = stiefel_quadratic(A, B, max_iter=500, tol=1e-12)
    assert len(loose) < len(tight) < 500
    eta = np.linalg.eigvalsh(A).max() * (1 + 1e-12) + 1e-300
    scale = eta * 3 + np.abs(B).sum()
    # every decrease but the last is above tol * scale
    drops = -np.diff(loose)
    assert np.all(drops[:-1] > 1e-3 * scale) and drops[-1] <= 1e-3 * scale


def test_weighted_moments_match_the_weighted_formulas(backend):
    _xp, _device, to_xp = backend
    rng = np.random.default_rng(13)
    H = rng.standard_normal((11, 3)) + 2.0
    w = rng.uniform(0.1, 2.0, size=11)
    mean, G = weighted_moments(to_xp(H), to_xp(w), block_rows=4)
    ref_mean = w @ H / w.sum()
    ref_G = (H - ref_mean).T @ ((H - ref_mean) * w[:, None]) / w.sum()
    np.testing.assert_allclose(to_numpy(mean), ref_mean, rtol=1e-12)
    np.testing.assert_allclose(to_numpy(G), ref_G, rtol=1e-12)
    mean_u, G_u = weighted_moments(H, None)
    np.testing.assert_allclose(G_u, np.cov(H.T, bias=True), rtol=1e-12)
    np.testing.assert_allclose(mean_u, H.mean(axis=0), rtol=1e-12)


def test_weighted_moments_over_ranks_are_those_of_all_their_rows(twin_ranks):
    """Two ranks with the same rows and half the weight each: the moments of the rows (the
    weights sum to one over the ranks), through the statistics' all-reduce."""
    rng = np.random.default_rng(14)
    H = rng.standard_normal((9, 3)) + 1.0
    w = rng.uniform(0.1, 2.0, size=9)
    w /= w.sum()
    comm = twin_ranks
    mean, G = weighted_moments(H, w / 2, block_rows=4, comm=comm)
    ref_mean, ref_G = weighted_moments(H, w)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-12)
    np.testing.assert_allclose(G, ref_G, rtol=1e-12)
    assert comm.labels == [
        "Checking the Gram statistics",
        "Summing the Gram statistics' means",
        "Summing the Gram statistics",
    ]


@pytest.mark.parametrize("broken_part", ["values", "vectors"])
def test_top_eigensystem_retries_when_either_output_of_eigh_is_not_finite(
    monkeypatch, caplog, broken_part
):
    import array_api_compat.numpy as cnp

    A = _psd(8)
    real = cnp.linalg.eigh

    def broken(M):
        w, V = real(M)
        w, V = w.copy(), V.copy()
        if broken_part == "values":
            w[-1] = np.nan  # the largest eigenvalue, which is returned
        else:
            V[0, -1] = np.nan  # in the top eigenvector, which is returned
        return w, V

    with caplog.at_level("WARNING", logger="solvers"):
        values, vectors = top_eigensystem(A, 2)  # no failure: no retry, no warning
    assert not caplog.records
    monkeypatch.setattr(cnp.linalg, "eigh", broken)
    with caplog.at_level("WARNING", logger="solvers"):
        values_r, vectors_r = top_eigensystem(A, 2)
    assert [r.getMessage() for r in caplog.records] == [
        "eigh returned non-finite values; retrying with scipy driver 'ev'"
    ]
    np.testing.assert_allclose(values_r, values, rtol=1e-12)
    np.testing.assert_allclose(np.abs(vectors_r.T @ vectors), np.eye(2), atol=1e-12)


@pytest.mark.parametrize("broken_part", ["values", "vectors"])
def test_top_eigensystem_raises_when_the_retry_fails_too(monkeypatch, broken_part):
    import array_api_compat.numpy as cnp
    import scipy.linalg

    def nan_eigh(M, **kwargs):
        w, V = np.linalg.eigh(M)
        w, V = w.copy(), V.copy()
        if broken_part == "values":
            w[-1] = np.nan
        else:
            V[0, -1] = np.nan
        return w, V

    monkeypatch.setattr(cnp.linalg, "eigh", nan_eigh)
    monkeypatch.setattr(scipy.linalg, "eigh", nan_eigh)
    with pytest.raises(
        FloatingPointError, match=r"^top_eigensystem: the eigensolver returned non-finite values\.$"
    ):
        top_eigensystem(_psd(5), 2)


def test_linalg_edge_cases_and_messages():
    # the threshold itself passes (strict inequality)
    limit = float(np.sqrt(np.finfo(np.float64).max / 4))
    check_squares_summable(np.array([limit]), "X", 4)
    # square problems are allowed: p = c for GPI, as many features as outputs for Procrustes
    W, _ = stiefel_quadratic(np.diag([1.0, 2.0]), np.eye(2), max_iter=3)
    np.testing.assert_allclose(W.T @ W, np.eye(2), atol=1e-12)
    G = _psd(3) + np.eye(3)
    W = generalized_procrustes(np.linalg.cholesky(G), np.eye(3))
    np.testing.assert_allclose(W.T @ G @ W, np.eye(3), atol=1e-10)
    with pytest.raises(
        ValueError,
        match=r"^The Stiefel constraint W\^T G W = I needs at least as many features as outputs; "
        r"got 2 features for 3 outputs\.$",
    ):
        generalized_procrustes(np.eye(2), np.ones((2, 3)))
    with pytest.raises(
        FloatingPointError,
        match=r"^The Gram matrix is not positive definite \(NaN/inf in the data, or a ridge "
        r"penalty of 0 on rank-deficient features\); use a positive alpha\.$",
    ):
        cholesky(-np.eye(3))
    # the jitter retry keeps float32
    v = np.random.default_rng(14).standard_normal((4, 2)).astype(np.float32)
    assert cholesky(v @ v.T, jitter=1e-3).dtype == np.float32


def test_stiefel_quadratic_one_step_is_the_gpi_update():
    # eta defaults to lambda_max(A) (here 0.3 < 1): W1 = polar(2 (eta I - A) W0 + 2 B)
    rng = np.random.default_rng(15)
    Q = np.linalg.qr(rng.standard_normal((5, 5)))[0]
    A = Q @ np.diag([0.3, 0.2, 0.1, -0.1, -0.4]) @ Q.T
    B = rng.standard_normal((5, 2))
    W0 = np.linalg.qr(rng.standard_normal((5, 2)))[0]
    W1, objectives = stiefel_quadratic(A, B, W0, max_iter=1)
    np.testing.assert_allclose(W1, polar(2.0 * (0.3 * np.eye(5) - A) @ W0 + 2.0 * B), atol=1e-10)
    assert len(objectives) == 1
    expected = np.trace(W1.T @ A @ W1) - 2.0 * np.trace(W1.T @ B)
    assert objectives[0] == pytest.approx(expected, rel=1e-12)


def test_defaults_of_the_remedy_and_of_gpi():
    with pytest.raises(ValueError, match=r"overflows float64; scale them\.$"):
        check_squares_summable(np.array([1e300]), "X", 4)
    rng = np.random.default_rng(16)
    M = rng.standard_normal((20, 6))
    A, B = M.T @ M, rng.standard_normal((6, 2))
    # tol=0 runs the default 200 iterations; the default tol (1e-10 of the scale) stops earlier
    # than a loose 1e-3 would, and later than nothing
    assert len(stiefel_quadratic(A, B, tol=0.0)[1]) == 200
    default = len(stiefel_quadratic(A, B)[1])
    assert len(stiefel_quadratic(A, B, tol=1e-3)[1]) < default < 200
