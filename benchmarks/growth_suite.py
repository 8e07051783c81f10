# SPDX-License-Identifier: BSD-3-Clause
"""Growing a small CNN under FLOPs budgets: splitting, energy-aware splitting, Firefly.

A LeNet-style CNN (``Conv-Tanh-AvgPool-Conv-Tanh-AvgPool-Flatten-Linear-Tanh-
Linear``; 5 x 5 kernels on MNIST, 3 x 3 on the 8 x 8 digits; Tanh and average
pooling because splitting needs a smooth network) starts narrow
(``--start``, channels/channels/units) and is grown in ``--rounds`` rounds;
each round may add ``--grow`` times the network's current FLOPs
(multiply-accumulates per image, :func:`solvers.torch.growth.model_flops`)
and is followed by ``--epochs-per-round`` epochs of Adam (lr 1e-3, batch 100,
a new optimizer after each growth), after ``--warmup-epochs`` on the narrow
network; ``--final-epochs`` more follow the last round (the papers grow, then
fine-tune the final network). Growth methods:

- ``s2d``: splitting steepest descent (exact eigenpairs) with a **count**
  budget, the reference code's rule: ``--grow`` times the number of neurons
  of the splittable layers, the most negative ``lambda_min`` first (only
  ``lambda_min < 0``), whatever FLOPs they cost;
- ``energy``: energy-aware splitting, ``eigen="rayleigh"`` (3 epochs) and
  the linear program under the round's FLOPs budget;
- ``firefly``: :class:`~solvers.torch.FireflyGrowth` (8 new-neuron
  candidates per layer, 1 epoch of candidate training) under the same budget;
- ``fresh``: new units at the default initialisation with zero outgoing
  weights, in random layers until the budget is spent.

Scoring reads ``--n-score`` training images (not counted as epochs; its
seconds are reported). Baselines trained for the same total epochs from the
start: ``scratch_energy`` and ``scratch_firefly``, the final architectures of
the two budgeted methods from a fresh initialisation; ``gmp_energy`` and
``gmp_firefly``, a wide network (``--wide``) pruned by gradual magnitude
pruning (Zhu & Gupta 2017, layer-wise, from epoch 1 to 60 % of training) to
the final FLOPs of those methods (a pruned weight costs nothing).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from benchmarks import datasets
from benchmarks.report import (
    Line,
    Panel,
    Scatter,
    Series,
    convergence_panel,
    machine_info,
    markdown_table,
    save_figure,
    write_json,
)

RESULTS = os.path.join(os.path.dirname(__file__), "results")
GROWTH = ("s2d", "energy", "firefly", "fresh")
BASELINES = ("scratch_energy", "scratch_firefly", "gmp_energy", "gmp_firefly")
_DATA = {}


def add_arguments(p):
    p.add_argument("--data", help="MNIST .npz (x_train, y_train, x_test, y_test); default: digits")
    p.add_argument(
        "--n-train", type=int, default=None, help="first N training images (MNIST default 10000)"
    )
    p.add_argument("--start", default="2,4,16", help="narrow widths: conv1,conv2,fc channels")
    p.add_argument("--wide", default="8,16,64", help="the network pruned by gmp")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--grow", type=float, default=0.5, help="FLOPs added per round / current")
    p.add_argument("--warmup-epochs", type=int, default=2)
    p.add_argument("--epochs-per-round", type=int, default=1)
    p.add_argument("--final-epochs", type=int, default=3, help="after the last round")
    p.add_argument("--n-score", type=int, default=2000, help="training images read to score")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--jobs", type=int, default=1, help="parallel runs (1 thread each)")
    p.add_argument("--tag", default="", help="suffix of the result files")
    p.add_argument("--out", default=RESULTS)


# -- model, data and training --------------------------------------------------------------


def cnn(widths, side, seed):
    """The LeNet-style CNN with ``widths = (conv1, conv2, fc)`` on ``side x side`` images."""
    import torch

    torch.manual_seed(seed)
    nn = torch.nn
    c1, c2, h = widths
    k = 5 if side >= 16 else 3
    flat = c2 * (side // 4) ** 2
    return nn.Sequential(
        nn.Conv2d(1, c1, k, padding=k // 2), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(c1, c2, k, padding=k // 2), nn.Tanh(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(flat, h), nn.Tanh(), nn.Linear(h, 10),
    )  # fmt: skip


def widths_of(model):
    return [model[0].out_channels, model[3].out_channels, model[7].out_features]


def _tensors():
    import torch

    d = _DATA["data"]
    side = math.isqrt(d.X_train.shape[1])
    shape = (-1, 1, side, side)
    return (
        torch.from_numpy(d.X_train).reshape(shape), torch.from_numpy(d.y_train),
        torch.from_numpy(d.X_test).reshape(shape), torch.from_numpy(d.y_test), side,
    )  # fmt: skip


def evaluate(model, X, y):
    """(accuracy, mean cross-entropy) in batches of 1000."""
    import torch

    correct, loss = 0, 0.0
    with torch.no_grad():
        for i in range(0, X.shape[0], 1000):
            out = model(X[i : i + 1000])
            correct += int((out.argmax(1) == y[i : i + 1000]).sum())
            loss += float(torch.nn.functional.cross_entropy(out, y[i : i + 1000], reduction="sum"))
    return correct / X.shape[0], loss / X.shape[0]


def train_epochs(model, opt, X, y, epochs, g, batch=100):
    import torch

    n = X.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(n // batch):
            idx = perm[i * batch : (i + 1) * batch]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
            opt.step()


# -- growth --------------------------------------------------------------------------------


def fresh_units(model, budget, sample, g):
    """``model`` with default-initialised units (zero outgoing weights) in random layers.

    Units are added one at a time to a random layer whose cost still fits,
    until none fits; the function is unchanged.
    """
    import copy

    import torch

    from solvers.torch.growth.neuron_cost import neuron_costs, pair_costs
    from solvers.torch.growth.splittable import splittable_layers
    from solvers.torch.growth.splitting import append_neurons

    layers = splittable_layers(model)
    costs = {i: float(c[0]) for i, c in neuron_costs(model, layers, sample).items()}
    pairs = pair_costs(model, layers, sample)
    count, left = dict.fromkeys(layers, 0), budget

    def cost(i):  # one more unit in layer i, with the weights to new units next to it
        extra = pairs[i][1] * count[pairs[i][0]] if i in pairs else 0.0
        for j, (nxt, pair) in pairs.items():
            extra += pair * count[j] if nxt == i else 0.0
        return costs[i] + extra

    while True:
        fits = [i for i in layers if cost(i) <= left]
        if not fits:
            break
        i = fits[int(torch.randint(len(fits), (1,), generator=g))]
        left -= cost(i)
        count[i] += 1
    new = copy.deepcopy(model)
    for i, (_, nxt) in sorted(layers.items(), reverse=True):
        k = count[i]
        if not k:
            continue
        layer, after = new[i], new[nxt]
        init = type(layer)(*_shape_args(layer, k))  # default initialisation, k rows
        a = init.weight.detach().reshape(k, -1)
        b = init.bias.detach() if layer.bias is not None else None
        m = layer.weight.shape[0]
        block = after.weight.numel() // (after.weight.shape[0] * m)
        u = torch.zeros(after.weight.shape[0], k, block)
        new[i], new[nxt] = append_neurons(layer, after, a, b, u)
    return new, count


def _shape_args(layer, k):
    """Constructor arguments of a layer like ``layer`` with ``k`` outputs (default init)."""
    import torch

    if type(layer) is torch.nn.Linear:
        return layer.in_features, k
    return layer.in_channels, k, layer.kernel_size


def grow_round(method, model, budget, grow, score_data, sample, seed, g):
    """One growth round of ``method``; returns the new model and a log record."""
    from solvers.torch import FireflyGrowth, NeuronSplitting

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if method == "fresh":
            new, count = fresh_units(model, budget, sample, g)
            info = {"added": count}
        elif method == "firefly":
            firefly = FireflyGrowth(model, n_candidates=8, candidate_epochs=1, seed=seed)
            firefly.score(score_data)
            picks = firefly.select(budget=budget)
            new = firefly.grow(budget=budget)
            info = {"splits": sum(p.kind == "split" for p in picks),
                    "new": sum(p.kind == "new" for p in picks)}  # fmt: skip
        else:
            kw = {"eigen": "rayleigh", "rayleigh_epochs": 3} if method == "energy" else {}
            splitter = NeuronSplitting(model, seed=seed, **kw)
            eig = splitter.score(score_data)
            if method == "energy":
                new = splitter.split(budget=budget, eps=1e-2)
            else:
                neurons = sum(len(c) for c in splitter.costs_.values())
                new = splitter.split(max(1, round(grow * neurons)), eps=1e-2)
            info = {"negative_lambda_min": {i: int((e.lambda_min < 0).sum()) for i, e in
                                            eig.items()}}  # fmt: skip
    info["score_seconds"] = time.perf_counter() - t0
    return new, info


def growth_run(method, seed, cfg):
    """Warm-up, then ``rounds`` of growth and training; a point after each stage."""
    import torch

    from solvers.torch.growth import model_flops

    torch.set_num_threads(1)
    X, y, X_te, y_te, side = _tensors()
    g = torch.Generator().manual_seed(1000 + seed)
    model = cnn(cfg["start"], side, seed)
    points, log, epoch = [], [], 0

    def point(stage):
        acc, loss = evaluate(model, X_te, y_te)
        points.append({"stage": stage, "epoch": epoch, "flops": model_flops(model, X[:1]),
                       "widths": widths_of(model), "test_acc": acc, "test_loss": loss})  # fmt: skip

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_epochs(model, opt, X, y, cfg["warmup_epochs"], g)
    epoch += cfg["warmup_epochs"]
    point(0)
    for r in range(1, cfg["rounds"] + 1):
        budget = cfg["grow"] * model_flops(model, X[:1], nonzero=False)
        idx = torch.randperm(X.shape[0], generator=g)[: cfg["n_score"]]
        score_data = [(X[idx[i : i + 250]], y[idx[i : i + 250]]) for i in range(0, len(idx), 250)]
        before = model_flops(model, X[:1], nonzero=False)
        model, info = grow_round(method, model, budget, cfg["grow"], score_data, X[:1], seed, g)
        added = model_flops(model, X[:1], nonzero=False) - before
        info.update({"round": r, "budget": budget, "added_flops": added})
        log.append(info)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        train_epochs(model, opt, X, y, cfg["epochs_per_round"], g)
        epoch += cfg["epochs_per_round"]
        point(r)
    if cfg["final_epochs"]:
        train_epochs(model, opt, X, y, cfg["final_epochs"], g)
        epoch += cfg["final_epochs"]
        point("final")
    return {"method": method, "seed": seed, "points": points, "rounds": log}


def baseline_run(method, seed, cfg, widths, target_flops):
    """``scratch_*``: ``widths`` from scratch; ``gmp_*``: the wide net pruned to that FLOPs."""
    import torch

    from solvers.torch import GradualMagnitudePruning
    from solvers.torch.growth import model_flops

    torch.set_num_threads(1)
    X, y, X_te, y_te, side = _tensors()
    g = torch.Generator().manual_seed(1000 + seed)
    epochs = cfg["warmup_epochs"] + cfg["rounds"] * cfg["epochs_per_round"] + cfg["final_epochs"]
    wide = method.startswith("gmp")
    model = cnn(cfg["wide"] if wide else widths, side, 10_000 + seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    out = {"method": method, "seed": seed}
    if wide:
        steps = X.shape[0] // 100
        total = epochs * steps
        density = min(1.0, target_flops / model_flops(model, X[:1]))
        ctl = GradualMagnitudePruning(
            model, opt, density, start=steps, end=max(steps, int(0.6 * total)),
            update_every=max(5, min(100, total // 40)),
        )  # fmt: skip
        out["density"] = density
    train_epochs(model, opt, X, y, epochs, g)
    if wide:
        ctl.remove()
    acc, loss = evaluate(model, X_te, y_te)
    out["points"] = [{"stage": "final", "epoch": epochs, "flops": model_flops(model, X[:1]),
                      "widths": widths_of(model), "test_acc": acc, "test_loss": loss}]  # fmt: skip
    return out


def _growth_task(task):
    return growth_run(*task)


def _baseline_task(task):
    return baseline_run(*task)


# -- summary, table, figure ----------------------------------------------------------------


def summarize(runs):
    """Per method: mean final accuracy, FLOPs and widths over seeds, and the targets."""
    out = {}
    for method in (*GROWTH, *BASELINES):
        rs = [r for r in runs if r["method"] == method]
        if not rs:
            continue
        last = [r["points"][-1] for r in rs]
        out[method] = {
            "test_acc_mean": float(np.mean([p["test_acc"] for p in last])),
            "test_acc_seeds": [p["test_acc"] for p in last],
            "test_loss_mean": float(np.mean([p["test_loss"] for p in last])),
            "flops_mean": float(np.mean([p["flops"] for p in last])),
            "widths": [p["widths"] for p in last],
        }
    acc = {m: v["test_acc_mean"] for m, v in out.items()}
    targets = {}
    for m in ("energy", "firefly"):
        if m in acc and f"gmp_{m}" in acc:
            targets[f"{m}_vs_pruned_points"] = 100 * (acc[m] - acc[f"gmp_{m}"])
        if m in acc and f"scratch_{m}" in acc:
            targets[f"{m}_vs_scratch_points"] = 100 * (acc[m] - acc[f"scratch_{m}"])
    pruned = [targets.get(f"{m}_vs_pruned_points") for m in ("energy", "firefly")]
    if any(p is not None for p in pruned):
        targets["energy_or_firefly_at_or_above_pruned"] = any(
            p is not None and p >= 0 for p in pruned
        )
    if "firefly" in acc and "s2d" in acc:
        targets["firefly_vs_s2d_points"] = 100 * (acc["firefly"] - acc["s2d"])
        targets["firefly_above_s2d"] = acc["firefly"] > acc["s2d"]
    return {"methods": out, "targets": targets}


def format_table(summary):
    headers = ["method", "final widths", "MFLOPs", "test acc. (mean)", "seeds", "test NLL"]
    cells = []
    for m, v in summary["methods"].items():
        cells.append([
            m, " / ".join("-".join(str(w) for w in ws) for ws in v["widths"]),
            f"{v['flops_mean'] / 1e6:.3f}", f"{100 * v['test_acc_mean']:.2f} %",
            " / ".join(f"{100 * a:.2f}" for a in v["test_acc_seeds"]),
            f"{v['test_loss_mean']:.4f}",
        ])  # fmt: skip
    return markdown_table(headers, cells)


def plot(path, runs, title):
    """Test accuracy against FLOPs (stages of the growth runs, baselines as points)
    and against epochs."""
    marks = []
    series = []
    for method in GROWTH:
        rs = [r for r in runs if r["method"] == method]
        if not rs:
            continue
        n = len(rs[0]["points"])
        pts = [
            {"flops": float(np.mean([r["points"][k]["flops"] for r in rs])) / 1e6,
             "epoch": rs[0]["points"][k]["epoch"],
             "test_acc": 100 * float(np.mean([r["points"][k]["test_acc"] for r in rs]))}
            for k in range(n)
        ]  # fmt: skip
        series.append(Series(method, pts))
        marks.append(Line([p["flops"] for p in pts], [p["test_acc"] for p in pts], "-o", method,
                          {"markersize": 4}))  # fmt: skip
    for method in BASELINES:
        rs = [r for r in runs if r["method"] == method]
        if rs:
            fl = float(np.mean([r["points"][-1]["flops"] for r in rs])) / 1e6
            acc = 100 * float(np.mean([r["points"][-1]["test_acc"] for r in rs]))
            marker = "s" if method.startswith("gmp") else "^"
            marks.append(Scatter([fl], [acc], method, options={"marker": marker}))
    by_flops = Panel(marks=tuple(marks), xlabel="MFLOPs (multiply-accumulates per image)",
                     ylabel="test accuracy (%)", title=title, legend={"fontsize": 7})  # fmt: skip
    by_epoch = convergence_panel(
        series, "epoch", "test_acc", xlabel="epoch", ylabel="test accuracy (%)",
        title="growth runs, after each stage", legend={"fontsize": 7},
    )  # fmt: skip
    return save_figure(path, [[by_flops, by_epoch]], figsize=(11, 4), dpi=110)


# -- the suite -----------------------------------------------------------------------------


def config(args, data):
    n_train = data.X_train.shape[0]
    return {
        "start": [int(w) for w in args.start.split(",")],
        "wide": [int(w) for w in args.wide.split(",")],
        "rounds": args.rounds,
        "grow": args.grow,
        "warmup_epochs": args.warmup_epochs,
        "epochs_per_round": args.epochs_per_round,
        "final_epochs": args.final_epochs,
        "n_score": min(args.n_score, n_train),
    }


def run(args):
    try:
        import torch  # noqa: F401
    except ImportError as e:
        raise SystemExit("The growth benchmark needs torch: pip install torch==2.13.0") from e
    n_train = args.n_train
    if n_train is None and args.data is not None:
        n_train = 10000
    data = datasets.load(args.data, n_train=n_train)
    _DATA["data"] = data
    cfg = config(args, data)
    t_start = time.perf_counter()
    print(
        f"{data.name}: {data.X_train.shape[0]} train / {data.X_test.shape[0]} test; "
        f"{len(GROWTH) * args.seeds} growth runs, {len(BASELINES) * args.seeds} baselines",
        flush=True,
    )
    tasks = [(m, s, cfg) for s in range(args.seeds) for m in GROWTH]
    with ProcessPoolExecutor(max_workers=args.jobs, initializer=_init, initargs=(data,)) as pool:
        runs = list(pool.map(_growth_task, tasks))
        for r in runs:
            p = r["points"][-1]
            print(f"  {r['method']:16s} seed {r['seed']}: {100 * p['test_acc']:.2f} % at "
                  f"{p['flops'] / 1e6:.3f} MFLOPs, widths {p['widths']}", flush=True)  # fmt: skip
        base_tasks = []
        for s in range(args.seeds):
            for m in ("energy", "firefly"):
                final = next(r for r in runs if r["method"] == m and r["seed"] == s)["points"][-1]
                base_tasks.append((f"scratch_{m}", s, cfg, final["widths"], final["flops"]))
                base_tasks.append((f"gmp_{m}", s, cfg, final["widths"], final["flops"]))
        base = list(pool.map(_baseline_task, base_tasks))
    for r in base:
        p = r["points"][-1]
        print(f"  {r['method']:16s} seed {r['seed']}: {100 * p['test_acc']:.2f} % at "
              f"{p['flops'] / 1e6:.3f} MFLOPs", flush=True)  # fmt: skip
    runs += base
    summary = summarize(runs)
    print(format_table(summary))
    for k, v in summary["targets"].items():
        print(f"  {k}: {v}")
    payload = {
        "suite": "growth", "dataset": data.name, "n_train": int(data.X_train.shape[0]),
        "n_test": int(data.X_test.shape[0]), "config": cfg, "seeds": args.seeds,
        "machine": machine_info(), "total_seconds": time.perf_counter() - t_start,
        "summary": summary, "runs": runs,
    }  # fmt: skip
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"growth{args.tag}")
    write_json(stem + ".json", payload)
    title = f"CNN grown from {'-'.join(map(str, cfg['start']))} on {data.name}"
    plot(stem + ".png", runs, title)
    print(f"wrote {stem}.json and {stem}.png ({math.ceil(time.perf_counter() - t_start)} s)")
    return payload


def _init(data):
    _DATA["data"] = data
