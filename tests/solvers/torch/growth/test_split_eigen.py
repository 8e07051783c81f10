# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch.growth.split_eigen: exact and Lanczos eigenpairs."""

import torch

from solvers.torch.growth.split_eigen import exact_eigen, lanczos_eigen


def test_lanczos_matches_the_exact_eigenpairs():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(400, 50, generator=g, dtype=torch.float64)
    C = torch.randn(400, 6, generator=g, dtype=torch.float64)
    exact, lanczos = exact_eigen(X, C, 400), lanczos_eigen(X, C, 400, 50, 0)
    torch.testing.assert_close(lanczos.lambda_min, exact.lambda_min)
    torch.testing.assert_close(lanczos.lambda_max, exact.lambda_max)
    overlap = (lanczos.v_min * exact.v_min).sum(1).abs()
    torch.testing.assert_close(overlap, torch.ones(6, dtype=torch.float64))
