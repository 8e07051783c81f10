# SPDX-License-Identifier: BSD-3-Clause
"""The ``Examples`` sections of the library run as written.

Every module of the three packages is collected (a moved module is found at
its new place without editing this file); the main public classes must carry
an example.
"""

import doctest
import importlib
import pkgutil

import pytest

import closedform
import eigenpro
import solvers
import solvers.torch


def library_modules():
    names = []
    for package in (solvers, eigenpro, closedform):
        names.append(package.__name__)
        prefix = package.__name__ + "."
        names += [info.name for info in pkgutil.walk_packages(package.__path__, prefix)]
    return sorted(names)


MODULES = library_modules()

WITH_EXAMPLES = [
    "eigenpro.EigenProClassifier",
    "eigenpro.EigenProRegressor",
    "closedform.ManifoldNetClassifier",
    "closedform.StiefelSVC",
    "solvers.minimize",
    "solvers.torch.AdaSLS",
    "solvers.torch.StaticSparsity",
    "solvers.torch.DynamicSparsity",
    "solvers.torch.SSGD",
    "solvers.torch.NeuronSplitting",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


@pytest.mark.parametrize("qualname", WITH_EXAMPLES)
def test_public_classes_have_examples(qualname):
    module, name = qualname.rsplit(".", 1)
    obj = getattr(importlib.import_module(module), name)
    tests = doctest.DocTestFinder(recurse=False).find(obj, name)
    assert tests and tests[0].examples, f"{qualname} has no runnable example"
