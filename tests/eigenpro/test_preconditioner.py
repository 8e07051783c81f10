# SPDX-License-Identifier: BSD-3-Clause
import numpy as np
import pytest

from eigenpro.kernels import Gaussian
from eigenpro.preconditioner import NystromPreconditioner, step_size_for_batch
from solvers._validation import InvalidParameterError
from solvers.backend import to_numpy

rng = np.random.default_rng(0)
X = rng.uniform(size=(400, 5))


def test_preconditioner_flattens_the_spectrum():
    K = Gaussian(0.3)(X)
    p = NystromPreconditioner(n_components=20).fit(K, n_train=len(X))
    lam = np.linalg.eigvalsh(K / len(X))[::-1]
    np.testing.assert_allclose(to_numpy(p.eigenvalues_), lam[:21], rtol=1e-8)
    # on the full data the preconditioned operator's top eigenvalue is lambda~_1
    V, VD = p._V, p._VD
    M = (K - K @ VD @ V.T @ K) / len(X)
    top = np.linalg.eigvalsh((M + M.T) / 2)[-1]
    assert top == pytest.approx(lam[0] ** 0.05 * lam[20] ** 0.95, rel=1e-6)
    assert p.preconditioned_eigenvalue_ == pytest.approx(top, rel=1e-6)


def test_step_size_rule():
    beta, lam = 1.0, 1e-3
    assert step_size_for_batch(100, beta, lam) == 100.0  # linear regime, m / beta
    m = 5000  # beyond the critical batch 1000
    assert step_size_for_batch(m, beta, lam) == pytest.approx(0.99 * 2 * m / (beta + (m - 1) * lam))
    assert step_size_for_batch(m, beta, lam) < 2 / lam


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"n_components": 400}, r"'n_components' parameter of NystromPreconditioner .* \[0, 399\]"),
        ({"n_components": -1}, "'n_components' parameter"),
        ({"n_components": 2.5}, "'n_components' parameter"),
        ({"damping": 0.0}, "'damping' parameter"),
        ({"damping": 1.5}, "'damping' parameter"),
    ],
)
def test_bad_parameters(params, match):
    K = Gaussian(0.3)(X)
    with pytest.raises(InvalidParameterError, match=match):
        NystromPreconditioner(**params).fit(K, n_train=len(X))


# -- issue 21: the mutants of eigenpro/preconditioner.py that survived ---------------------


def _reference(K, k, damping, alpha=0.0, n_train=None):
    """V, D of the module docstring, from numpy's eigh of K_SS / s (ridge shift included)."""
    s = K.shape[0]
    n_train = s if n_train is None else n_train
    lam, U = np.linalg.eigh(K)
    lam, U = lam[::-1] / s + alpha / n_train, U[:, ::-1]
    D = (1.0 - (lam[k] / lam[:k]) ** damping) / lam[:k]
    return U[:, :k] / np.sqrt(s), D, lam


def test_step_size_rule_at_the_critical_batch_and_with_beta():
    # m <= m* is linear (m / beta), including m = m* itself
    assert step_size_for_batch(500, 2.0, 4e-3) == 250.0
    assert step_size_for_batch(499, 2.0, 4e-3) == 249.5
    assert step_size_for_batch(501, 2.0, 4e-3) == pytest.approx(0.99 * 2 * 501 / (2.0 + 500 * 4e-3))


def test_correction_is_v_d_vt(backend):
    _xp, _device, to_xp = backend
    K = Gaussian(0.3)(X[:60])
    p = NystromPreconditioner(n_components=5, damping=0.8).fit(to_xp(K), n_train=1000, alpha=0.3)
    V, D, lam = _reference(K, 5, 0.8, alpha=0.3, n_train=1000)
    h = np.random.default_rng(1).standard_normal((60, 2))
    np.testing.assert_allclose(
        to_numpy(p.correction(to_xp(h))), V @ (D[:, None] * (V.T @ h)), atol=1e-10
    )
    np.testing.assert_allclose(to_numpy(p.eigenvalues_), lam[:6], rtol=1e-10)
    assert p.beta_ == pytest.approx(1.3)  # max k(x, x) = 1 plus alpha
    assert p.top_eigenvalue_ == pytest.approx(lam[0], rel=1e-12)
    assert p.preconditioned_eigenvalue_ == pytest.approx(lam[0] ** 0.2 * lam[5] ** 0.8, rel=1e-12)
    assert p.critical_batch_size_ == pytest.approx(1.3 / p.preconditioned_eigenvalue_, rel=1e-12)
    assert p.subsample_size_ == 60 and p.n_components_ == 5


def test_correction_dtype_defaults_to_the_kernel_matrix():
    K = Gaussian(0.3)(X[:40])
    p64 = NystromPreconditioner(n_components=3).fit(K, n_train=40)
    assert p64._V.dtype == np.float64 and p64._VD.dtype == np.float64
    p32 = NystromPreconditioner(n_components=3).fit(K.astype(np.float32), n_train=40)
    assert p32._V.dtype == np.float32 and p32._VD.dtype == np.float32
    asked = NystromPreconditioner(n_components=3).fit(K, n_train=40, dtype=np.float32)
    assert asked._V.dtype == np.float32 and asked._VD.dtype == np.float32


def test_no_components_and_one_point_subsamples():
    K = Gaussian(0.3)(X[:30])
    p = NystromPreconditioner(n_components=0).fit(K, n_train=30)
    assert p.correction(np.ones((30, 1))) is None
    # nothing flattened: lambda~_1 is lambda_1
    assert p.preconditioned_eigenvalue_ == pytest.approx(p.top_eigenvalue_, rel=1e-12)
    one = np.ones((1, 1))
    for n_components in (0, "auto"):
        p1 = NystromPreconditioner(n_components=n_components).fit(one, n_train=5)
        assert p1.n_components_ == 0 and p1.correction(np.ones((1, 1))) is None
    with pytest.raises(InvalidParameterError, match="'n_components' parameter"):
        NystromPreconditioner(n_components=1).fit(one, n_train=5)


def test_auto_picks_the_largest_k_whose_critical_batch_fits():
    K = Gaussian(0.3)(X[:200])
    beta = 1.0
    _, _, lam = _reference(K, 0, 0.95)
    tilde = lam[0] ** 0.05 * lam**0.95
    for cap in (5, 40, 10_000):
        p = NystromPreconditioner().fit(K, n_train=10_000, max_batch_size=cap)
        k = p.n_components_
        assert 1 <= k <= 50  # at most a quarter of the subsample
        if k > 1:
            assert beta / tilde[k] <= cap
        if k < 50:
            assert beta / tilde[k + 1] > cap
    # no max_batch_size: capped by n_train
    assert NystromPreconditioner().fit(K, n_train=40).n_components_ == (
        NystromPreconditioner().fit(K, n_train=10_000, max_batch_size=40).n_components_
    )
    # the quarter of the subsample is reached when the cap is loose
    assert NystromPreconditioner().fit(K, n_train=10**12).n_components_ == 50


def test_auto_keeps_one_direction_even_above_the_cap():
    # a huge bandwidth: K ~ all ones, critical batch ~ 1 without preconditioning
    K = Gaussian(100.0)(X[:20])
    p = NystromPreconditioner().fit(K, n_train=20, max_batch_size=1)
    assert p.n_components_ == 1
    assert p.critical_batch_size_ > 1


def test_numerically_zero_tail_is_floored_at_1e_12_of_the_top():
    K = np.ones((8, 8))  # rank one: lambda_1 = 1, the rest 0
    p = NystromPreconditioner(n_components=2, damping=1.0).fit(K, n_train=8)
    assert p.top_eigenvalue_ == pytest.approx(1.0, rel=1e-12)
    assert p.preconditioned_eigenvalue_ == pytest.approx(1e-12, rel=1e-6)
    assert np.all(np.isfinite(p._VD))


def test_zero_kernel_matrix_is_rejected():
    msg = (
        r"^The kernel matrix of the subsample has no positive eigenvalue: the bandwidth is too "
        r"small, or the kernel is degenerate \(or not positive semi-definite\) for this data\.$"
    )
    with pytest.raises(ValueError, match=msg):
        NystromPreconditioner(n_components=2).fit(np.zeros((6, 6)), n_train=6)
    # a ridge makes the same matrix usable
    p = NystromPreconditioner(n_components=2).fit(np.zeros((6, 6)), n_train=6, alpha=0.6)
    assert p.top_eigenvalue_ == pytest.approx(0.1)


def _held_out_reference(p, K_hh, K_hs, alpha, n_train):
    h = K_hh.shape[0]
    M = K_hh.copy()
    if p.n_components_:
        M -= (K_hs @ p._VD) @ (K_hs @ p._V).T
    M = (M + M.T) / 2
    np.fill_diagonal(M, 0.0)
    return np.linalg.eigvalsh(M)[-1] / max(h - 1, 1) + alpha / n_train


@pytest.mark.parametrize(
    ("h", "n_components"), [(1, 3), (2, 3), (3, 3), (13, 3), (37, 0), (37, 1), (37, 6)]
)
def test_calibrate_matches_the_dense_held_out_estimate(backend, h, n_components):
    _xp, _device, to_xp = backend
    Xs, Xh = X[:50], X[100 : 100 + h]
    kernel = Gaussian(0.3)
    p = NystromPreconditioner(n_components=n_components).fit(
        to_xp(kernel(Xs)), n_train=400, alpha=0.2
    )
    fitted = p.preconditioned_eigenvalue_
    K_hh, K_hs = kernel(Xh), kernel(Xh, Xs)
    p.calibrate(to_xp(K_hh), to_xp(K_hs), n_train=400, alpha=0.2)
    # the reference uses the stored float64 factors
    p_ref = NystromPreconditioner(n_components=n_components).fit(kernel(Xs), n_train=400, alpha=0.2)
    expected = _held_out_reference(p_ref, K_hh, K_hs, 0.2, 400)
    assert p.held_out_eigenvalue_ == pytest.approx(expected, rel=1e-10, abs=1e-15)
    assert p.preconditioned_eigenvalue_ == pytest.approx(max(fitted, expected), rel=1e-10)
    assert p.critical_batch_size_ == pytest.approx(p.beta_ / p.preconditioned_eigenvalue_)


def test_calibrate_raises_the_estimate_and_overwrite_works_in_place():
    kernel = Gaussian(0.3)
    Xs, Xh = X[:40], X[200:290]
    p = NystromPreconditioner(n_components=9).fit(kernel(Xs), n_train=400)
    fitted = p.preconditioned_eigenvalue_
    K_hh, K_hs = kernel(Xh), kernel(Xh, Xs)
    kept = K_hh.copy()
    p.calibrate(K_hh, K_hs, n_train=400)
    np.testing.assert_array_equal(K_hh, kept)  # not written to by default
    assert p.held_out_eigenvalue_ > fitted  # the subsample's estimate is optimistic
    assert p.preconditioned_eigenvalue_ == p.held_out_eigenvalue_
    assert p.critical_batch_size_ == pytest.approx(p.beta_ / p.held_out_eigenvalue_, rel=1e-12)
    first = p.held_out_eigenvalue_
    p.calibrate(K_hh, K_hs, n_train=400, overwrite=True)
    assert p.held_out_eigenvalue_ == pytest.approx(first, rel=1e-12)
    assert not np.array_equal(K_hh, kept)  # worked in K_hh
    # a held-out estimate below the fitted one is not kept
    q = NystromPreconditioner(n_components=0).fit(kernel(Xs), n_train=400)
    top = q.preconditioned_eigenvalue_
    q.calibrate(np.eye(3), np.zeros((3, 40)), n_train=400)
    assert q.held_out_eigenvalue_ == 0.0
    assert q.preconditioned_eigenvalue_ == top and q.critical_batch_size_ == pytest.approx(1 / top)


def test_auto_k_at_the_boundaries_of_the_cap():
    K = Gaussian(0.3)(X[:200])
    # a cap equal to the critical batch of k = 2 (as fit computes it) selects k = 2 exactly
    cap = NystromPreconditioner(n_components=2).fit(K, n_train=10_000).critical_batch_size_
    assert NystromPreconditioner().fit(K, n_train=10_000, max_batch_size=cap).n_components_ == 2
    # a cap between beta / lambda_1 and the critical batch of k = 1: still one direction
    K_flat = Gaussian(100.0)(X[:20])
    p = NystromPreconditioner().fit(K_flat, n_train=20, max_batch_size=2)
    assert p.beta_ / p.top_eigenvalue_ < 2 < p.critical_batch_size_
    assert p.n_components_ == 1
    # a two-point subsample may flatten its top direction
    two = NystromPreconditioner(n_components=1).fit(Gaussian(0.3)(X[:2]), n_train=2)
    assert two.n_components_ == 1
