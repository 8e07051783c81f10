# SPDX-License-Identifier: BSD-3-Clause
"""EigenPro 3 on ``p`` centres against ``Nystroem + RidgeClassifier`` at the same ``p``.

For each ``p`` of ``--centers`` (default 2000, 5000, 10000, 20000 on MNIST):

- ``eigenpro_p``: :class:`eigenpro.EigenProClassifier` with ``n_centers=p``
  (EigenPro 3 iteration, :mod:`eigenpro.decoupled`), the test accuracy
  after every epoch, the seconds per epoch and the set-up (preconditioner,
  the projection's factorisation), and the fit's peak memory;
- ``nystroem_p``: :class:`sklearn.kernel_approximation.Nystroem` with
  ``n_components=p`` and :class:`sklearn.linear_model.RidgeClassifier`
  (``alpha=1e-3``, the ``eigenpro`` suite's): the exact least-squares solution
  on those centres, the strongest thing a scikit-learn user fits; skipped
  above ``--nystroem-max`` centres (its ``p x p`` SVD and ``n p^2`` Gram
  matrix take tens of minutes on 2 cores at ``p = 20000``);

and today's ``p = n`` model, ``eigenpro_all`` (:class:`EigenProClassifier`
with every training point a centre). Same kernel and bandwidth for all;
every time is measured in this run, one fit at a time.
"""

from __future__ import annotations

import os
import time

import numpy as np

from benchmarks import datasets
from benchmarks.eigenpro_suite import FitMemory, _budget_bytes, _mib, _nystroem, _pct
from benchmarks.report import Curve, format_table, machine_info, plot_curves, write_json

RESULTS = os.path.join(os.path.dirname(__file__), "results")


def add_arguments(p):
    p.add_argument("--data", help="MNIST .npz (x_train, y_train, x_test, y_test); default: digits")
    p.add_argument("--n-train", type=int, default=None, help="first N training samples")
    p.add_argument(
        "--centers",
        default=None,
        help="comma-separated p (default 2000,5000,10000,20000; digits: 200,500)",
    )
    p.add_argument("--epochs", type=int, default=3, help="EigenPro epochs")
    p.add_argument("--bandwidth", type=float, default=None, help="default: 5 on MNIST, auto else")
    p.add_argument("--nystroem-max", type=int, default=10000, help="largest p for Nystroem")
    p.add_argument("--no-all", action="store_true", help="skip the p = n EigenPro model")
    p.add_argument("--memory-budget", type=float, default=None, help="bytes (default auto)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=RESULTS, help="folder for the JSON and PNG")
    p.add_argument("--tag", default="", help="suffix for the output file names")


def run(args):
    data = datasets.load(args.data, args.n_train)
    mnist = data.name == "mnist"
    n, d = data.X_train.shape
    if args.centers:
        sizes = [int(v) for v in args.centers.split(",") if v.strip()]
    else:
        sizes = [2000, 5000, 10000, 20000] if mnist else [200, 500]
    sizes = [p for p in sizes if p <= n]
    bandwidth = args.bandwidth if args.bandwidth is not None else (5.0 if mnist else "auto")
    budget = "auto" if args.memory_budget is None else args.memory_budget
    common = dict(bandwidth=bandwidth, memory_budget=budget, random_state=args.seed)
    print(f"centers benchmark: {data.name}, n={n}, d={d}, p={sizes}, bandwidth={bandwidth}")
    curves, gamma = [], None
    for p in sizes:
        curve, est = _eigenpro_on_centers(data, args.epochs, common, p)
        gamma = 1.0 / (2.0 * est.bandwidth_**2)
        curves.append(curve)
        _log(curve)
        if p <= args.nystroem_max:
            c = _nystroem(data, gamma, "gaussian", p, args.seed)
            c.solver = f"nystroem_{p}"
            curves.append(c)
            _log(c)
    if not args.no_all:
        curve, _ = _eigenpro_on_centers(data, args.epochs, common, "all")
        curves.append(curve)
        _log(curve)
    summary = _summary(curves, sizes)
    table = format_table(curves, TABLE_COLUMNS)
    print()
    print(table)
    for line in summary:
        print(line)
    payload = {
        "suite": "centers",
        "dataset": data.name,
        "n_train": n,
        "n_features": d,
        "n_test": len(data.X_test),
        "bandwidth": bandwidth,
        "epochs": args.epochs,
        "machine": machine_info(),
        "summary": summary,
        "table": table,
        "curves": curves,
    }
    stem = f"centers_{data.name}_n{n}{args.tag}"
    json_path = write_json(os.path.join(args.out, stem + ".json"), payload)
    png_path = plot_curves(
        os.path.join(args.out, stem + ".png"),
        [c for c in curves if c.solver.startswith("eigenpro")],
        f"{data.name} n={n}: EigenPro on p centres (Nystroem+Ridge marks in the table)",
        [("test_acc", "test accuracy", False), ("train_mse", "train MSE (one-hot)", True)],
    )
    print(f"\nwrote {json_path}\nwrote {png_path}")
    return payload


def _eigenpro_on_centers(data, epochs, common, p):
    from eigenpro import EigenProClassifier

    est = EigenProClassifier(n_epochs=epochs, n_centers=p, **common)
    budget = _budget_bytes(est.memory_budget, None)
    with FitMemory() as memory:
        t0 = time.perf_counter()
        est.fit(data.X_train, data.y_train, X_val=data.X_test, y_val=data.y_test)
        wall = time.perf_counter() - t0
    h = est.history_
    times = h["time"]
    per_epoch = float(np.median(np.diff(times))) if len(times) > 1 else None
    curve = Curve(
        f"eigenpro_{p}",
        params={
            "n_centers": p,
            "batch_size": est.batch_size_,
            "step_size": est.step_size_,
            "alpha": est.alpha_,
            "bandwidth": est.bandwidth_,
            "setup_seconds": est.timings_,
            "seconds_per_epoch": per_epoch,
            "wall_seconds_with_eval": wall,
            "memory_budget_bytes": budget,
            **memory.params(),
        },
    )
    for e, t, mse, acc in zip(h["epoch"], times, h["train_mse"], h["val_score"], strict=False):
        curve.add(epoch=e, seconds=t, train_mse=mse, test_acc=acc)
    return curve, est


def _log(curve):
    print(
        f"  {curve.solver}: {curve.last('test_acc'):.4f} acc, {curve.last('seconds'):.1f} s",
        flush=True,
    )


def _summary(curves, sizes):
    """One line per ``p``: our accuracy and time against Nystroem's, and the target at 10000."""
    by_name = {c.solver: c for c in curves}
    lines = []
    for p in sizes:
        ours, theirs = by_name.get(f"eigenpro_{p}"), by_name.get(f"nystroem_{p}")
        if ours is None or theirs is None:
            continue
        a, b = ours.last("test_acc"), theirs.last("test_acc")
        ta, tb = ours.last("seconds"), theirs.last("seconds")
        held = a >= b and ta <= 0.5 * tb
        lines.append(
            f"p={p}: EigenPro {100 * a:.2f} % in {ta:.1f} s, Nystroem+Ridge {100 * b:.2f} % in "
            f"{tb:.1f} s: time ratio {tb / ta:.2f} x; accuracy >= and time <= 1/2: "
            f"{'yes' if held else 'no'}"
        )
    return lines


#: the table's columns ``(header, key, fmt)`` (:func:`benchmarks.report.format_table`)
TABLE_COLUMNS = [
    ("epochs", "epoch", "d"),
    ("fit s", "seconds", ".1f"),
    ("s/epoch", lambda c: c.params.get("seconds_per_epoch"), ".2f"),
    ("test acc %", lambda c: _pct(c.last("test_acc")), ".2f"),
    ("peak MiB", lambda c: _mib(c.params.get("peak_resident_bytes")), ".0f"),
]
