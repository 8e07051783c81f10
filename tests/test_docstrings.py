# SPDX-License-Identifier: BSD-3-Clause
"""The ``Examples`` sections of the public classes run as written."""

import doctest

import pytest

import eigenpro.estimators


@pytest.mark.parametrize("module", [eigenpro.estimators])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
