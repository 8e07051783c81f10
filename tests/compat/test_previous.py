# SPDX-License-Identifier: BSD-3-Clause
"""What the previous version saved keeps loading and computing the same.

The fixtures in ``previous/`` were written by ``make_previous.py`` with the
last commit before the issue-14 redesign: pickled fitted estimators with their
outputs, and optimizer / sparse-controller ``state_dict``s with the parameters
a few steps later. Loading them here and continuing must reproduce those
outputs and parameters.
"""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

HERE = Path(__file__).parent
PREVIOUS = HERE / "previous"


def _maker():
    spec = importlib.util.spec_from_file_location("make_previous", HERE / "make_previous.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make = _maker()

#: The fixtures were computed on one machine; another CPU's BLAS kernels may sum in another
#: order. In float64 that moves results by ~1e-16 per operation, far below these tolerances,
#: while any change of algorithm, state layout or step decision moves them by much more.
RTOL, ATOL = 1e-9, 1e-12


def assert_same_parameters(params, expected):
    for p, e in zip(params, expected, strict=True):
        torch.testing.assert_close(p.detach(), e, rtol=RTOL, atol=ATOL)


ESTIMATORS = [name for name, _, _ in make.estimators()]


@pytest.mark.parametrize("name", ESTIMATORS)
def test_pickled_estimator_predicts_as_before(name):
    outputs = np.load(PREVIOUS / "estimator_outputs.npz")
    est = pickle.loads((PREVIOUS / f"{name}.pkl").read_bytes())
    X_test = outputs["X_test"]
    compared = 0
    for method in make.OUTPUT_METHODS:
        key = f"{name}.{method}"
        if key in outputs:
            got = np.asarray(getattr(est, method)(X_test))
            if got.dtype.kind == "f":
                np.testing.assert_allclose(got, outputs[key], rtol=RTOL, atol=ATOL)
            else:
                np.testing.assert_array_equal(got, outputs[key])
            compared += 1
    assert compared >= 1


@pytest.mark.parametrize("name", ESTIMATORS)
def test_pickled_estimator_refits(name):
    """A loaded estimator is a working estimator: it refits to the same model as a new one."""
    from sklearn.base import clone

    est = pickle.loads((PREVIOUS / f"{name}.pkl").read_bytes())
    X, y, X_test = make.digits()
    kind = dict((n, k) for n, _, k in make.estimators())[name]
    target = y if kind == "labels" else np.column_stack([y / 9.0, X[:, 20]])
    fresh = clone(est).fit(X, target)
    est.fit(X, target)
    np.testing.assert_allclose(est.predict(X_test), fresh.predict(X_test), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", sorted(make.optimizers()))
def test_optimizer_state_dict_resumes_as_before(name):
    saved = torch.load(PREVIOUS / f"optimizer_{name}.pt")
    model = make.torch_model()
    opt = make.optimizers()[name](model.parameters())
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["opt"])
    X, y = make.torch_problem()
    make.train_optimizer(model, opt, X, y, 5, 5)
    assert_same_parameters(model.parameters(), saved["expected"])


@pytest.mark.parametrize("name", sorted(make.controllers()))
def test_controller_state_dict_resumes_as_before(name):
    saved = torch.load(PREVIOUS / f"controller_{name}.pt")
    model = make.torch_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ctrl = make.controllers()[name](model, opt)
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["opt"])
    ctrl.load_state_dict(saved["ctrl"])
    X, y = make.torch_problem()
    make.train_plain(model, opt, X, y, 7, 5)
    assert_same_parameters(model.parameters(), saved["expected"])
    assert saved["expected_masks"].keys() == ctrl.masks.keys()
    for key, mask in saved["expected_masks"].items():
        assert torch.equal(ctrl.masks[key], mask)
