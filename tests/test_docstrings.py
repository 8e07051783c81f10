# SPDX-License-Identifier: BSD-3-Clause
"""The ``Examples`` sections of the public classes run as written."""

import doctest

import pytest

import closedform.manifold_net
import closedform.stiefel_svc
import eigenpro.estimators
import solvers.stochastic

MODULES = [
    eigenpro.estimators,
    solvers.stochastic,
    closedform.stiefel_svc,
    closedform.manifold_net,
]
try:
    import solvers.torch.dynamic_sparsity
    import solvers.torch.line_search
    import solvers.torch.masks
    import solvers.torch.splitting
    import solvers.torch.ssgd

    MODULES += [
        solvers.torch.line_search,
        solvers.torch.masks,
        solvers.torch.dynamic_sparsity,
        solvers.torch.ssgd,
        solvers.torch.splitting,
    ]
except ImportError:  # torch is an optional dependency
    pass


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
