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
