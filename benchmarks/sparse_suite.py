# SPDX-License-Identifier: BSD-3-Clause
"""Deep sparse methods on LeNet-300-100, and growth by neuron splitting.

Accuracy runs (``--methods``, ``--densities``, ``--seeds``): LeNet-300-100
(ReLU), the same epochs, batches, initial weights and optimizer for every
method: SGD (lr 0.1, momentum 0.9, Nesterov, weight decay 5e-4) with a cosine
learning rate, batch 100. Sparse methods (all through
:mod:`solvers.torch`, ERK layer densities unless said otherwise):

- ``static``: a random ERK mask, fixed;
- ``set``: SET growth with the ITOP schedule (drop 0.5, cosine decay to the
  end of training, an update every 1/65 of training);
- ``rigl``: RigL's schedule (drop 0.3, cosine, updates every 100 steps, the
  last at 75 %);
- ``rigl_itop``: RigL growth with the ITOP schedule (as ``set``, an update
  every 1/24 of training).

  The ITOP intervals are those of the ITOP README (Liu et al. 2021: 1500
  steps for SET-ITOP and 4000 for RigL-ITOP in a 250-epoch CIFAR run of about
  97,700 steps) as fractions of training. On MNIST (12,000 steps) that is
  every 184 and 500 steps; RigL-ITOP with RigL's 100 steps instead scores
  97.05 % at 98 % sparsity against 97.68 % (2 seeds, 20 epochs), with
  the same R_s: grown weights need time to train before the next drop;
- ``ssgd``: dense SGD for 40 % of the epochs, SSGD (``lam=1e-5``,
  ``eps=1e-2``) to 70 %, a magnitude prune to the ERK densities, then
  fine-tuning on the fixed mask (SSGD from a random initialisation freezes
  the small weights and trains poorly: 64 % after 2 epochs on MNIST).
  ``(lam, eps)`` was chosen on a validation split (50k / 10k of the MNIST
  training set, seed 0) from (1e-5, 1e-4), (1e-5, 1e-3), (1e-5, 1e-2),
  (1e-6, 1e-4), (1e-6, 1e-3), (0, 1e-3): validation accuracy 98.56 / 97.94 %
  at densities 0.1 / 0.02 against 97.95 / 97.47 % for (1e-5, 1e-4), whose
  penalty ``2 lam theta / mean(w^2)`` grows as the layer shrinks (up to
  ``2 lam / eps``) and destabilised training;
- ``gmp``: gradual magnitude pruning (cubic, layer-wise) from epoch 1 to
  60 % of training;
- ``snip``, ``synflow``: pruning at initialisation (global scores; SNIP on
  10 batches, SynFlow 100 rounds), then a fixed mask;
- opt-in (``--methods``): ``static_si``, ``set_si``, ``rigl_si``,
  ``rigl_itop_si``, the same after ``rescale_init_()`` (each unit's weights
  scaled by ``sqrt(fan_in / active fan_in)``, Evci et al. 2022).

``--jobs`` runs accuracy runs in parallel processes of one thread each, so
their per-epoch seconds are not the timing figures: those come from a
separate phase on all threads with nothing else running, one epoch per method
per round, interleaved over ``--timing-rounds`` rounds in a rotating order
(the median over rounds of each epoch's time over the same round's dense
epoch: the machine's speed may drift between rounds); ``--timing-only`` runs
just this phase.

Splitting (``--split-widths``): a 784-16-10 Tanh MLP trained with Adam is
grown by splitting steepest descent (and by signed splitting) to the listed
widths, with equal epochs per stage, against the final width trained from
scratch for the same total epochs, and against two other ways to grow:
random neurons split along random directions (the criterion's ablation) and
fresh units at the default initialisation.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from benchmarks import datasets
from benchmarks.report import (
    Series,
    convergence_panel,
    machine_info,
    markdown_table,
    save_figure,
    write_json,
)

RESULTS = os.path.join(os.path.dirname(__file__), "results")
METHODS = ("dense", "static", "set", "rigl", "rigl_itop", "ssgd", "gmp", "snip", "synflow")
#: opt-in variants: the same controller after ``rescale_init_()`` (sparsity-aware init)
EXTRA_METHODS = ("static_si", "set_si", "rigl_si", "rigl_itop_si")
_DATA = {}


def add_arguments(p):
    p.add_argument("--data", help="MNIST .npz (x_train, y_train, x_test, y_test); default: digits")
    p.add_argument("--epochs", type=int, default=None, help="default 20 MNIST, 40 digits")
    p.add_argument("--densities", default="0.1,0.05,0.02", help="kept fractions (1 - sparsity)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--jobs", type=int, default=2, help="parallel accuracy runs (1 thread each)")
    p.add_argument("--timing-rounds", type=int, default=3)
    p.add_argument("--split-widths", default="16,32,64", help="'' skips the splitting runs")
    p.add_argument("--split-eps", type=float, default=1e-2, help="offspring displacement")
    p.add_argument(
        "--timing-only", action="store_true", help="only the interleaved seconds-per-epoch phase"
    )
    p.add_argument("--tag", default="", help="suffix of the result files")
    p.add_argument("--out", default=RESULTS)


# -- models and training -------------------------------------------------------------------


def lenet(d_in, seed):
    import torch

    torch.manual_seed(seed)
    nn = torch.nn
    return nn.Sequential(
        nn.Linear(d_in, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10)
    )


def _tensors():
    import torch

    d = _DATA["data"]
    return tuple(torch.from_numpy(a) for a in (d.X_train, d.y_train, d.X_test, d.y_test))


def accuracy(model, X, y):
    import torch

    with torch.no_grad():
        return float((model(X).argmax(1) == y).float().mean())


def train_epoch(model, opt, X, y, perm, batch, scheduler=None):
    """One epoch of cross-entropy steps on the full batches of ``perm``; the scheduler steps too."""
    import torch

    for i in range(X.shape[0] // batch):
        idx = perm[i * batch : (i + 1) * batch]
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()


def make_controller(method, model, opt, density, total_steps, steps_per_epoch, X, y, seed):
    """The method's controller (None for dense); a dict of post-epoch actions."""
    import torch

    from solvers.torch import (
        SSGD,
        DynamicSparsity,
        GradualMagnitudePruning,
        StaticSparsity,
        prune_at_init,
    )

    every = max(5, min(100, total_steps // 40))  # 100 steps (RigL's) unless training is short
    itop_every = {"set": max(5, total_steps // 65), "rigl": max(5, total_steps // 24)}
    if method.endswith("_si"):
        ctl = make_controller(
            method[:-3], model, opt, density, total_steps, steps_per_epoch, X, y, seed
        )
        ctl.rescale_init_()
        return ctl
    if method == "dense":
        return None
    if method == "static":
        return StaticSparsity(model, opt, density, seed=seed)
    if method in ("set", "rigl_itop"):
        # DynamicSparsity's defaults given total_steps (issue 16), spelled out; the
        # floor of 5 steps only matters on digits
        grow = "set" if method == "set" else "rigl"
        return DynamicSparsity(
            model, opt, density, grow=grow, drop_fraction=0.5,
            update_every=itop_every[grow], total_steps=total_steps, end=None, seed=seed,
        )  # fmt: skip
    if method == "rigl":
        return DynamicSparsity(
            model, opt, density, grow="rigl", drop_fraction=0.3, update_every=every,
            total_steps=total_steps, end=0.75, seed=seed,
        )  # fmt: skip
    if method == "ssgd":
        return SSGD(model, opt, lam=1e-5, eps=1e-2)
    if method == "gmp":
        return GradualMagnitudePruning(
            model, opt, density, start=steps_per_epoch,
            end=max(steps_per_epoch, int(0.6 * total_steps)), update_every=every,
        )  # fmt: skip
    if method in ("snip", "synflow"):
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(X.shape[0], generator=g)[: min(1000, X.shape[0] // 100 * 100)]
        idx = idx.reshape(-1, 100)
        masks = prune_at_init(
            model, density, method, data=[(X[i], y[i]) for i in idx],
            input_shape=(X.shape[1],),
        )  # fmt: skip
        return StaticSparsity(model, opt, masks=masks)
    raise ValueError(f"unknown method {method!r}")


def train_run(method, density, seed, epochs, threads=1):
    """One accuracy run: per-epoch test accuracy, seconds, R_s; final densities."""
    import torch

    from solvers.torch import DynamicSparsity, StaticSparsity

    torch.set_num_threads(threads)
    X, y, X_te, y_te = _tensors()
    n, batch = X.shape[0], 100
    steps_per_epoch = n // batch
    total = epochs * steps_per_epoch
    model = lenet(X.shape[1], seed)
    opt = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total)

    def controller(name):
        return make_controller(name, model, opt, density, total, steps_per_epoch, X, y, seed)

    ctl = None if method == "ssgd" else controller(method)  # SSGD starts from a dense net
    ssgd_epoch = max(1, round(0.4 * epochs)) if method == "ssgd" else None
    prune_epoch = max(2, round(0.7 * epochs)) if method == "ssgd" else None
    g = torch.Generator().manual_seed(1000 + seed)
    points = []
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(n, generator=g)
        t0 = time.perf_counter()
        train_epoch(model, opt, X, y, perm, batch, sched)
        seconds = time.perf_counter() - t0
        if epoch == ssgd_epoch:  # pre-trained dense: SSGD from here
            ctl = controller("ssgd")
        if epoch == prune_epoch:  # SSGD: prune (ERK densities), then fine-tune on the mask
            masks = ctl.prune_masks(density, scope="layer", distribution="erk")
            ctl.remove()
            ctl = StaticSparsity(model, opt, masks=masks)
        pt = {"epoch": epoch, "seconds": seconds, "test_acc": accuracy(model, X_te, y_te)}
        if isinstance(ctl, DynamicSparsity):
            pt["itop_rate"] = ctl.itop_rate
        points.append(pt)
    out = {"method": method, "density": density, "seed": seed, "points": points}
    if ctl is not None and hasattr(ctl, "densities"):
        out["final_density"] = ctl.density
        out["layer_densities"] = ctl.densities()
    if isinstance(ctl, DynamicSparsity):
        out["itop_rate"] = ctl.itop_rate
        out["layer_itop_rates"] = ctl.itop_rates()
    return out


def _run_task(task):
    return train_run(*task)


def timing(methods, density, rounds):
    """Seconds per epoch of each method, epochs interleaved across methods.

    Returns the median seconds per epoch and the median over rounds of the
    epoch's time over the same round's dense epoch (``relative_to_dense``).
    """
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2)
    X, y, _, _ = _tensors()
    n, batch = X.shape[0], 100
    steps = n // batch
    setups = {}
    for m in methods:
        model = lenet(X.shape[1], 0)
        opt = torch.optim.SGD(
            model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4
        )
        ctl = make_controller(m, model, opt, density, 10 * steps, steps, X, y, 0)
        setups[m] = (model, opt, ctl)
    times = {m: [] for m in methods}
    g = torch.Generator().manual_seed(0)
    for r in range(rounds):
        perm = torch.randperm(n, generator=g)
        k = r % len(methods)  # rotate the order: no method always runs first
        for m in methods[k:] + methods[:k]:
            model, opt, _ = setups[m]
            t0 = time.perf_counter()
            train_epoch(model, opt, X, y, perm, batch)
            times[m].append(time.perf_counter() - t0)
    med = {m: float(np.median(v)) for m, v in times.items()}
    dense = np.asarray(times["dense"])
    return {
        m: {
            "seconds_per_epoch": med[m],
            # paired: each round's epoch against that round's dense epoch, so a
            # machine whose speed drifts between rounds does not bias the ratio
            "relative_to_dense": float(np.median(np.asarray(times[m]) / dense)),
            "ratio_of_medians": med[m] / med["dense"],
            "all": times[m],
        }
        for m in methods
    }


def _timing_line(method, t):
    sec, rel, rom = t["seconds_per_epoch"], t["relative_to_dense"], t["ratio_of_medians"]
    return (
        f"  timing {method:10s} {sec:.3f} s/epoch ({rel:.3f} x dense, paired by round; "
        f"ratio of medians {rom:.3f})"
    )


# -- splitting -----------------------------------------------------------------------------


def _mlp(d_in, width, seed):
    import torch

    torch.manual_seed(seed)
    nn = torch.nn
    return nn.Sequential(nn.Linear(d_in, width), nn.Tanh(), nn.Linear(width, 10))


def _adam_epochs(model, epochs, seed, X, y, X_te, y_te, points, offset):
    import torch

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(2000 + seed + offset)
    n, batch = X.shape[0], 100
    for e in range(1, epochs + 1):
        train_epoch(model, opt, X, y, torch.randperm(n, generator=g), batch)
        with torch.no_grad():
            loss = float(torch.nn.functional.cross_entropy(model(X), y))
        points.append(
            {"epoch": offset + e, "width": model[0].out_features, "train_loss": loss,
             "test_acc": accuracy(model, X_te, y_te)}
        )  # fmt: skip


SPLIT_SCHEMES = ("s2d", "signed", "random", "fresh", "scratch")


def _fresh_units(model, width, seed):
    """``model`` widened to ``width`` hidden units at the default initialisation.

    The new units' outgoing weights are zero, so the function is unchanged
    (the baseline for growth without splitting, as in Net2Net's comparisons).
    """
    import torch

    wide = _mlp(model[0].in_features, width, seed)
    m = model[0].out_features
    with torch.no_grad():
        wide[0].weight[:m] = model[0].weight
        wide[0].bias[:m] = model[0].bias
        wide[2].weight[:, :m] = model[2].weight
        wide[2].weight[:, m:] = 0
        wide[2].bias.copy_(model[2].bias)
    return wide


def _random_directions(eigen, generator):
    """Every neuron eligible, in random order, split along a random unit vector."""
    import torch

    from solvers.torch import SplitEigen

    out = {}
    for i, e in eigen.items():
        v = torch.randn(e.v_min.shape, generator=generator, dtype=e.v_min.dtype)
        rank = -1 - torch.rand(e.lambda_min.shape, generator=generator, dtype=e.lambda_min.dtype)
        out[i] = SplitEigen(rank, v / v.norm(dim=1, keepdim=True), e.lambda_max, e.v_max)
    return out


def splitting_run(widths, epochs_per_stage, seed, scheme, eps=1e-2):
    """Grow from ``widths[0]`` through ``widths`` hidden units, or train the last from scratch.

    ``scheme``: ``"s2d"`` / ``"signed"`` (splitting steepest descent / signed
    splitting), ``"random"`` (random neurons split along random directions:
    the ablation of the splitting criterion), ``"fresh"`` (new units at the
    default initialisation, zero outgoing weights) or ``"scratch"``.
    """
    import torch

    from solvers.torch import NeuronSplitting

    torch.set_num_threads(1)
    X, y, X_te, y_te = _tensors()
    points, stages = [], len(widths)
    if scheme == "scratch":
        model = _mlp(X.shape[1], widths[-1], seed)
        _adam_epochs(model, epochs_per_stage * stages, seed, X, y, X_te, y_te, points, 0)
        return {"scheme": scheme, "seed": seed, "points": points}
    model = _mlp(X.shape[1], widths[0], seed)
    g = torch.Generator().manual_seed(3000 + seed)
    log = []
    for s in range(stages):
        if s > 0 and scheme == "fresh":
            model = _fresh_units(model, widths[s], 100 * seed + s)
        elif s > 0:
            n_score = min(10000, X.shape[0]) // 10 * 10
            idx = torch.randperm(X.shape[0], generator=g)[:n_score].reshape(10, -1)
            splitter = NeuronSplitting(model, signed=scheme == "signed", seed=seed)
            eig = splitter.score([(X[i], y[i]) for i in idx])
            if scheme == "random":
                splitter.eigen_ = _random_directions(eig, g)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                model = splitter.split(widths[s] - model[0].out_features, eps=eps)
            log.append(
                {"stage": s, "n_negative_lambda_min": int((eig[0].lambda_min < 0).sum()),
                 "width": model[0].out_features}
            )  # fmt: skip
        _adam_epochs(model, epochs_per_stage, seed, X, y, X_te, y_te, points, s * epochs_per_stage)
    return {"scheme": scheme, "seed": seed, "points": points, "splits": log}


def _split_task(task):
    return splitting_run(*task)


# -- the suite -----------------------------------------------------------------------------


def summarize(runs, densities, methods):
    """Mean final test accuracy (and spread) per method and density."""
    rows = []
    dense = [r for r in runs if r["method"] == "dense"]
    dense_acc = float(np.mean([r["points"][-1]["test_acc"] for r in dense])) if dense else None
    for d in densities:
        for m in methods:
            rs = [r for r in runs if r["method"] == m and (m == "dense" or r["density"] == d)]
            if not rs or (m == "dense" and d != densities[0]):
                continue
            accs = [r["points"][-1]["test_acc"] for r in rs]
            row = {
                "method": m,
                "density": 1.0 if m == "dense" else d,
                "test_acc_mean": float(np.mean(accs)),
                "test_acc_seeds": accs,
                "gap_to_dense": None if dense_acc is None else float(np.mean(accs)) - dense_acc,
            }
            if "itop_rate" in rs[0]:
                row["itop_rate"] = float(np.mean([r["itop_rate"] for r in rs]))
            rows.append(row)
    return rows


def format_rows(rows, timings):
    """The markdown table of :func:`summarize`'s rows, with each method's time over dense."""
    headers = ["method", "density", "test acc. (mean)", "seeds", "vs dense", "R_s",
               "s/epoch vs dense"]  # fmt: skip
    cells = []
    for r in rows:
        t = (timings or {}).get(r["method"], {}).get("relative_to_dense")
        cells.append(
            [
                r["method"],
                f"{r['density']:g}",
                f"{100 * r['test_acc_mean']:.2f} %",
                " / ".join(f"{100 * a:.2f}" for a in r["test_acc_seeds"]),
                "" if r["gap_to_dense"] is None else f"{100 * r['gap_to_dense']:+.2f}",
                f"{r['itop_rate']:.3f}" if "itop_rate" in r else "",
                "" if t is None else f"{t:.3f}",
            ]
        )
    return markdown_table(headers, cells)


def plot(path, runs, split, densities, methods):
    """Mean test accuracy against epochs: a panel per density, and one for splitting."""
    panels = [_density_panel(runs, d, methods) for d in densities]
    if split:
        panels.append(_splitting_panel(split))
    figsize = (5 * (len(densities) + 1), 4)
    return save_figure(path, [panels], figsize=figsize, dpi=110)


def _mean_accuracy(label, rs, style="-"):
    """A :class:`Series` of the runs' mean test accuracy (%) after each epoch."""
    acc = np.mean([[p["test_acc"] for p in r["points"]] for r in rs], axis=0)
    points = [{"epoch": e, "test_acc": a} for e, a in enumerate(100 * acc, start=1)]
    return Series(label, points, style)


def _density_panel(runs, density, methods):
    series = []
    for m in methods:
        rs = [r for r in runs if r["method"] == m and (m == "dense" or r["density"] == density)]
        if rs:
            series.append(_mean_accuracy(m, rs, "--" if m == "dense" else "-"))
    lo = min(100 * r["points"][-1]["test_acc"] for r in runs) - 1
    return convergence_panel(
        series, "epoch", "test_acc", title=f"LeNet-300-100, density {density:g}",
        xlabel="epoch", ylabel="test accuracy (%)", grid=None, legend={"fontsize": 7},
        ylim=lambda bottom, top: (max(lo, 80), min(100, top)),
    )  # fmt: skip


def _splitting_panel(split):
    series = []
    for scheme in SPLIT_SCHEMES:
        rs = [r for r in split if r["scheme"] == scheme]
        if rs:
            series.append(_mean_accuracy(scheme, rs))
    w0, w1 = split[0]["points"][0]["width"], split[0]["points"][-1]["width"]
    return convergence_panel(
        series, "epoch", "test_acc", title=f"784-{w0}-10 Tanh grown to {w1} units by splitting",
        xlabel="epoch", ylabel="test accuracy (%)", grid=None, legend={"fontsize": 7},
    )  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """The runs of the suite, as the arguments of :func:`train_run` and :func:`splitting_run`.

    ``tasks``: accuracy runs ``(method, density, seed, epochs)``; ``split_tasks``:
    splitting runs ``(widths, epochs_per_stage, seed, scheme, eps)``.
    """

    epochs: int
    densities: list[float]
    methods: list[str]
    tasks: list[tuple]
    widths: list[int]
    stage_epochs: int
    split_tasks: list[tuple]


def make_plan(args, data):
    """The :class:`Plan` of the command line (defaults: 20 epochs on MNIST, 40 on digits)."""
    epochs = args.epochs or (20 if data.name == "mnist" else 40)
    densities = [float(d) for d in args.densities.split(",") if d]
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS) - set(EXTRA_METHODS)
    if unknown:
        raise SystemExit(
            f"unknown methods {sorted(unknown)}; choose from {METHODS + EXTRA_METHODS}"
        )
    tasks = [
        (m, 1.0 if m == "dense" else d, s, epochs)
        for s in range(args.seeds)
        for m in methods
        for d in ([densities[0]] if m == "dense" else densities)
    ]
    widths = [int(w) for w in args.split_widths.split(",") if w]
    stage_epochs = max(1, epochs // max(1, len(widths)))
    split_tasks = [
        (widths, stage_epochs, s, scheme, args.split_eps)
        for s in range(args.seeds)
        for scheme in SPLIT_SCHEMES
    ] if len(widths) > 1 else []  # fmt: skip
    return Plan(epochs, densities, methods, tasks, widths, stage_epochs, split_tasks)


def run(args):
    try:
        import torch  # noqa: F401
    except ImportError as e:
        raise SystemExit("The sparse benchmark needs torch: pip install torch==2.13.0") from e
    data = datasets.load(args.data)
    _DATA["data"] = data
    plan = make_plan(args, data)
    print(
        f"{data.name}: {data.X_train.shape[0]} train / {data.X_test.shape[0]} test; "
        f"{len(plan.tasks)} accuracy runs of {plan.epochs} epochs, "
        f"{len(plan.split_tasks)} splitting runs",
        flush=True,
    )
    t_start = time.perf_counter()
    if args.timing_only:
        return timing_only(args, data, plan)
    runs, split = accuracy_phase(plan, args.jobs)
    timings = timing_phase(plan, args.timing_rounds)
    rows = summarize(runs, plan.densities, plan.methods)
    if rows:
        print(format_rows(rows, timings))
    for m, t in timings.items():
        print(_timing_line(m, t))
    split_summary = summarize_splitting(split)
    payload = {
        "suite": "sparse",
        "dataset": data.name,
        "epochs": plan.epochs,
        "densities": plan.densities,
        "seeds": args.seeds,
        "machine": machine_info(),
        "total_seconds": time.perf_counter() - t_start,
        "summary": rows,
        "timing": {"density": min(plan.densities), "rounds": args.timing_rounds,
                   "methods": timings},
        "splitting": {
            "widths": plan.widths,
            "epochs_per_stage": plan.stage_epochs,
            "summary": split_summary,
            "runs": split,
        },
        "runs": runs,
    }  # fmt: skip
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"sparse_{data.name}{args.tag}")
    write_json(stem + ".json", payload)
    plot(stem + ".png", runs, split, plan.densities if runs else [], plan.methods)
    print(f"wrote {stem}.json and {stem}.png ({math.ceil(time.perf_counter() - t_start)} s)")
    return payload


def timing_only(args, data, plan):
    """``--timing-only``: the interleaved seconds-per-epoch phase alone, to its own JSON."""
    methods = ["dense", *(m for m in plan.methods if m != "dense")]
    timings = timing(methods, min(plan.densities), args.timing_rounds)
    for m, t in timings.items():
        print(_timing_line(m, t))
    payload = {"suite": "sparse", "dataset": data.name, "machine": machine_info(),
               "timing": {"density": min(plan.densities), "rounds": args.timing_rounds,
                          "methods": timings}}  # fmt: skip
    os.makedirs(args.out, exist_ok=True)
    write_json(os.path.join(args.out, f"sparse_{data.name}_timing{args.tag}.json"), payload)
    return payload


def accuracy_phase(plan, jobs):
    """The accuracy runs, then the splitting runs, in ``jobs`` processes of one thread."""
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        runs = []
        for r in pool.map(_run_task, plan.tasks):
            runs.append(r)
            print(
                f"  {r['method']:10s} density {r['density']:<5g} seed {r['seed']}: "
                f"{100 * r['points'][-1]['test_acc']:.2f} %"
                + (f", R_s {r['itop_rate']:.3f}" if "itop_rate" in r else ""),
                flush=True,
            )
        split = list(pool.map(_split_task, plan.split_tasks))
    for r in split:
        print(
            f"  split {r['scheme']:8s} seed {r['seed']}: {100 * r['points'][-1]['test_acc']:.2f} %"
        )
    return runs, split


def timing_phase(plan, rounds):
    """Seconds per epoch of every method against dense (all threads, nothing else running)."""
    timed = [m for m in plan.methods if m != "dense"]
    return timing(["dense", *timed], min(plan.densities), rounds) if plan.methods else {}


def summarize_splitting(split):
    """Per growth scheme: mean final test accuracy and training loss, final widths."""
    out = {}
    for scheme in SPLIT_SCHEMES:
        rs = [r for r in split if r["scheme"] == scheme]
        if rs:
            out[scheme] = {
                "test_acc_mean": float(np.mean([r["points"][-1]["test_acc"] for r in rs])),
                "train_loss_mean": float(np.mean([r["points"][-1]["train_loss"] for r in rs])),
                "final_width": [r["points"][-1]["width"] for r in rs],
            }
            print(f"  splitting {scheme:8s} {out[scheme]}")
    return out
