# SPDX-License-Identifier: BSD-3-Clause
"""Closed-form networks (ManifoldNetClassifier) against MLP, ELM, ridge and linear SVM.

``python -m benchmarks closedform [--data MNIST_NPZ]``: test accuracy and fit
seconds of

- ours, ``closedform.ManifoldNetClassifier``: several widths with the
  defaults; the decision layers ``ridge``/``stiefel``/``gpi``; backward
  sweeps (``max_iter`` 1-3, ``backward`` proximal/pinv/adjoint); two hidden
  layers; early stopping; the hidden-layer draw (``init`` samples/gaussian);
- scikit-learn's ``MLPClassifier`` (adam, early stopping, one hidden layer
  of 256), the anchor for the accuracy target and the fit-time ratio;
- torch MLPs (one ReLU hidden layer of 256 / 512 / 1024 units, Adam 1e-3,
  batch 128, the test accuracy after every epoch): the time-to-accuracy
  curves that a user of PyTorch would draw, compared with ours at every
  accuracy from 97.5 % up (:func:`time_to_accuracy`);
- an ELM of the same width (random Gaussian sigmoid units and a ridge
  least-squares readout, ``ManifoldNetClassifier(init="gaussian",
  head_max_iter=1)``, hpelm's recipe);
- ``RidgeClassifier`` and ``LinearSVC`` on the pixels.

Every model is fitted once on the training set and scored once on the test
set (no selection on the test set); the fit-time ratios are taken within the
same run. Writes ``benchmarks/results/closedform_{dataset}.json`` and ``.png``
(accuracy against fit seconds) and prints the table.
"""

from __future__ import annotations

import math
import os
import time
import warnings

import numpy as np

from benchmarks import datasets
from benchmarks.report import (
    Line,
    Panel,
    Scatter,
    machine_info,
    save_figure,
    text_table,
    write_json,
)

RESULTS = os.path.join(os.path.dirname(__file__), "results")


def add_arguments(p):
    p.add_argument("--data", default=None, help="MNIST .npz (default: scikit-learn digits)")
    p.add_argument("--n-train", type=int, default=None, help="keep the first N training rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--widths", type=int, nargs="+", default=None, help="hidden widths to sweep")
    p.add_argument("--skip-linear-svc", action="store_true", help="leave out LinearSVC (slow)")
    p.add_argument(
        "--torch-widths",
        type=int,
        nargs="*",
        default=[256, 512, 1024],
        help="hidden widths of the torch MLP baselines (none: skip them)",
    )
    p.add_argument(
        "--torch-epochs",
        type=int,
        default=None,
        help="epochs of the torch MLPs (default 20 on MNIST, 50 on digits)",
    )
    p.add_argument("--out", default=RESULTS, help="folder for the JSON and PNG results")


def runs(widths, default_width, seed):
    """(name, group, width, factory) of every model of the suite."""
    from sklearn.linear_model import RidgeClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.svm import LinearSVC

    from closedform import ManifoldNetClassifier

    def ours(width, **kw):
        sizes = width if isinstance(width, tuple) else (width,)
        return lambda: ManifoldNetClassifier(sizes, random_state=seed, **kw)

    w = default_width
    out = [
        ("MLPClassifier (256,) adam, early stopping", "anchor", 256,
         lambda: MLPClassifier((256,), early_stopping=True, random_state=seed)),
        ("RidgeClassifier (pixels)", "anchor", 0, lambda: RidgeClassifier()),
        ("LinearSVC (pixels)", "anchor", 0, lambda: LinearSVC(random_state=seed)),
    ]  # fmt: skip
    for width in widths:
        out.append((f"ours {width}", "width", width, ours(width)))
        out.append(
            (f"ELM {width} (gaussian + least squares)", "elm", width,
             ours(width, init="gaussian", head_max_iter=1))
        )  # fmt: skip
    out += [
        (f"ours {w}, head stiefel", "head", w, ours(w, head="stiefel")),
        (f"ours {w}, head gpi", "head", w, ours(w, head="gpi")),
        (f"ours {w}, least-squares head", "head", w, ours(w, head_max_iter=1)),
        (f"ours {w}, gaussian init", "init", w, ours(w, init="gaussian")),
        (f"ours {w}, 1 proximal sweep", "sweeps", w, ours(w, max_iter=2)),
        (f"ours {w}, 2 proximal sweeps", "sweeps", w, ours(w, max_iter=3)),
        (f"ours {w}, 1 pinv sweep", "sweeps", w, ours(w, max_iter=2, backward="pinv")),
        (f"ours {w}, 1 adjoint sweep", "sweeps", w, ours(w, max_iter=2, backward="adjoint")),
        (f"ours {w}, gaussian init, 2 proximal sweeps", "sweeps", w,
         ours(w, init="gaussian", max_iter=3)),
        (f"ours {w}, early stopping, up to 4 sweeps", "sweeps", w,
         ours(w, max_iter=5, early_stopping=True)),
        (f"ours ({w}, {w // 3})", "depth", w, ours((w, w // 3))),
        (f"ours ({w}, {w // 3}), 1 proximal sweep", "depth", w, ours((w, w // 3), max_iter=2)),
    ]  # fmt: skip
    return out


def run(args):
    data = datasets.load(args.data, n_train=args.n_train)
    mnist = data.name == "mnist"
    widths = args.widths or ([1000, 1500, 2000, 3000, 4000] if mnist else [100, 200, 500])
    default_width = 3000 if mnist else 500
    if default_width not in widths:
        default_width = widths[-1]
    print(
        f"{data.name}: {data.X_train.shape[0]} train / {data.X_test.shape[0]} test, "
        f"{data.X_train.shape[1]} features, {data.n_classes} classes",
        flush=True,
    )
    t_start = time.perf_counter()
    results = []
    for name, group, width, make in runs(widths, default_width, args.seed):
        if args.skip_linear_svc and name.startswith("LinearSVC"):
            continue
        results.append(fit_and_score(name, group, width, make(), data))
    epochs = args.torch_epochs or (20 if mnist else 50)
    for width in torch_widths(args.torch_widths):
        results.append(torch_mlp_run(width, data, epochs, args.seed))
    summary = summarize(results, default_width)
    print(format_table(results))
    print(format_summary(summary))
    payload = {
        "suite": "closedform",
        "dataset": data.name,
        "n_train": int(data.X_train.shape[0]),
        "n_test": int(data.X_test.shape[0]),
        "seed": args.seed,
        "default_width": default_width,
        "machine": machine_info(),
        "total_seconds": time.perf_counter() - t_start,
        "results": results,
        "summary": summary,
    }
    stem = os.path.join(args.out, f"closedform_{data.name}")
    write_json(stem + ".json", payload)
    plot(stem + ".png", results, f"Closed-form networks on {data.name}")
    print(f"wrote {stem}.json and {stem}.png")
    return payload


def fit_and_score(name, group, width, model, data):
    """Fit ``model`` once on the training set, score it once on the test set: a result row."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        model.fit(data.X_train, data.y_train)
        seconds = time.perf_counter() - t0
    acc = float(model.score(data.X_test, data.y_test))
    row = {
        "name": name,
        "group": group,
        "width": width,
        "fit_seconds": seconds,
        "test_accuracy": acc,
        "warnings": sorted({str(w.message).splitlines()[0][:120] for w in caught}),
    }
    if hasattr(model, "objective_curve_"):
        row["n_iter"] = int(model.n_iter_)
        row["objective_curve"] = [float(v) for v in model.objective_curve_]
        row["params"] = {
            k: v for k, v in model.get_params().items() if k not in ("callback", "verbose")
        }
    if getattr(model, "n_iter_", None) is not None and "n_iter" not in row:
        row["n_iter"] = int(np.max(model.n_iter_))
    print(f"  {name:48s} {100 * acc:6.2f} %  {seconds:7.1f} s", flush=True)
    return row


def torch_widths(widths):
    """``widths``, or none with a note when torch is not installed (the ``bench`` extra)."""
    if widths:
        try:
            import torch  # noqa: F401
        except ImportError:
            print("  torch is not installed: the torch MLP baselines are skipped "
                  '(pip install "torch==2.13.0")', flush=True)  # fmt: skip
            return []
    return list(widths)


def torch_mlp_run(width, data, epochs, seed, *, batch_size=128, lr=1e-3):
    """A one-hidden-layer ReLU MLP trained by torch's Adam; the test accuracy after every epoch.

    The seconds are training time only (the evaluation after each epoch is
    not counted), with torch's default threads, like every other model here.
    """
    import torch

    torch.manual_seed(seed)
    X = torch.from_numpy(data.X_train)
    y = torch.from_numpy(data.y_train)
    X_test = torch.from_numpy(data.X_test)
    model = torch.nn.Sequential(
        torch.nn.Linear(X.shape[1], width), torch.nn.ReLU(), torch.nn.Linear(width, data.n_classes)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    order = torch.Generator().manual_seed(seed)
    curve, seconds = [], 0.0
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        model.train()
        for rows in torch.randperm(X.shape[0], generator=order).split(batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(X[rows]), y[rows]).backward()
            optimizer.step()
        seconds += time.perf_counter() - t0
        model.eval()
        with torch.no_grad():
            predicted = model(X_test).argmax(1).numpy()
        curve.append({"epoch": epoch, "seconds": seconds,
                      "test_accuracy": float(np.mean(predicted == data.y_test))})  # fmt: skip
    name = f"torch MLP ({width},) Adam 1e-3"
    best = max(curve, key=lambda point: point["test_accuracy"])
    print(f"  {name:48s} {100 * best['test_accuracy']:6.2f} %  {best['seconds']:7.1f} s "
          f"(best, epoch {best['epoch']})", flush=True)  # fmt: skip
    return {
        "name": name, "group": "torch", "width": width, "fit_seconds": curve[-1]["seconds"],
        "test_accuracy": curve[-1]["test_accuracy"], "n_iter": epochs, "curve": curve,
        "params": {"batch_size": batch_size, "lr": lr, "epochs": epochs},
    }  # fmt: skip


#: accuracies at which :func:`time_to_accuracy` compares the two families
ACCURACY_FROM, ACCURACY_STEP = 0.975, 0.0005


def time_to_accuracy(results):
    """Seconds each family needs to reach every accuracy from 97.5 % up, and their ratio.

    Ours: the fastest default fit (the ``width`` group) scoring at least the
    level; torch: the first epoch of any of its MLPs that reaches it. The
    levels run in steps of 0.05 points up to the best score of either family;
    at a level only torch reaches the ratio is 0, only ours, infinite.
    """
    ours = [(r["fit_seconds"], r["test_accuracy"]) for r in results if r["group"] == "width"]
    torch_points = [
        (p["seconds"], p["test_accuracy"])
        for r in results if r["group"] == "torch" for p in r["curve"]
    ]  # fmt: skip
    if not ours or not torch_points:
        return []
    top = max(a for _, a in ours + torch_points)
    levels, level = [], ACCURACY_FROM
    while level <= top + 1e-12:
        levels.append(round(level, 4))
        level += ACCURACY_STEP
    rows = []
    for level in levels:
        t_ours = min((t for t, a in ours if a >= level - 1e-12), default=math.inf)
        t_torch = min((t for t, a in torch_points if a >= level - 1e-12), default=math.inf)
        ratio = 0.0 if math.isinf(t_ours) else math.inf if math.isinf(t_torch) else t_torch / t_ours
        rows.append({"accuracy": level, "ours_seconds": t_ours, "torch_seconds": t_torch,
                     "ratio": ratio})  # fmt: skip
    return rows


def _find(results, name):
    return next((r for r in results if r["name"] == name), None)


def summarize(results, default_width):
    """The targets: accuracy and fit-time ratio against the MLP; the gain over the ELM."""
    mlp = next(r for r in results if r["name"].startswith("MLPClassifier"))
    default = _find(results, f"ours {default_width}")
    summary = {
        "mlp_accuracy": mlp["test_accuracy"],
        "mlp_seconds": mlp["fit_seconds"],
        "default": {
            "width": default_width,
            "accuracy": default["test_accuracy"],
            "seconds": default["fit_seconds"],
            "mlp_time_ratio": mlp["fit_seconds"] / default["fit_seconds"],
            "meets_accuracy_97_8": default["test_accuracy"] >= 0.978,
            "meets_quarter_time": default["fit_seconds"] <= mlp["fit_seconds"] / 4,
        },
        "gain_over_elm_points": {},
        "sweeps_points": {},
    }
    curve = time_to_accuracy(results)
    if curve:
        worst = min(curve, key=lambda row: row["ratio"])
        summary["time_to_accuracy"] = {
            "levels": curve,
            "min_ratio": worst["ratio"],
            "min_ratio_at": worst["accuracy"],
            "meets_1_5x": worst["ratio"] >= 1.5,
        }
    for r in results:
        if r["group"] == "width":
            elm = next(e for e in results if e["group"] == "elm" and e["width"] == r["width"])
            summary["gain_over_elm_points"][r["width"]] = 100 * (
                r["test_accuracy"] - elm["test_accuracy"]
            )
        if r["group"] == "sweeps":
            summary["sweeps_points"][r["name"]] = {
                "accuracy_gain": 100 * (r["test_accuracy"] - default["test_accuracy"]),
                "extra_seconds": r["fit_seconds"] - default["fit_seconds"],
                "sweeps_kept": r.get("n_iter", 1) - 1,
            }
    return summary


def format_table(results):
    """Text table: test accuracy, fit seconds and iterations of every model."""
    rows = [
        [r["name"], f"{100 * r['test_accuracy']:.2f}%", f"{r['fit_seconds']:.1f}",
         str(r.get("n_iter", ""))]
        for r in results
    ]  # fmt: skip
    return text_table(["model", "test acc", "fit s", "iters"], rows)


def format_summary(s):
    d = s["default"]
    lines = [
        f"MLPClassifier: {100 * s['mlp_accuracy']:.2f} % in {s['mlp_seconds']:.1f} s",
        f"ours (default, width {d['width']}): {100 * d['accuracy']:.2f} % in {d['seconds']:.1f} s "
        f"= MLP time / {d['mlp_time_ratio']:.1f}; >= 97.8 %: {d['meets_accuracy_97_8']}; "
        f"<= 1/4 of MLP time: {d['meets_quarter_time']}",
        "gain over the ELM at equal width (points): "
        + ", ".join(f"{w}: {g:+.2f}" for w, g in s["gain_over_elm_points"].items()),
    ]
    if "time_to_accuracy" in s:
        t = s["time_to_accuracy"]
        lines.append(
            f"time to accuracy, torch MLPs / ours, from {100 * ACCURACY_FROM:.2f} % to "
            f"{100 * t['levels'][-1]['accuracy']:.2f} %: at least {t['min_ratio']:.2f} x "
            f"(at {100 * t['min_ratio_at']:.2f} %); >= 1.5 x everywhere: {t['meets_1_5x']}"
        )
    for name, v in s["sweeps_points"].items():
        lines.append(
            f"{name}: {v['accuracy_gain']:+.2f} points, {v['extra_seconds']:+.1f} s, "
            f"{v['sweeps_kept']} sweep(s) kept"
        )
    return "\n".join(lines)


#: the plot's colour of each group of models
COLORS = {
    "anchor": "black", "width": "tab:blue", "elm": "tab:orange", "head": "tab:green",
    "init": "tab:purple", "sweeps": "tab:red", "depth": "tab:brown", "torch": "tab:gray",
}  # fmt: skip


def plot(path, results, title):
    """Test accuracy against fit seconds, a labelled point per model (widths joined)."""
    marks = []
    for group, color in COLORS.items():
        rows = [r for r in results if r["group"] == group]
        if not rows:
            continue
        if group == "torch":  # a curve per MLP: the test accuracy after every epoch
            for r, style in zip(rows, ("o-", "s-", "^-", "v-", "d-"), strict=False):
                x = [p["seconds"] for p in r["curve"]]
                y = [100 * p["test_accuracy"] for p in r["curve"]]
                marks.append(Line(x, y, style, r["name"], {"color": color, "lw": 0.8, "ms": 3}))
            continue
        seconds = [r["fit_seconds"] for r in rows]
        accuracy = [100 * r["test_accuracy"] for r in rows]
        names = [r["name"] for r in rows]
        marks.append(Scatter(seconds, accuracy, group, names, {"color": color, "s": 28}))
        if group in ("width", "elm"):
            marks.append(Line(seconds, accuracy, options={"color": color, "lw": 0.8}))
    accs = [100 * r["test_accuracy"] for r in results if r["group"] != "torch"]
    panel = Panel(
        marks, xlabel="fit seconds (log)", ylabel="test accuracy (%)", title=title,
        xscale="log", ylim=(max(min(accs) - 0.5, np.percentile(accs, 10) - 2), max(accs) + 0.3),
        legend={"fontsize": 8, "loc": "lower right"},
    )  # fmt: skip
    return save_figure(path, [[panel]], figsize=(10, 6.5), dpi=130)
