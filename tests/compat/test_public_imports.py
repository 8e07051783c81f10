# SPDX-License-Identifier: BSD-3-Clause
"""Every public name of the previous version imports from where it did.

``previous/public_api.json`` lists, for each module of the last version
before the issue-14 redesign, its ``__all__`` (or, without one, the public
names it defined); ``previous/module_names.json`` every public function,
class and constant defined at a module's top level. Modules that moved are
kept as re-export shims, so user code and pickles that name the old paths
keep working.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

PREVIOUS = Path(__file__).parent / "previous"
API = json.loads((PREVIOUS / "public_api.json").read_text())
#: every public function, class and constant each module defined at its top level
DEFINED = json.loads((PREVIOUS / "module_names.json").read_text())
PACKAGES = ("solvers", "eigenpro", "closedform")


@pytest.mark.parametrize("module", sorted(API))
def test_previous_names_import(module):
    mod = importlib.import_module(module)
    missing = [name for name in API[module] if not hasattr(mod, name)]
    assert not missing, f"{module} lost {missing}"


@pytest.mark.parametrize("module", sorted(DEFINED))
def test_previous_module_level_names_import(module):
    """Beyond ``__all__``: what a user could have imported from the module it was defined in."""
    mod = importlib.import_module(module)
    missing = [name for name in DEFINED[module] if not hasattr(mod, name)]
    assert not missing, f"{module} lost {missing}"


@pytest.mark.parametrize("package", PACKAGES)
def test_package_all_keeps_previous_names(package):
    mod = importlib.import_module(package)
    assert set(API[package]) <= set(mod.__all__)
    for name in mod.__all__:
        assert getattr(mod, name) is not None


@pytest.mark.parametrize("module", sorted(m for m in API if m.count(".") >= 1))
def test_reexported_names_are_the_package_objects(module):
    """A shim re-exports the canonical object, not a copy (isinstance and pickles agree)."""
    mod = importlib.import_module(module)
    package = importlib.import_module(module.split(".")[0])
    for name in API[module]:
        if name in getattr(package, "__all__", ()):
            assert getattr(mod, name) is getattr(package, name), f"{module}.{name}"
