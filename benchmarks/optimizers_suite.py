# SPDX-License-Identifier: BSD-3-Clause
"""Line-search optimizers (AdaSLS, SLS, SPS) against grid-tuned torch Adam, AMSGrad, Adagrad.

The settings of Vaswani et al. 2020 at the size this machine allows:

- ``synthetic``: separable logistic regression, n=1000, d=20, margins 0.01,
  0.05, 0.1, 0.5, batch 100 (a linear model, no bias), 200 epochs.
- ``kernel``: kernel logistic regression on RBF features ``K(X, X_train)``
  (bandwidth: median heuristic): scikit-learn's breast cancer (80/20 split),
  and with ``--data`` a binary MNIST task (4 vs 9, 2000 training images);
  batch 100, 100 epochs.
- ``mlp``: with ``--data`` the MNIST MLPs 784-512-256-10 (the papers' code) and
  784-1000-10, ReLU, batch 128, 5 epochs; without it the same shapes on
  scikit-learn's digits (64 inputs), 30 epochs.

Ours, untuned (the paper's settings): AMSGrad+Armijo (:class:`AdaSLS`,
``c=0.5`` convex / ``0.1`` deep), AdaGrad+Armijo, SGD+Armijo (:class:`SLS`) and
SPS (``c=0.2``). Baselines: ``torch.optim.Adam``, ``Adam(amsgrad=True)`` and
``Adagrad``, each at the step size of a grid (7 values from 1e-3 to 1e3 on
the convex problems, 5 around the defaults on the MLPs) that gives the lowest
final training loss on seed 0, then rerun on the other seeds. Every run starts
from the same initial weights and batch order for a given seed. Metrics after
every epoch: training loss on the whole training set, test accuracy, fit
seconds (evaluation excluded; wall and process CPU seconds) and forward passes.
For the convex problems the array-level :func:`solvers.minimize` (NumPy, GLM
fast path) runs too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from benchmarks import datasets
from benchmarks.report import (
    Series,
    convergence_panel,
    machine_info,
    save_figure,
    text_table,
    write_json,
)

RESULTS = os.path.join(os.path.dirname(__file__), "results")
OURS = ("amsgrad_armijo", "adagrad_armijo", "sgd_armijo", "sps")
BASELINES = ("adam", "amsgrad", "adagrad")
#: rounds of the seconds-per-step measurement (interleaved over the solvers)
TIMING_ROUNDS = 5
CONVEX_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
MLP_GRIDS = {
    "adam": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
    "amsgrad": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
    "adagrad": (1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
}


def add_arguments(p):
    p.add_argument("--data", help="MNIST .npz (x_train, y_train, x_test, y_test); default: digits")
    p.add_argument(
        "--problems", default="synthetic,kernel,mlp", help="comma-separated: synthetic,kernel,mlp"
    )
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs-synthetic", type=int, default=200, help="the paper: 200")
    p.add_argument("--epochs-kernel", type=int, default=100, help="the paper: 100")
    p.add_argument("--epochs-mlp", type=int, default=None, help="default 5 MNIST, 30 digits")
    p.add_argument("--margins", default="0.01,0.05,0.1,0.5")
    p.add_argument("--archs", default="512-256,1000", help="hidden widths of the MLPs")
    p.add_argument("--out", default=RESULTS)


# -- problems ------------------------------------------------------------------------------


def separable_data(n, d, margin, seed):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)
    w /= np.linalg.norm(w)
    X = rng.normal(size=(n, d))
    X += np.outer(np.sign(X @ w) * margin, w)
    return X.astype(np.float32), np.sign(X @ w).astype(np.float32)


def rbf_features(X_train, X_test):
    from sklearn.metrics.pairwise import euclidean_distances

    D = euclidean_distances(X_train, X_train, squared=True)
    gamma = 1.0 / np.median(D[np.triu_indices_from(D, 1)])

    def feats(X):
        return np.exp(-gamma * euclidean_distances(X, X_train, squared=True)).astype(np.float32)

    return feats(X_train), feats(X_test), gamma


def convex_problems(args):
    out = []
    for margin in (float(m) for m in args.margins.split(",")):
        X, y = separable_data(2000, 20, margin, seed=0)
        out.append((f"synthetic margin {margin:g}", X[:1000], y[:1000], X[1000:], y[1000:]))
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    if "kernel" in args.problems:
        Xb, yb = load_breast_cancer(return_X_y=True)
        X_tr, X_te, y_tr, y_te = train_test_split(
            Xb, yb, test_size=0.2, random_state=0, stratify=yb
        )
        sc = StandardScaler().fit(X_tr)
        F_tr, F_te, _ = rbf_features(sc.transform(X_tr), sc.transform(X_te))
        pm = lambda v: (2.0 * v - 1.0).astype(np.float32)  # noqa: E731
        out.append(("kernel breast cancer", F_tr, pm(y_tr), F_te, pm(y_te)))
        if args.data:
            ds = datasets.load(args.data)
            tr = np.flatnonzero((ds.y_train == 4) | (ds.y_train == 9))[:2000]
            te = np.flatnonzero((ds.y_test == 4) | (ds.y_test == 9))
            F_tr, F_te, _ = rbf_features(ds.X_train[tr], ds.X_test[te])
            lab = lambda v: np.where(v == 9, 1.0, -1.0).astype(np.float32)  # noqa: E731
            out.append(("kernel MNIST 4v9", F_tr, lab(ds.y_train[tr]), F_te, lab(ds.y_test[te])))
    if "synthetic" not in args.problems:
        out = [p for p in out if not p[0].startswith("synthetic")]
    return out


@dataclass(frozen=True)
class Problem:
    """One training problem: its tensors, model, loss and accuracy, and the training budget.

    ``model_fn()`` builds the model (after ``torch.manual_seed``), ``loss_fn(out,
    target)`` and ``acc_fn(out, target)`` score its outputs. ``deep`` selects
    the line searches' ``c`` (0.1 deep, 0.5 convex); ``grids`` holds each
    baseline's step sizes.
    """

    title: str
    data: tuple  # X, y, X_test, y_test (torch tensors)
    model_fn: Callable
    loss_fn: Callable
    acc_fn: Callable
    epochs: int
    batch_size: int
    deep: bool
    grids: Mapping[str, Sequence[float]]

    @property
    def n_batches(self):
        return -(-self.data[0].shape[0] // self.batch_size)


def linear_problem(title, arrays, epochs):
    """Logistic regression, a linear model without bias from zero, labels in {-1, 1}."""
    import torch

    p = arrays[0].shape[1]

    def model_fn():
        model = torch.nn.Linear(p, 1, bias=False)
        torch.nn.init.zeros_(model.weight)
        return model

    def loss_fn(out, target):
        return torch.nn.functional.softplus(-target * out.reshape(-1)).mean()

    def acc_fn(out, target):
        return (torch.sign(out.reshape(-1)) == target).float().mean()

    data = tuple(torch.from_numpy(a) for a in arrays)
    grids = {b: CONVEX_GRID for b in BASELINES}
    return Problem(title, data, model_fn, loss_fn, acc_fn, epochs, 100, False, grids)


def mlp_problem(title, data, widths, epochs):
    """A ReLU MLP ``d_in - widths - 10`` under cross-entropy, batch 128."""
    import torch

    d_in = data[0].shape[1]

    def model_fn():
        layers, prev = [], d_in
        for w in widths:
            layers += [torch.nn.Linear(prev, w), torch.nn.ReLU()]
            prev = w
        return torch.nn.Sequential(*layers, torch.nn.Linear(prev, 10))

    def acc_fn(out, target):
        return (out.argmax(1) == target).float().mean()

    loss_fn = torch.nn.functional.cross_entropy
    return Problem(title, data, model_fn, loss_fn, acc_fn, epochs, 128, True, MLP_GRIDS)


# -- optimizers ----------------------------------------------------------------------------


def make_optimizer(name, params, lr, n_batches, deep):
    import torch

    from solvers.torch import SLS, SPS, AdaSLS

    c = 0.1 if deep else 0.5
    if name == "amsgrad_armijo":
        return AdaSLS(params, c=c, n_batches_per_epoch=n_batches)
    if name == "adagrad_armijo":
        return AdaSLS(params, c=c, preconditioner="adagrad", n_batches_per_epoch=n_batches)
    if name == "sgd_armijo":
        return SLS(params, c=c, n_batches_per_epoch=n_batches)
    if name == "sps":
        return SPS(params, c=0.2, n_batches_per_epoch=n_batches)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "adam_foreach":  # timing only: torch's multi-tensor Adam
        return torch.optim.Adam(params, lr=lr, foreach=True)
    if name == "amsgrad":
        return torch.optim.Adam(params, lr=lr, amsgrad=True)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr)
    raise ValueError(name)


def train(problem, name, lr, seed):
    """One run; a curve of per-epoch points (epoch 0 = the start) and the steps taken."""
    import torch

    X, y, X_te, y_te = problem.data
    torch.manual_seed(seed)
    model = problem.model_fn()
    n, batch_size, loss_fn = X.shape[0], problem.batch_size, problem.loss_fn
    n_batches = problem.n_batches
    opt = make_optimizer(name, model.parameters(), lr, n_batches, problem.deep)
    g = torch.Generator().manual_seed(seed)
    points, seconds, cpu_seconds, forwards, steps = [], 0.0, 0.0, 0, 0

    def evaluate(epoch):
        with torch.no_grad():
            loss = float(loss_fn(model(X), y))
            acc = float(problem.acc_fn(model(X_te), y_te))
        points.append(
            dict(
                epoch=epoch,
                seconds=seconds,
                cpu_seconds=cpu_seconds,
                forwards=forwards,
                steps=steps,
                train_loss=loss if np.isfinite(loss) else None,
                test_acc=acc,
            )
        )
        return loss

    evaluate(0)
    for epoch in range(1, problem.epochs + 1):
        perm = torch.randperm(n, generator=g)
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(n_batches):
            idx = perm[i * batch_size : (i + 1) * batch_size]
            try:
                opt.step(_closure(opt, model, loss_fn, X[idx], y[idx]))
            except ValueError:  # non-finite loss: the run diverged
                seconds += time.perf_counter() - t0
                cpu_seconds += time.process_time() - c0
                points.append(
                    dict(epoch=epoch, seconds=seconds, cpu_seconds=cpu_seconds, forwards=forwards,
                         train_loss=None, test_acc=None, diverged=True)
                )  # fmt: skip
                return points, steps
            steps += 1
            forwards += 1
        seconds += time.perf_counter() - t0
        cpu_seconds += time.process_time() - c0
        if hasattr(opt, "totals"):
            forwards = opt.totals["forwards"]
        if not np.isfinite(evaluate(epoch)):
            break
    return points, steps


def _closure(opt, model, loss_fn, xb, yb):
    """The closure of ``opt.step``: the batch loss and its gradient."""

    def closure():
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        return loss

    return closure


def final_loss(points):
    v = points[-1].get("train_loss")
    return np.inf if v is None or not np.isfinite(v) else v


def run_problem(problem, seeds):
    """Grid on seed 0 for the baselines, then every solver on every seed."""
    results = {}
    for name in BASELINES:
        grid = {}
        for lr in problem.grids[name]:
            pts, _ = train(problem, name, lr, seed=0)
            grid[lr] = pts
            _log(f"  {problem.title}: {name} lr={lr:g} -> loss {final_loss(pts):.4g}")
        best = min(grid, key=lambda lr: final_loss(grid[lr]))
        runs = [grid[best]] + [train(problem, name, best, seed=s)[0] for s in range(1, seeds)]
        results[name] = dict(
            lr=best, grid={str(k): final_loss(v) for k, v in grid.items()}, runs=runs
        )
    for name in OURS:
        runs = [train(problem, name, None, seed=s)[0] for s in range(seeds)]
        results[name] = dict(lr=None, runs=runs)
        _log(f"  {problem.title}: {name} -> loss {np.mean([final_loss(r) for r in runs]):.4g}")
    return results


def mean_curve(runs):
    """Per-epoch mean over seeds (runs that stopped early are cut to the shortest)."""
    k = min(len(r) for r in runs)
    out = []
    for i in range(k):
        pt = {"epoch": runs[0][i]["epoch"]}
        for key in ("seconds", "cpu_seconds", "forwards", "train_loss", "test_acc"):
            vals = [r[i].get(key) for r in runs]
            pt[key] = None if any(v is None for v in vals) else float(np.mean(vals))
        out.append(pt)
    return out


def seconds_per_step(problem, name, lr, steps=200):
    """Median seconds of ``optimizer.step(closure)`` on a fixed stream of batches.

    Returns it with the forward passes per step.
    """
    import torch

    X, y = problem.data[:2]
    batch = problem.batch_size
    torch.manual_seed(0)
    model = problem.model_fn()
    opt = make_optimizer(name, model.parameters(), lr, problem.n_batches, problem.deep)
    times = []
    for k in range(steps + 30):
        i = (k * batch) % (X.shape[0] - batch)
        closure = _closure(opt, model, problem.loss_fn, X[i : i + batch], y[i : i + batch])
        t0 = time.perf_counter()
        opt.step(closure)
        times.append(time.perf_counter() - t0)
    fw = opt.totals["forwards"] / opt.totals["steps"] if hasattr(opt, "totals") else 1.0
    return float(np.median(times[30:])), fw


def interleaved_timing(problem, lrs, rounds=TIMING_ROUNDS):
    """Median over ``rounds`` of :func:`seconds_per_step` per solver (``lrs``: name -> step size).

    The rounds interleave the solvers: the VM's speed drifts by 10-30 % over
    minutes (and other jobs share its cores), which a one-after-the-other
    measurement turns into a ratio error. Returns ``{name: (median seconds,
    forwards per step)}`` and ``{name: [seconds of each round]}``; the ratio
    to compare is the median of the per-round ratios (:func:`round_ratio`).
    """
    per_round = {name: [] for name in lrs}
    forwards = {}
    for _ in range(rounds):
        for name, lr in lrs.items():
            seconds, forwards[name] = seconds_per_step(problem, name, lr)
            per_round[name].append(seconds)
    timing = {name: (float(np.median(v)), forwards[name]) for name, v in per_round.items()}
    return timing, per_round


def round_ratio(per_round, name, baseline):
    """Median over the interleaved rounds of ``name``'s seconds per step over ``baseline``'s."""
    return float(np.median(np.divide(per_round[name], per_round[baseline])))


def numpy_glm_run(data, epochs, seed):
    """The array-level minimiser (GLM fast path) with AdaSLS's convex settings."""
    from solvers import GLMObjective, minimize

    X, y, X_te, y_te = (np.asarray(a, dtype=np.float64) for a in data)
    obj = GLMObjective("logistic")
    points = []

    def cb(r):
        points.append(
            dict(
                epoch=r.epoch,
                train_loss=float(obj.value(r.x, X, y)),
                test_acc=float(np.mean(np.sign(X_te @ r.x) == y_te)),
            )
        )

    res = minimize(
        obj,
        np.zeros(X.shape[1]),
        (X, y),
        batch_size=100,
        epochs=epochs,
        c=0.5,
        random_state=seed,
        callback=cb,
    )
    for p, s, f in zip(
        points, res.history["seconds"], res.history["forwards_per_step"], strict=True
    ):
        p["seconds"] = s
        p["forwards_per_step"] = f
    return points


# -- the suite -----------------------------------------------------------------------------


def _log(msg):
    print(msg, flush=True)


def run(args):
    try:
        import torch  # noqa: F401
    except ImportError as e:
        raise SystemExit("The optimizers benchmark needs torch: pip install torch==2.13.0") from e
    t_start = time.perf_counter()
    problems = convex_phase(args)
    if "mlp" in args.problems:
        problems.update(mlp_phase(args))
    summary = summarize(problems)
    payload = dict(
        suite="optimizers",
        machine=machine_info(),
        args=vars(args),
        wall_seconds=time.perf_counter() - t_start,
        summary=summary,
        problems=problems,
    )
    stem = "optimizers_" + ("mnist" if args.data else "digits")
    json_path = write_json(os.path.join(args.out, stem + ".json"), payload)
    png_path = plot(os.path.join(args.out, stem + ".png"), problems)
    _log(format_summary(summary))
    _log(f"results: {json_path}\nplot: {png_path}")
    return payload


def convex_phase(args):
    """The convex problems: the torch solvers and the NumPy minimiser on each."""
    problems = {}
    for title, *arrays in convex_problems(args):
        X = arrays[0]
        _log(f"{title}: n={X.shape[0]}, p={X.shape[1]}")
        epochs = args.epochs_synthetic if title.startswith("synthetic") else args.epochs_kernel
        res = run_problem(linear_problem(title, arrays, epochs), args.seeds)
        runs = [numpy_glm_run(tuple(arrays), epochs, s) for s in range(args.seeds)]
        res["amsgrad_armijo_numpy"] = dict(lr=None, runs=runs)
        problems[title] = dict(
            kind="convex", n_train=int(X.shape[0]), p=int(X.shape[1]), results=res
        )
    return problems


def mlp_phase(args):
    """The MLPs (MNIST with ``--data``, else digits): training runs, then the step timing."""
    import torch

    ds = datasets.load(args.data)
    data = tuple(torch.from_numpy(a) for a in (ds.X_train, ds.y_train, ds.X_test, ds.y_test))
    epochs = args.epochs_mlp or (5 if args.data else 30)
    problems = {}
    for arch in args.archs.split(","):
        widths = [int(w) for w in arch.split("-")]
        title = f"MLP {data[0].shape[1]}-{arch}-10 ({ds.name})"
        _log(f"{title}: {epochs} epochs")
        problem = mlp_problem(title, data, widths, epochs)
        res = run_problem(problem, args.seeds)
        lrs = {name: res[name]["lr"] for name in (*BASELINES, *OURS)}
        lrs["adam_foreach"] = res["adam"]["lr"]
        timing, per_round = interleaved_timing(problem, lrs)
        _log(f"  seconds per step: { {k: round(v[0] * 1e3, 2) for k, v in timing.items()} } ms")
        problems[title] = dict(
            kind="mlp",
            n_train=int(data[0].shape[0]),
            results=res,
            seconds_per_step=timing,
            seconds_per_step_rounds=per_round,
        )
    return problems


def summarize(problems):
    """Per problem: each solver's mean final loss/accuracy, and the targets."""
    out = {}
    for title, prob in problems.items():
        res = prob["results"]
        rows = {}
        for name, r in res.items():
            curve = mean_curve(r["runs"])
            last = curve[-1]
            rows[name] = dict(
                lr=r.get("lr"),
                train_loss=last.get("train_loss"),
                test_acc=last.get("test_acc"),
                seconds=last.get("seconds"),
                cpu_seconds=last.get("cpu_seconds"),
                forwards_per_step=_forwards_per_step(r["runs"]),
                curve=curve,
            )
        adam = rows["adam"]
        ours = rows["amsgrad_armijo"]
        entry = dict(rows=rows)
        if adam["train_loss"] is not None and ours["train_loss"] is not None:
            entry["equal_epochs"] = dict(
                ours=ours["train_loss"],
                adam=adam["train_loss"],
                met=ours["train_loss"] <= adam["train_loss"],
            )
            # at the end of the shorter of the two runs (both curves are known up to there):
            # wall seconds, and the process's CPU seconds, which waiting for a core shared
            # with other jobs does not inflate (the fair clock on a busy machine, 1 thread)
            for key, clock in (("equal_time", "seconds"), ("equal_cpu_time", "cpu_seconds")):
                if ours.get(clock) is None or adam.get(clock) is None:
                    continue
                t = min(ours[clock], adam[clock])
                ours_at_t = _interpolate(ours["curve"], clock, "train_loss", t)
                adam_at_t = _interpolate(adam["curve"], clock, "train_loss", t)
                entry[key] = dict(
                    seconds=t,
                    ours=ours_at_t,
                    adam=adam_at_t,
                    met=None not in (ours_at_t, adam_at_t) and ours_at_t <= adam_at_t,
                )
        if "seconds_per_step" in prob:
            sps = prob["seconds_per_step"]
            entry["seconds_per_step_ms"] = {k: v[0] * 1e3 for k, v in sps.items()}
            rounds = prob.get("seconds_per_step_rounds")
            if rounds:  # the median of the interleaved rounds' ratios
                entry["step_ratio_vs_adam"] = round_ratio(rounds, "amsgrad_armijo", "adam")
                entry["step_ratio_vs_adam_foreach"] = round_ratio(
                    rounds, "amsgrad_armijo", "adam_foreach"
                )
            else:  # results written before the rounds were kept: ratio of the best rounds
                entry["step_ratio_vs_adam"] = sps["amsgrad_armijo"][0] / sps["adam"][0]
                entry["step_ratio_vs_adam_foreach"] = (
                    sps["amsgrad_armijo"][0] / sps["adam_foreach"][0]
                )
        out[title] = entry
    return out


def _forwards_per_step(runs):
    last = runs[0][-1]
    if "forwards_per_step" in last:
        return float(np.mean([p["forwards_per_step"] for p in runs[0]]))
    return last["forwards"] / last["steps"] if last.get("steps") else None


def _interpolate(curve, xkey, ykey, x):
    """``ykey`` of ``curve`` at ``xkey = x`` (linear; the last value beyond the end)."""
    xs = [p[xkey] for p in curve if p.get(ykey) is not None]
    ys = [p[ykey] for p in curve if p.get(ykey) is not None]
    if not xs:
        return None
    if x >= xs[-1]:
        return ys[-1]
    return float(np.interp(x, xs, ys))


def format_summary(summary):
    lines = []
    for title, entry in summary.items():
        lines.append(f"\n{title}")
        rows = [_summary_row(name, r) for name, r in entry["rows"].items()]
        table = text_table(["solver", "lr", "train loss", "test acc", "seconds"], rows)
        lines += ["  " + line for line in table.splitlines()]
        for key in ("equal_epochs", "equal_time", "equal_cpu_time"):
            if key in entry:
                e = entry[key]
                lines.append(
                    f"  {key}: ours {e['ours']:.4g} vs adam {e['adam']:.4g}"
                    + (f" at {e['seconds']:.1f} s" if "seconds" in e else "")
                    + " -> "
                    f"{'met' if e['met'] else 'NOT met'}"
                )
        if "seconds_per_step_ms" in entry:
            ms = entry["seconds_per_step_ms"]
            lines.append("  ms/step: " + ", ".join(f"{k} {v:.2f}" for k, v in ms.items()))
            lines.append(
                f"  AMSGrad+Armijo / Adam per step: {entry['step_ratio_vs_adam']:.2f}"
                f" (vs Adam foreach: {entry['step_ratio_vs_adam_foreach']:.2f})"
            )
    return "\n".join(lines)


def _summary_row(name, r):
    return [
        name,
        "-" if r["lr"] is None else f"{r['lr']:g}",
        "-" if r["train_loss"] is None else f"{r['train_loss']:.4g}",
        "-" if r["test_acc"] is None else f"{100 * r['test_acc']:.2f}",
        "-" if r["seconds"] is None else f"{r['seconds']:.2f}",
    ]


#: the plot's columns: (x key, y key, x label, y label)
PLOT_COLUMNS = (
    ("epoch", "train_loss", "epochs", "train loss"),
    ("seconds", "train_loss", "fit seconds", "train loss"),
    ("forwards", "train_loss", "forward passes", "train loss"),
    ("epoch", "test_acc", "epochs", "test accuracy"),
)


def plot(path, problems):
    """One row per problem: training loss against epochs, seconds, forwards; test accuracy.

    Each solver's mean over seeds; ours solid, the tuned baselines dashed.
    """
    rows = []
    for title, problem in problems.items():
        series = [
            Series(
                name if r.get("lr") is None else f"{name} (lr {r['lr']:g})",
                mean_curve(r["runs"]),
                "-" if name in OURS else "--",
            )
            for name, r in problem["results"].items()
            if name != "amsgrad_armijo_numpy"
        ]
        rows.append(plot_row(title, series))
    return save_figure(path, rows, figsize=(18, 3.4 * len(rows)), dpi=90)


def plot_row(title, series):
    """One problem's row of :func:`plot`: a panel per :data:`PLOT_COLUMNS` (log loss)."""
    return [
        convergence_panel(
            series, xkey, ykey, xlabel=xlabel, ylabel=ylabel, title=title, title_size=9,
            yscale="log" if ylabel == "train loss" else None,
            legend={"fontsize": 7} if col == 0 else None,
        )
        for col, (xkey, ykey, xlabel, ylabel) in enumerate(PLOT_COLUMNS)
    ]  # fmt: skip
