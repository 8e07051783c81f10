# SPDX-License-Identifier: BSD-3-Clause
import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.gaussian_process.kernels import Matern as SkMatern
from sklearn.metrics.pairwise import rbf_kernel

from eigenpro.kernels import (
    Cauchy,
    Gaussian,
    Kernel,
    Laplacian,
    Matern,
    check_kernel_diagonal,
    make_kernel,
    rms_distance,
)
from solvers.backend import to_numpy

rng = np.random.default_rng(0)
X = rng.uniform(size=(40, 6))
Z = rng.uniform(size=(25, 6))
S = 0.7


def reference(name):
    d = cdist(X, Z)
    return {
        "gaussian": rbf_kernel(X, Z, gamma=1 / (2 * S**2)),
        "laplacian": np.exp(-d / S),
        "cauchy": 1 / (1 + d**2 / S**2),
        "matern32": SkMatern(length_scale=S, nu=1.5)(X, Z),
        "matern52": SkMatern(length_scale=S, nu=2.5)(X, Z),
    }[name]


@pytest.mark.parametrize("name", ["gaussian", "laplacian", "cauchy", "matern32", "matern52"])
def test_kernels_match_references(backend, name):
    *_, to_xp = backend
    K = make_kernel(name, S)(to_xp(X), to_xp(Z))
    np.testing.assert_allclose(to_numpy(K), reference(name), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kernel", [Gaussian(2.0), Laplacian(2.0), Cauchy(2.0), Matern(2.0, 2.5)])
def test_diagonal_is_exact_despite_cancellation(kernel):
    # Far from the origin |x|^2 + |z|^2 - 2 x.z cancels badly; the clamp keeps
    # the squared distance >= 0 so k(x, x) stays <= 1 and close to 1.
    Xf = (rng.uniform(size=(50, 30)) + 100.0).astype(np.float32)
    K = kernel(Xf)
    assert np.all(np.isfinite(K))
    assert np.all(K <= 1.0 + 1e-6)
    np.testing.assert_allclose(np.diag(K), 1.0, atol=2e-2)


def test_block_into_strided_output_view():
    big = np.full((40, 60), -1.0)
    Gaussian(S).block(X, Z, out=big[:, 10:35])
    np.testing.assert_allclose(big[:, 10:35], reference("gaussian"), rtol=1e-12)
    assert np.all(big[:, :10] == -1) and np.all(big[:, 35:] == -1)


def test_rms_distance_identity():
    d2 = cdist(X, X, "sqeuclidean")
    n = len(X)
    # mean over ordered pairs i != j of |x_i - x_j|^2 = 2 n/(n-1) sum_j Var X_j
    expected = np.sqrt(d2.sum() / (n * (n - 1)) * (n - 1) / n)
    assert rms_distance(X) == pytest.approx(expected, rel=1e-12)


def test_default_bandwidths_follow_documented_multiples():
    r = rms_distance(X)
    assert Gaussian().default_bandwidth(X) == pytest.approx(r / 2)
    assert Laplacian().default_bandwidth(X) == pytest.approx(r)
    assert Gaussian().default_bandwidth(np.ones((5, 3))) == 1.0  # constant data


def test_make_kernel_errors_and_callables():
    with pytest.raises(ValueError, match="Unknown kernel 'polynomial'"):
        make_kernel("polynomial")
    with pytest.raises(ValueError, match="kernel must be"):
        make_kernel(3.5)
    for bad in (0, -1.0, float("inf"), float("nan"), True):
        with pytest.raises(
            ValueError, match="'bandwidth' parameter of Gaussian must be a float in the range"
        ):
            Gaussian(bad)
        with pytest.raises(ValueError, match="'bandwidth' parameter of Laplacian must be"):
            Laplacian().with_bandwidth(bad)
    with pytest.raises(ValueError, match="'nu' parameter of Matern must be"):
        Matern(1.0, nu=3)
    k = make_kernel(lambda A, B: (A @ B.T + 1.0) ** 2)
    assert isinstance(k, Kernel)
    np.testing.assert_allclose(k(X, Z), (X @ Z.T + 1.0) ** 2)
    wrong = make_kernel(lambda A, B: A @ A.T)
    with pytest.raises(ValueError, match="returned shape"):
        wrong(X, Z)
    # a Kernel instance without bandwidth takes the given one; with one, keeps it
    assert make_kernel(Gaussian(), 3.0).bandwidth == 3.0
    assert make_kernel(Gaussian(2.0), 3.0).bandwidth == 2.0
    assert Gaussian(2.0) == Gaussian(2.0) and Gaussian(2.0) != Laplacian(2.0)
    assert repr(Matern(1.0, 2.5)) == "Matern(bandwidth=1.0, nu=2.5)"


@pytest.mark.parametrize("settings", [{"bandwidth": 1.0, "alpha": 0.0}, {}], ids=["given", "auto"])
def test_a_kernel_that_is_not_psd_is_named_as_such(settings):
    # issue 17: it used to be reported as "the bandwidth is too small" (given settings) or
    # as a divergence after 30 step halvings with a negative step (bandwidth/alpha "auto")
    from eigenpro import EigenProRegressor

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 3)), rng.normal(size=60)

    def negative(A, B):
        return -np.exp(-np.sum((A[:, None] - B[None]) ** 2, axis=-1))

    with pytest.raises(ValueError, match="not positive semi-definite"):
        EigenProRegressor(negative, n_epochs=1, random_state=0, **settings).fit(X, y)
    with pytest.raises(ValueError, match="not positive semi-definite"):
        check_kernel_diagonal(np.array([1.0, 0.0, -1e-3]))
    check_kernel_diagonal(np.array([1.0, 0.0]))  # a zero diagonal is allowed
