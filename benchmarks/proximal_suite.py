# SPDX-License-Identifier: BSD-3-Clause
"""The small-batch proximal regulariser against SGD and Adam at their best learning rates.

LeNet-5 (no BatchNorm) at batch sizes ``--batches`` (8 and 16), all runs
with the reference's schedule (the learning rate divided by 10 at 50 % and
75 % of the steps; SGD with momentum 0.9). Methods, each at every learning
rate of its grid:

- ``sgd``, ``adam``: the plain optimizers (``--sgd-lrs``, ``--adam-lrs``);
- ``prox_sgd``, ``prox_adam``: the same optimizers with
  :class:`solvers.torch.Proximal` at the reference's settings (TRSGD/TRAdam
  of huiqu18/TRAlgorithm: ``lam=0.1``, anchor every 10 steps, ``lam`` times
  ``lr_0 / lr`` after each decay, step ``k`` of a cycle at ``lr / (k + 1)``);
- ``sgd_mean_step`` / ``adam_mean_step``: the plain optimizer at the
  proximal run's mean step, ``H_10 / 10 = 0.293`` times the learning rate
  the proximal variant selected (the baseline the reference's plots lack).

Each grid point is selected on a validation split (the last ``--n-val``
training images, disjoint from the training subset); the table reports the
selected runs' test accuracy (mean over ``--seeds``). The question: does
the proximal gain over the best plain optimizer survive the baseline at the
same mean step? One thread (``torch.set_num_threads(1)``); the training set
is subsampled (``--n-train``) to keep the run near ten minutes.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np

from benchmarks import datasets, vision
from benchmarks.report import (
    Panel,
    Series,
    convergence_panel,
    machine_info,
    markdown_table,
    save_figure,
    write_json,
)

RESULTS = os.path.join(os.path.dirname(__file__), "results")
#: the reference's proximal settings (TRSGD.py / train.py)
PROX = {"lam": 0.1, "anchor_every": 10, "lam_schedule": "inverse_lr", "lr_decay": "harmonic"}
BASE = {"prox_sgd": "sgd", "prox_adam": "adam"}


def add_arguments(p):
    p.add_argument("--data", help="MNIST .npz (x_train, y_train, x_test, y_test); default: digits")
    p.add_argument("--n-train", type=int, default=None, help="default 6000 MNIST, all digits")
    p.add_argument("--n-val", type=int, default=None, help="default 2000 MNIST, 287 digits")
    p.add_argument("--epochs", type=int, default=None, help="default 2 MNIST, 10 digits")
    p.add_argument("--batches", default="8,16")
    p.add_argument("--sgd-lrs", default="0.01,0.03,0.1")
    p.add_argument("--adam-lrs", default="0.0003,0.001,0.003")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--tag", default="", help="suffix of the result files")
    p.add_argument("--out", default=RESULTS)


def _floats(text):
    return [float(v) for v in text.split(",") if v]


def split(data, n_train, n_val):
    """Training subset (first ``n_train``) and validation (last ``n_val``) image tensors."""
    import torch

    X, y, Xt, yt = vision.image_tensors(data)
    n_val = min(n_val, len(X) // 2)
    n_train = min(n_train or len(X), len(X) - n_val)
    return (X[:n_train], y[:n_train], X[-n_val:], y[-n_val:], Xt, yt), torch


def make_optimizer(method, params, lr):
    import torch

    from solvers.torch import Proximal

    base = BASE.get(method, method.replace("_mean_step", ""))
    if base == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
    else:
        opt = torch.optim.Adam(params, lr=lr)
    prox = Proximal(opt, **PROX) if method in BASE else None
    return opt, prox


def train_run(method, lr, batch, seed, tensors, epochs):
    """One run; returns validation accuracy per epoch and the final val/test accuracy."""
    import torch

    X, y, Xv, yv, Xt, yt = tensors
    model = vision.lenet5(seed)
    opt, prox = make_optimizer(method, model.parameters(), lr)
    per_epoch = len(X) // batch
    total = per_epoch * epochs
    sched = torch.optim.lr_scheduler.MultiStepLR(
        opt, milestones=[total // 2, (3 * total) // 4], gamma=0.1
    )
    gen = torch.Generator().manual_seed(seed)
    points, t0 = [], time.perf_counter()
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(len(X), generator=gen)
        model.train()
        for i in range(per_epoch):
            idx = perm[i * batch : (i + 1) * batch]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(X[idx]), y[idx])
            loss.backward()
            opt.step()
            sched.step()
            if i + 1 in (per_epoch // 2, per_epoch):  # validation twice per epoch
                val = vision.metrics(vision.predict_proba(model, Xv), yv)["acc"]
                points.append({"epoch": epoch - 1 + (i + 1) / per_epoch,
                               "seconds": time.perf_counter() - t0, "val_acc": val,
                               "train_loss": float(loss.detach())})  # fmt: skip
    test = vision.metrics(vision.predict_proba(model, Xt), yt)
    diverged = not math.isfinite(points[-1]["train_loss"])
    return {"method": method, "lr": lr, "batch": batch, "seed": seed, "points": points,
            "val_acc": points[-1]["val_acc"], "test_acc": test["acc"], "test_nll": test["nll"],
            "diverged": diverged, "steps": total,
            "proximal_steps": None if prox is None else prox.step_count}  # fmt: skip


def _mean(runs, key):
    return float(np.mean([r[key] for r in runs]))


def select(runs, method, batch):
    """The learning rate of ``method`` with the best mean validation accuracy, and its runs."""
    by_lr = {}
    for r in runs:
        if r["method"] == method and r["batch"] == batch:
            by_lr.setdefault(r["lr"], []).append(r)
    if not by_lr:
        return None
    lr = max(by_lr, key=lambda v: (_mean(by_lr[v], "val_acc"), -v))
    rs = by_lr[lr]
    return {"method": method, "batch": batch, "lr": lr, "val_acc": _mean(rs, "val_acc"),
            "test_acc": _mean(rs, "test_acc"), "test_nll": _mean(rs, "test_nll"),
            "test_acc_seeds": [r["test_acc"] for r in rs],
            "grid": {str(v): _mean(g, "val_acc") for v, g in sorted(by_lr.items())}}  # fmt: skip


def verdict(rows, batch):
    """Gains of the proximal variants over the best plain optimizer and the equal-mean-step one."""
    sel = {r["method"]: r for r in rows if r["batch"] == batch}
    out = {}
    for prox, base in BASE.items():
        if prox not in sel or base not in sel:
            continue
        fair = sel.get(f"{base}_mean_step")
        best_plain = max(sel[base]["test_acc"], fair["test_acc"] if fair else -1.0)
        out[prox] = {
            "gain_over_best_lr": sel[prox]["test_acc"] - sel[base]["test_acc"],
            "gain_over_mean_step": None if fair is None
            else sel[prox]["test_acc"] - fair["test_acc"],
            "gain_over_best_plain": sel[prox]["test_acc"] - best_plain,
            "survives": sel[prox]["test_acc"] > best_plain,
        }  # fmt: skip
    return out


def format_rows(rows):
    table = []
    for r in rows:
        seeds = " / ".join(f"{100 * a:.2f}" for a in r["test_acc_seeds"])
        table.append([r["batch"], r["method"], f"{r['lr']:g}", f"{100 * r['val_acc']:.2f} %",
                      f"{100 * r['test_acc']:.2f} %", seeds, f"{r['test_nll']:.4f}"])  # fmt: skip
    return markdown_table(
        ["batch", "method", "selected lr", "val acc", "test acc", "seeds", "test NLL"], table
    )


def plot(path, runs, rows, batches):
    panels = []
    for b in batches:
        series = []
        for r in rows:
            if r["batch"] != b:
                continue
            rs = [x for x in runs if x["method"] == r["method"] and x["batch"] == b
                  and x["lr"] == r["lr"]]  # fmt: skip
            pts = [
                {
                    "epoch": p["epoch"],
                    "val_acc": 100 * _mean([x["points"][i] for x in rs], "val_acc"),
                }
                for i, p in enumerate(rs[0]["points"])
            ]
            series.append(Series(f"{r['method']} lr {r['lr']:g}", pts))
        panels.append(
            convergence_panel(series, "epoch", "val_acc", xlabel="epoch",
                              ylabel="validation accuracy (%)", title=f"LeNet-5, batch {b}",
                              legend={"fontsize": 7})
        )  # fmt: skip
    panels = panels or [Panel()]
    return save_figure(path, [panels], figsize=(5.5 * len(panels), 4), dpi=110)


def plan(args):
    """``[(method, lr, batch, seed)]``: the grids, then the mean-step baselines (added later)."""
    tasks = []
    for b in [int(v) for v in args.batches.split(",") if v]:
        for seed in range(args.seeds):
            grids = {"sgd": args.sgd_lrs, "adam": args.adam_lrs}
            for method in ("sgd", "adam", "prox_sgd", "prox_adam"):
                lrs = _floats(grids[BASE.get(method, method)])
                tasks += [(method, lr, b, seed) for lr in lrs]
    return tasks


def run(args):
    try:
        import torch
    except ImportError as e:
        raise SystemExit("The proximal benchmark needs torch: pip install torch==2.13.0") from e
    from solvers.torch import Proximal

    torch.set_num_threads(1)
    data = datasets.load(args.data)
    mnist = data.name != "digits"
    n_train = args.n_train or (6000 if mnist else None)
    n_val = args.n_val or (2000 if mnist else 287)
    epochs = args.epochs or (2 if mnist else 10)
    tensors, _ = split(data, n_train, n_val)
    batches = [int(v) for v in args.batches.split(",") if v]
    print(f"{data.name}: {len(tensors[0])} train / {len(tensors[2])} val / {len(tensors[4])} "
          f"test; {epochs} epochs; batches {batches}", flush=True)  # fmt: skip
    t_start = time.perf_counter()
    factor = Proximal.mean_step_factor(PROX["anchor_every"], PROX["lr_decay"])
    runs, done = [], []
    for b in batches:  # a batch size at a time; the JSON is rewritten after each
        for method, lr, _, seed in (t for t in plan(args) if t[2] == b):
            _report(runs, train_run(method, lr, b, seed, tensors, epochs))
        for prox, base in BASE.items():
            chosen = select(runs, prox, b)
            if chosen is not None:
                lr = chosen["lr"] * factor
                for seed in range(args.seeds):
                    _report(runs, train_run(f"{base}_mean_step", lr, b, seed, tensors, epochs))
        done.append(b)
        meta = {"n_train": len(tensors[0]), "n_val": len(tensors[2]), "epochs": epochs,
                "factor": factor, "t_start": t_start, "complete": done == batches}  # fmt: skip
        payload, stem = _write(args, data, runs, done, meta)
    print(format_rows(payload["selected"]))
    for b, v in payload["verdict"].items():
        print(f"  batch {b}: {v}")
    print(f"wrote {stem}.json and {stem}.png ({math.ceil(time.perf_counter() - t_start)} s)")
    return payload


def _report(runs, r):
    runs.append(r)
    print(
        f"  batch {r['batch']:3d} {r['method']:14s} lr {r['lr']:<8.4g} seed {r['seed']}: "
        f"val {100 * r['val_acc']:.2f} % test {100 * r['test_acc']:.2f} %",
        flush=True,
    )


def _write(args, data, runs, batches, meta):
    """Select, judge and write the JSON and PNG of the batch sizes done so far."""
    methods = ("sgd", "sgd_mean_step", "prox_sgd", "adam", "adam_mean_step", "prox_adam")
    rows = [s for b in batches for m in methods if (s := select(runs, m, b)) is not None]
    payload = {
        "suite": "proximal",
        "dataset": data.name,
        "n_train": meta["n_train"],
        "n_val": meta["n_val"],
        "epochs": meta["epochs"],
        "proximal": PROX,
        "mean_step_factor": meta["factor"],
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "func")},
        "complete": meta["complete"],
        "machine": machine_info(),
        "total_seconds": time.perf_counter() - meta["t_start"],
        "selected": rows,
        "verdict": {str(b): verdict(rows, b) for b in batches},
        "runs": runs,
    }
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"proximal_{data.name}{args.tag}")
    write_json(stem + ".json", payload)
    plot(stem + ".png", runs, rows, batches)
    return payload, stem
