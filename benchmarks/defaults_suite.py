# SPDX-License-Identifier: BSD-3-Clause
"""Every estimator at its defaults against scikit-learn's standard models at theirs.

``python -m benchmarks defaults [--data MNIST_NPZ]``: what a new user sees who
keeps every default. Each model is ``make_pipeline(StandardScaler(), model)``
scored by 5-fold cross-validation (stratified for the classifiers, shuffled
with a fixed seed, the same folds for every model) on scikit-learn's built-in
datasets (breast_cancer, wine, iris, digits: accuracy; diabetes: R^2), and on
the first 10k MNIST training images when ``--data`` is given (pixels scaled to
[0, 1] instead of standardised: constant border pixels carry no scale).

Each of ours is compared with the best scikit-learn reference *of its kind*
(the issue's target: within 1 point of accuracy or 0.02 of R^2, or above):

- kernel estimators (``EigenProClassifier``/``EigenProRegressor``) against
  ``SVC``/``KernelRidge(kernel="rbf")``;
- the linear decision layer ``StiefelSVC`` against ``LinearSVC``/``LogisticRegression``;
- the networks (``ManifoldNetClassifier``/``ManifoldNetRegressor``) against
  ``MLPClassifier``/``MLPRegressor``.

``RidgeCV`` is reported for the regressions as the linear reference. Writes
``benchmarks/results/defaults.json`` (every fold's score and fit seconds) and
``defaults.png`` (score against fit seconds, a panel per dataset), and prints the
table (mean +- standard deviation over the folds; the gap to the best reference of
the kind).
"""

from __future__ import annotations

import os
import time
import warnings
from typing import NamedTuple

import numpy as np

from benchmarks.report import Panel, Scatter, machine_info, markdown_table, save_figure, write_json

RESULTS = os.path.join(os.path.dirname(__file__), "results")

#: built-in datasets: name -> (loader name, task)
BUILT_IN = {
    "breast_cancer": "classification",
    "wine": "classification",
    "iris": "classification",
    "digits": "classification",
    "diabetes": "regression",
}


class Model(NamedTuple):
    """One model of the suite: who made it, its kind and how to build it."""

    name: str
    ours: bool
    kind: str  # "kernel", "linear" or "network"
    task: str
    factory: object  # (seed) -> unfitted estimator


def models():
    """Every model of the suite, ours and the references, at their defaults."""
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.svm import SVC, LinearSVC

    from closedform import ManifoldNetClassifier, ManifoldNetRegressor, StiefelSVC
    from eigenpro import EigenProClassifier, EigenProRegressor

    C, R = "classification", "regression"
    return [
        Model(
            "EigenProClassifier", True, "kernel", C, lambda s: EigenProClassifier(random_state=s)
        ),
        Model("StiefelSVC", True, "linear", C, lambda s: StiefelSVC()),
        Model(
            "ManifoldNetClassifier",
            True,
            "network",
            C,
            lambda s: ManifoldNetClassifier(random_state=s),
        ),
        Model("SVC", False, "kernel", C, lambda s: SVC()),
        Model("LinearSVC", False, "linear", C, lambda s: LinearSVC(random_state=s)),
        Model("LogisticRegression", False, "linear", C, lambda s: LogisticRegression()),
        Model("MLPClassifier", False, "network", C, lambda s: MLPClassifier(random_state=s)),
        Model("EigenProRegressor", True, "kernel", R, lambda s: EigenProRegressor(random_state=s)),
        Model(
            "ManifoldNetRegressor",
            True,
            "network",
            R,
            lambda s: ManifoldNetRegressor(random_state=s),
        ),
        Model("KernelRidge(rbf)", False, "kernel", R, lambda s: KernelRidge(kernel="rbf")),
        Model("RidgeCV", False, "linear", R, lambda s: RidgeCV()),
        Model("MLPRegressor", False, "network", R, lambda s: MLPRegressor(random_state=s)),
    ]


def add_arguments(p):
    p.add_argument("--data", default=None, help="MNIST .npz: adds MNIST (first --mnist-n rows)")
    p.add_argument("--mnist-n", type=int, default=10000, help="MNIST training rows (5-fold CV)")
    p.add_argument("--datasets", nargs="+", default=None, help="subset of the datasets to run")
    p.add_argument("--models", nargs="+", default=None, help="subset of the models to run")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=RESULTS, help="folder for the JSON results")


def load_built_in(name):
    """``(X, y, task)`` of one of scikit-learn's built-in datasets."""
    import sklearn.datasets

    X, y = getattr(sklearn.datasets, f"load_{name}")(return_X_y=True)
    return np.asarray(X, dtype=np.float64), y, BUILT_IN[name]


def load_mnist(path, n):
    """The first ``n`` MNIST training images, pixels in [0, 1] (float32)."""
    with np.load(path) as f:
        X, y = f["x_train"][:n], f["y_train"][:n]
    return np.ascontiguousarray(X.reshape(len(X), -1) / 255.0, dtype=np.float32), y


def cross_validate_model(model, X, y, task, *, folds, seed, scale):
    """Per-fold scores and fit seconds of ``model`` in a (scaler +) model pipeline."""
    from sklearn.base import clone
    from sklearn.model_selection import KFold, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    splitter = (StratifiedKFold if task == "classification" else KFold)(
        folds, shuffle=True, random_state=seed
    )
    estimator = model.factory(seed)
    scores, seconds = [], []
    for train, test in splitter.split(X, y):
        pipe = make_pipeline(StandardScaler(), clone(estimator)) if scale else clone(estimator)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MLP/LinearSVC convergence warnings at defaults
            pipe.fit(X[train], y[train])
        seconds.append(time.perf_counter() - start)
        scores.append(float(pipe.score(X[test], y[test])))
    return scores, seconds


def summarise(results):
    """Table rows: mean +- std, fit seconds and the gap to the best reference of the kind."""
    rows = []
    for dataset, entries in results.items():
        best = {}
        for e in entries:
            if not e["ours"]:
                key = e["kind"]
                if key not in best or e["mean"] > best[key][1]:
                    best[key] = (e["model"], e["mean"])
        for e in entries:
            gap = ""
            if e["ours"] and e["kind"] in best:
                ref, value = best[e["kind"]]
                gap = f"{e['mean'] - value:+.3f} vs {ref}"
            rows.append(
                [
                    dataset,
                    e["model"] + (" (ours)" if e["ours"] else ""),
                    f"{e['mean']:.3f} +- {e['std']:.3f}",
                    f"{np.mean(e['seconds']):.2f}",
                    gap,
                ]
            )
    return rows


def plot(results, path):
    """Score against mean fit seconds, a panel per dataset: ours filled, references hollow."""
    panels = []
    for dataset, entries in results.items():
        marks = []
        for ours in (True, False):
            chosen = [e for e in entries if e["ours"] == ours]
            style = {"marker": "o"} if ours else {"facecolors": "none", "edgecolors": "C1"}
            marks.append(
                Scatter(
                    [max(float(np.mean(e["seconds"])), 1e-3) for e in chosen],
                    [e["mean"] for e in chosen],
                    "ours" if ours else "scikit-learn",
                    [e["model"] for e in chosen],
                    style,
                )
            )
        metric = "R^2" if any(e["model"].endswith("Regressor") for e in entries) else "accuracy"
        panels.append(
            Panel(
                marks,
                "fit seconds per fold",
                f"{metric} (5-fold mean)",
                title=dataset,
                xscale="log",
                ylim=_zoom,
                legend={"fontsize": 7},
            )
        )
    rows = [panels[i : i + 3] for i in range(0, len(panels), 3)]
    return save_figure(path, rows, figsize=(15, 4.5 * len(rows)), dpi=110)


def _zoom(bottom, top):
    """Keep the top of the range, where the models differ (a diverged one falls off)."""
    return max(bottom, top - 0.25), top


def run(args):
    datasets = {name: load_built_in(name) for name in args.datasets or BUILT_IN}
    if args.data is not None:
        X, y = load_mnist(args.data, args.mnist_n)
        datasets[f"mnist{args.mnist_n // 1000}k"] = (X, y, "classification")
    chosen = [m for m in models() if args.models is None or m.name in args.models]
    results = {}
    for name, (X, y, task) in datasets.items():
        results[name] = []
        for model in (m for m in chosen if m.task == task):
            scores, seconds = cross_validate_model(
                model,
                X,
                y,
                task,
                folds=args.folds,
                seed=args.seed,
                scale=not name.startswith("mnist"),
            )
            entry = {
                "model": model.name,
                "ours": model.ours,
                "kind": model.kind,
                "scores": scores,
                "seconds": seconds,
                "mean": float(np.mean(scores)),
                "std": float(np.std(scores)),
            }
            results[name].append(entry)
            print(
                f"{name:>14} {model.name:>22}: {entry['mean']:.3f} +- {entry['std']:.3f}"
                f" ({np.mean(seconds):.2f} s/fit)",
                flush=True,
            )
    rows = summarise(results)
    print()
    print(markdown_table(["data", "model", "score (5-fold)", "fit s", "gap to best ref"], rows))
    os.makedirs(args.out, exist_ok=True)
    suffix = "" if args.datasets is None and args.models is None else "_partial"
    write_json(
        os.path.join(args.out, f"defaults{suffix}.json"),
        {"machine": machine_info(), "folds": args.folds, "seed": args.seed, "results": results},
    )
    plot(results, os.path.join(args.out, f"defaults{suffix}.png"))
    return results
