# SPDX-License-Identifier: BSD-3-Clause
"""The main job: EigenPro and a closed-form net on 20,000 deformed digits against the usual picks.

``python -m benchmarks showcase``: nothing to download. scikit-learn's digits
are expanded in-process by seeded deformations to 20,000 training and 5,000
test images of 16 x 16 pixels (:func:`benchmarks.datasets.expanded_digits`),
the regime the library is for: too many points for a comfortable direct solve,
few enough for a laptop. Two comparisons, each in the same run:

- **kernel regression** (Gaussian kernel, bandwidth and penalty chosen by
  ``"auto"``): ``EigenProClassifier`` against exact ``KernelRidge``,
  ``Nystroem`` + ``RidgeClassifier`` and plain kernel SGD at EigenPro's batch
  size (the solvers of ``python -m benchmarks eigenpro``);
- **networks**: ``ManifoldNetClassifier`` at its defaults (trained without
  gradients) and at a smaller width, against torch MLPs trained by Adam
  (256 / 512 / 1024 units, test accuracy after every epoch) and scikit-learn's
  ``MLPClassifier``.

Writes ``benchmarks/results/showcase.{json,png}`` and prints both tables and
the headline ratios. About 2-3 minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

from benchmarks import closedform_suite, datasets, eigenpro_suite
from benchmarks.report import Line, Panel, machine_info, save_figure, text_table, write_json

RESULTS = os.path.join(os.path.dirname(__file__), "results")


def add_arguments(p):
    p.add_argument("--n-train", type=int, default=20000, help="generated training images")
    p.add_argument("--epochs", type=int, default=5, help="EigenPro epochs")
    p.add_argument("--sgd-epochs", type=int, default=10, help="kernel SGD epochs")
    p.add_argument("--torch-epochs", type=int, default=15, help="epochs of each torch MLP")
    p.add_argument("--widths", type=int, nargs="+", default=[1000],
                   help="smaller widths of the closed-form net (beside its default)")  # fmt: skip
    p.add_argument("--torch-widths", type=int, nargs="*", default=[256, 512, 1024])
    p.add_argument("--nystroem-components", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=RESULTS, help="folder for the JSON and PNG")


def run(args):
    t_start = time.perf_counter()
    data = datasets.load(datasets.EXPANDED, n_train=args.n_train)
    n, d = data.X_train.shape
    print(f"showcase: {data.name}, {n} train / {len(data.X_test)} test images, {d} pixels; "
          f"generated in {time.perf_counter() - t_start:.1f} s", flush=True)  # fmt: skip
    print("kernel regression (Gaussian kernel):", flush=True)
    setup = eigenpro_suite.Settings(
        epochs=args.epochs, sgd_epochs=args.sgd_epochs, bandwidth="auto",
        solvers=eigenpro_suite.SOLVERS, device=None, memory_budget="auto",
    )  # fmt: skip
    options = argparse.Namespace(
        kernel="gaussian", seed=args.seed, krr_max_n=n,
        nystroem_components=min(args.nystroem_components, n),
    )  # fmt: skip
    kernel_curves = eigenpro_suite.fit_solvers(data, setup, options)
    print("networks:", flush=True)
    networks = _networks(data, args)
    summary = summarize(kernel_curves, networks)
    print()
    print(format_tables(kernel_curves, networks))
    print()
    print("\n".join(summary["lines"]))
    payload = {
        "suite": "showcase",
        "dataset": data.name,
        "n_train": n,
        "n_features": d,
        "n_test": len(data.X_test),
        "machine": machine_info(),
        "total_seconds": time.perf_counter() - t_start,
        "summary": summary,
        "curves": kernel_curves,
        "networks": networks,
    }
    stem = os.path.join(args.out, "showcase")
    write_json(stem + ".json", payload)
    plot(stem + ".png", kernel_curves, networks, f"{data.name}, n = {n}")
    print(f"\nwrote {stem}.json and {stem}.png (total {payload['total_seconds']:.0f} s)")
    return payload


def _networks(data, args):
    from sklearn.neural_network import MLPClassifier

    from closedform import ManifoldNetClassifier

    rows = [
        closedform_suite.fit_and_score(
            "ManifoldNetClassifier() (defaults)", "width", None,
            ManifoldNetClassifier(random_state=args.seed), data,
        )
    ]  # fmt: skip
    for width in args.widths:
        model = ManifoldNetClassifier((width,), random_state=args.seed)
        rows.append(closedform_suite.fit_and_score(
            f"ManifoldNetClassifier(({width},))", "width", width, model, data))  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows.append(closedform_suite.fit_and_score(
            "MLPClassifier((256,)) adam, early stopping", "anchor", 256,
            MLPClassifier((256,), early_stopping=True, random_state=args.seed), data,
        ))  # fmt: skip
    for width in closedform_suite.torch_widths(args.torch_widths):
        rows.append(closedform_suite.torch_mlp_run(width, data, args.torch_epochs, args.seed))
    return rows


def summarize(kernel_curves, networks):
    """The headline ratios: EigenPro against each kernel baseline, the net against the MLPs."""
    by_name = {c.solver: c for c in kernel_curves}
    ep = by_name["eigenpro"]
    s = {"eigenpro": {"accuracy": ep.last("test_acc"), "seconds": ep.last("seconds")}, "lines": []}
    s["lines"].append(
        f"EigenPro: {100 * ep.last('test_acc'):.2f} % in {ep.last('seconds'):.1f} s "
        f"({ep.last('epoch')} epochs, bandwidth and penalty chosen in the fit)"
    )
    for name in ("kernel_ridge", "nystroem", "sgd"):
        c = by_name.get(name)
        if c is None:
            continue
        ratio = c.last("seconds") / ep.last("seconds")
        s[name] = {"accuracy": c.last("test_acc"), "seconds": c.last("seconds"),
                   "time_ratio": ratio}  # fmt: skip
        gain = 100 * (ep.last("test_acc") - c.last("test_acc"))
        s["lines"].append(
            f"  {name}: {100 * c.last('test_acc'):.2f} % in {c.last('seconds'):.1f} s "
            f"(EigenPro {ratio:.1f} x faster, {gain:+.2f} points)"
        )
    ours = networks[0]
    torch_points = [
        (p["seconds"], p["test_accuracy"], r["name"])
        for r in networks if r["group"] == "torch" for p in r["curve"]
    ]  # fmt: skip
    reached = [(t, name) for t, a, name in torch_points if a >= ours["test_accuracy"]]
    first = min(reached, default=None)
    best_torch = max(torch_points, default=None, key=lambda point: point[1])
    s["network"] = {
        "accuracy": ours["test_accuracy"], "seconds": ours["fit_seconds"],
        "torch_seconds_to_match": None if first is None else first[0],
        "torch_time_ratio": None if first is None else first[0] / ours["fit_seconds"],
        "best_torch_accuracy": None if best_torch is None else best_torch[1],
    }  # fmt: skip
    line = (f"ManifoldNetClassifier(): {100 * ours['test_accuracy']:.2f} % in "
            f"{ours['fit_seconds']:.1f} s without gradients; ")  # fmt: skip
    if first is None:
        line += "no torch MLP reaches it" + (
            "" if best_torch is None else f" (best {100 * best_torch[1]:.2f} %)"
        )
    else:
        line += f"the first torch MLP to reach it ({first[1]}) needs {first[0]:.1f} s " + (
            f"({first[0] / ours['fit_seconds']:.1f} x)"
        )
    s["lines"].append(line)
    return s


def format_tables(kernel_curves, networks):
    """Both result tables as text."""
    kernel = text_table(
        ["kernel solver", "epochs", "fit s", "test acc %"],
        [[c.solver, str(c.last("epoch") or "-"), f"{c.last('seconds'):.1f}",
          f"{100 * c.last('test_acc'):.2f}"] for c in kernel_curves],
    )  # fmt: skip
    rows = []
    for r in networks:
        if r["group"] == "torch":
            best = max(r["curve"], key=lambda p: p["test_accuracy"])
            acc = (f"{100 * r['test_accuracy']:.2f} (best {100 * best['test_accuracy']:.2f} "
                   f"at epoch {best['epoch']})")  # fmt: skip
        else:
            acc = f"{100 * r['test_accuracy']:.2f}"
        rows.append([r["name"], str(r.get("n_iter", "")), f"{r['fit_seconds']:.1f}", acc])
    return kernel + "\n\n" + text_table(["network", "iters/epochs", "fit s", "test acc %"], rows)


def plot(path, kernel_curves, networks, title):
    """Test accuracy against seconds: the kernel solvers (left) and the networks (right)."""
    colors = {"eigenpro": "tab:blue", "sgd": "tab:orange", "kernel_ridge": "black",
              "nystroem": "tab:green"}  # fmt: skip
    left = []
    for c in kernel_curves:
        x = [p["seconds"] for p in c.points if p.get("test_acc") is not None and p["seconds"] > 0]
        y = [100 * p["test_acc"] for p in c.points if p.get("test_acc") is not None and
             p["seconds"] > 0]  # fmt: skip
        left.append(Line(x, y, "o-", c.solver, {"color": colors.get(c.solver), "ms": 4}))
    right = []
    ours = [r for r in networks if r["group"] == "width"]
    ours.sort(key=lambda r: r["fit_seconds"])
    right.append(Line([r["fit_seconds"] for r in ours], [100 * r["test_accuracy"] for r in ours],
                      "o-", "ManifoldNetClassifier (widths)", {"color": "tab:blue"}))  # fmt: skip
    for r, style in zip((r for r in networks if r["group"] == "torch"), "s^vd", strict=False):
        right.append(Line([p["seconds"] for p in r["curve"]],
                          [100 * p["test_accuracy"] for p in r["curve"]],
                          style + "-", r["name"], {"ms": 3, "lw": 0.8}))  # fmt: skip
    for r in networks:
        if r["group"] == "anchor":
            right.append(Line([r["fit_seconds"]], [100 * r["test_accuracy"]], "k*", r["name"],
                              {"ms": 9}))  # fmt: skip
    top = max(
        [100 * c.last("test_acc") for c in kernel_curves]
        + [100 * r["test_accuracy"] for r in networks]
    )
    panels = [
        Panel(left, "fit seconds (log)", "test accuracy (%)", "kernel regression", xscale="log",
              ylim=(top - 6, top + 0.5), legend={"fontsize": 8, "loc": "lower right"}),
        Panel(right, "fit seconds (log)", "test accuracy (%)", "networks", xscale="log",
              ylim=(top - 6, top + 0.5), legend={"fontsize": 8, "loc": "lower right"}),
    ]  # fmt: skip
    return save_figure(path, [panels], figsize=(13, 5.5), dpi=110, title=title)
