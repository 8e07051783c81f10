# SPDX-License-Identifier: BSD-3-Clause
"""Write the compatibility fixtures with the library version on ``PYTHONPATH``.

Run once with the version whose pickles and ``state_dict``s must keep loading
(the fixtures in ``tests/compat/previous/`` were made with 5955779, the last
commit before the issue-14 redesign)::

    PYTHONPATH=/path/to/old/checkout python tests/compat/make_previous.py tests/compat/previous

Each fixture stores the saved object and what the saving version computed
next: predictions of the fitted estimators, and the parameters (and masks)
after a few more optimizer steps from the saved ``state_dict``s.
``tests/compat/test_previous.py`` loads them with the current version and
compares.
"""

from __future__ import annotations

import copy
import pickle
import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits


def digits(n=240):
    X, y = load_digits(return_X_y=True)
    return X[:n] / 16.0, y[:n], X[n : n + 60] / 16.0


def estimators():
    """(name, estimator, training targets kind) of every estimator class."""
    from closedform import ManifoldNetClassifier, ManifoldNetRegressor, StiefelSVC
    from eigenpro import EigenProClassifier, EigenProRegressor

    return [
        ("eigenpro_classifier", EigenProClassifier(n_epochs=2, random_state=0), "labels"),
        ("eigenpro_regressor", EigenProRegressor(n_epochs=2, random_state=0), "values"),
        (
            "manifold_classifier",
            ManifoldNetClassifier(hidden_layer_sizes=(24,), max_iter=3, random_state=0),
            "labels",
        ),
        (
            "manifold_regressor",
            ManifoldNetRegressor(hidden_layer_sizes=(24,), max_iter=3, random_state=0),
            "values",
        ),
        ("stiefel_svc", StiefelSVC(max_iter=20), "labels"),
    ]


OUTPUT_METHODS = ("predict", "decision_function", "predict_proba")


def write_estimators(out):
    X, y, X_test = digits()
    targets = {"labels": y, "values": np.column_stack([y / 9.0, X[:, 20]])}
    outputs = {"X_test": X_test}
    for name, est, kind in estimators():
        est.fit(X, targets[kind])
        (out / f"{name}.pkl").write_bytes(pickle.dumps(est))
        for method in OUTPUT_METHODS:
            if hasattr(est, method):
                outputs[f"{name}.{method}"] = np.asarray(getattr(est, method)(X_test))
    np.savez(out / "estimator_outputs.npz", **outputs)


def torch_problem():
    import torch

    g = torch.Generator().manual_seed(0)
    X = torch.randn(64, 10, generator=g)
    y = (X[:, :3].sum(1) > 0).long() + (X[:, 3] > 1).long()
    return X, y


def torch_model():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(10, 32), torch.nn.Tanh(), torch.nn.Linear(32, 3)
    ).double()


def optimizers():
    """name -> factory(params) of each optimizer configuration kept compatible."""
    from solvers.torch import SLS, SPS, AdaSLS

    return {
        "adasls": lambda p: AdaSLS(p, n_batches_per_epoch=4),
        "adasls_adagrad_heavy_ball": lambda p: AdaSLS(
            p, preconditioner="adagrad", momentum="heavy_ball", n_batches_per_epoch=4
        ),
        "adasls_goldstein": lambda p: AdaSLS(p, line_search="goldstein", n_batches_per_epoch=4),
        "sls": lambda p: SLS(p, n_batches_per_epoch=4),
        "sps": lambda p: SPS(p, n_batches_per_epoch=4),
    }


def controllers():
    """name -> factory(model, optimizer) of each sparse controller kept compatible."""
    from solvers.torch import DynamicSparsity, GradualMagnitudePruning, StaticSparsity

    # the schedule these files were made with (the defaults before issue 16)
    dst = dict(update_every=3, total_steps=12, seed=0, drop_fraction=0.3, end=0.75)
    return {
        "rigl": lambda m, o: DynamicSparsity(m, o, 0.3, grow="rigl", **dst),
        "set": lambda m, o: DynamicSparsity(m, o, 0.3, grow="set", **dst),
        "momentum": lambda m, o: DynamicSparsity(m, o, 0.3, grow="momentum", **dst),
        "static": lambda m, o: StaticSparsity(m, o, 0.3),
        "gmp": lambda m, o: GradualMagnitudePruning(m, o, 0.3, start=1, end=9, update_every=3),
    }


def train_optimizer(model, opt, X, y, steps, start):
    import torch

    for k in range(start, start + steps):
        i = (k * 16) % X.shape[0]
        xb, yb = X[i : i + 16].double(), y[i : i + 16]

        def closure(xb=xb, yb=yb):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            return loss

        opt.step(closure)


def train_plain(model, opt, X, y, steps, start):
    import torch

    for k in range(start, start + steps):
        i = (k * 16) % X.shape[0]
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X[i : i + 16].double()), y[i : i + 16]).backward()
        opt.step()


def write_torch(out):
    import torch

    X, y = torch_problem()
    for name, make in optimizers().items():
        model = torch_model()
        opt = make(model.parameters())
        train_optimizer(model, opt, X, y, 5, 0)
        saved = copy.deepcopy({"model": model.state_dict(), "opt": opt.state_dict()})
        train_optimizer(model, opt, X, y, 5, 5)
        saved["expected"] = [p.detach().clone() for p in model.parameters()]
        torch.save(saved, out / f"optimizer_{name}.pt")
    for name, make in controllers().items():
        model = torch_model()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        ctrl = make(model, opt)
        train_plain(model, opt, X, y, 5, 0)
        saved = copy.deepcopy(
            {"model": model.state_dict(), "opt": opt.state_dict(), "ctrl": ctrl.state_dict()}
        )
        train_plain(model, opt, X, y, 7, 5)
        saved["expected"] = [p.detach().clone() for p in model.parameters()]
        saved["expected_masks"] = {k: v.clone() for k, v in ctrl.masks.items()}
        torch.save(saved, out / f"controller_{name}.pt")


if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    write_estimators(out)
    write_torch(out)
