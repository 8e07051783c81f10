# SPDX-License-Identifier: BSD-3-Clause
"""Torch optimizers and sparse controllers at their defaults, on a CNN and sequence models.

``python -m benchmarks torch-defaults [--data MNIST_NPZ]``: what a user sees
who keeps every default of :mod:`solvers.torch` (issue 20, part 4). Models
(each image read as it is, or as a sequence of its rows):

- ``cnn``: two ``conv 3x3 - BatchNorm - ReLU - max-pool 2`` blocks (16 and 32
  channels) and a linear head;
- ``lstm``: an LSTM (64 units) over the rows, a linear head on its last state;
- ``transformer``: the rows embedded (``d_model=32``, learned positions), one
  ``nn.TransformerEncoderLayer`` (4 heads, feed-forward 64, its default dropout
  0.1), mean pooling and a linear head.

Data: scikit-learn's digits (8x8, 1437 / 360, built in), or MNIST (28x28) with
``--data`` (``--n-train`` keeps the first images). Every method trains each
model for the same epochs and batch size, from the same initial weights and
batch order for a given seed. Methods, every setting at its default:

- baselines: ``torch.optim.Adam()``, ``torch.optim.AdamW()``;
- ours: :class:`~solvers.torch.AdaSLS`, :class:`~solvers.torch.SLS`,
  :class:`~solvers.torch.SPS`, given ``n_batches_per_epoch=len(loader)`` as
  their docstring asks (the other settings at their defaults);
- sparse controllers wrapped around ``Adam()`` (their docstrings' use), density
  0.1 where it has a default: :class:`~solvers.torch.StaticSparsity`
  (``static``), :class:`~solvers.torch.DynamicSparsity` (``rigl``: RigL growth,
  given ``total_steps``; the committed results were made with the defaults of
  that time, ``update_every=100``, ``end=0.75``, before issue 16 made the
  ITOP schedule of ``rigl_itop`` the default),
  :class:`~solvers.torch.GradualMagnitudePruning` (``gmp``: no default
  schedule; final density 0.1 from the end of the first epoch to 60 % of
  training, ``update_every`` at its default 100);
- :class:`~solvers.torch.SSGD` (``ssgd``): its docstring's optimizer
  ``SGD(lr=0.1, momentum=0.9)`` and defaults (``lam=1e-5, eps=1e-4``) from the
  start, its ``prune_masks(0.1)`` at 70 % of the epochs, then fine-tuning on
  the mask (:class:`~solvers.torch.StaticSparsity`), as its docstring
  describes; ``sgd`` is that optimizer alone (dense), its reference.

Opt-in diagnostics (``--methods``, not defaults): see :data:`DIAGNOSTICS`.

Metrics after every epoch (the model in eval mode): training loss on the whole
training set, test accuracy, fit seconds (evaluation excluded) and forward
passes. One thread (``torch.set_num_threads(1)``): the timings are indicative
(the machine is shared); accuracy is the primary result. Writes
``torch_defaults_<data>.json`` and ``.png`` and prints a markdown table (test
accuracy mean +- std over the seeds, its gap to ``Adam()``).
"""

from __future__ import annotations

import math
import os
import time

import numpy as np

from benchmarks import datasets, report
from benchmarks.optimizers_suite import (
    Problem,
    _closure,
    _interpolate,
    _log,
    mean_curve,
    plot_row,
)

RESULTS = os.path.join(os.path.dirname(__file__), "results")
MODELS = ("cnn", "lstm", "transformer")
BASELINES = ("adam", "adamw")
OURS = ("adasls", "sls", "sps")
SPARSE = ("static", "rigl", "gmp", "ssgd")
#: the default methods, in table order (``sgd``: the optimizer SSGD is wrapped around)
METHODS = (*BASELINES, *OURS, *SPARSE, "sgd")
#: opt-in non-default settings, to diagnose a loss: name -> what differs from the default
DIAGNOSTICS = {
    "adasls_n500": "AdaSLS() without n_batches_per_epoch (its default 500)",
    "sls_c05": "SLS(c=0.5)",
    "sls_hb": 'SLS(momentum="heavy_ball") (heavy_ball=0.25)',
    "sps_c05": "SPS(c=0.5)",
    "sps_lr01": "SPS(lr=0.1): maximum step 0.1 instead of 1",
    "rigl_itop": "DynamicSparsity(update_every=total_steps // 24) around Adam() (ITOP's interval)",
    "gmp_global": 'GradualMagnitudePruning(scope="global") around Adam()',
    "ssgd_eps2": "SSGD(eps=1e-2) (the sparse suite's validated eps) around SGD(0.1, 0.9)",
}
#: the dense run a method is compared with, when not ``Adam()`` (its optimizer alone)
DENSE_REFERENCE = {"ssgd": "sgd", "ssgd_eps2": "sgd"}
DENSITY = 0.1
SSGD_PRUNE_AT = 0.7
EVAL_BATCH = 2000


def add_arguments(p):
    p.add_argument("--data", help="MNIST .npz (x_train, y_train, x_test, y_test); default: digits")
    p.add_argument("--n-train", type=int, default=None, help="first training images (MNIST)")
    p.add_argument(
        "--models", default=",".join(MODELS), help="comma-separated: " + ",".join(MODELS)
    )
    p.add_argument(
        "--methods",
        default=",".join(METHODS),
        help="comma-separated, from " + ",".join(METHODS) + " and the diagnostics "
        + ",".join(DIAGNOSTICS),
    )  # fmt: skip
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=None, help="default 20 digits, 3 MNIST")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--tag", default="", help="suffix of the result files")
    p.add_argument("--out", default=RESULTS)


# -- models --------------------------------------------------------------------------------


def cnn(side, n_classes=10):
    """Two conv-BatchNorm-ReLU-pool blocks (16, 32 channels), then a linear head."""
    import torch

    nn = torch.nn
    return nn.Sequential(
        nn.Unflatten(1, (1, side, side)),
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * (side // 4) ** 2, n_classes),
    )  # fmt: skip


def _sequence_models():
    """The two sequence models' classes (defined here: torch is imported lazily)."""
    import torch

    nn = torch.nn

    class RowLSTM(nn.Module):
        """An LSTM over the image's rows; a linear head on the last hidden state."""

        def __init__(self, side, n_classes=10, hidden=64):
            super().__init__()
            self.side = side
            self.lstm = nn.LSTM(side, hidden, batch_first=True)
            self.head = nn.Linear(hidden, n_classes)

        def forward(self, x):
            out, _ = self.lstm(x.reshape(x.shape[0], self.side, self.side))
            return self.head(out[:, -1])

    class RowTransformer(nn.Module):
        """Rows embedded with learned positions, one encoder layer, mean pooling, a head."""

        def __init__(self, side, n_classes=10, d_model=32):
            super().__init__()
            self.side = side
            self.embed = nn.Linear(side, d_model)
            self.position = nn.Parameter(0.02 * torch.randn(side, d_model))
            self.encoder = nn.TransformerEncoderLayer(
                d_model, nhead=4, dim_feedforward=64, batch_first=True
            )
            self.head = nn.Linear(d_model, n_classes)

        def forward(self, x):
            h = self.embed(x.reshape(x.shape[0], self.side, self.side)) + self.position
            return self.head(self.encoder(h).mean(1))

    return {"lstm": RowLSTM, "transformer": RowTransformer}


def make_problem(name, data, epochs, batch_size):
    """The :class:`~benchmarks.optimizers_suite.Problem` of model ``name`` on ``data``."""
    import torch

    side = math.isqrt(data[0].shape[1])
    build = cnn if name == "cnn" else _sequence_models()[name]

    def acc_fn(out, target):
        return (out.argmax(1) == target).float().mean()

    title = f"{name} ({side}x{side})"
    loss_fn = torch.nn.functional.cross_entropy
    return Problem(title, data, lambda: build(side), loss_fn, acc_fn, epochs, batch_size, True, {})


# -- methods -------------------------------------------------------------------------------


#: every method: (optimizer, its keywords, sparse controller or None, its keywords); a
#: keyword given as a function is called with the run's total steps
SPECS = {
    "adam": ("adam", {}, None, {}),
    "adamw": ("adamw", {}, None, {}),
    "adasls": ("adasls", {}, None, {}),
    "sls": ("sls", {}, None, {}),
    "sps": ("sps", {}, None, {}),
    "static": ("adam", {}, "static", {}),
    "rigl": ("adam", {}, "rigl", {}),
    "gmp": ("adam", {}, "gmp", {}),
    "ssgd": ("sgd", {}, "ssgd", {}),
    "sgd": ("sgd", {}, None, {}),
    # diagnostics (DIAGNOSTICS says what each changes)
    "adasls_n500": ("adasls", {"n_batches_per_epoch": 500}, None, {}),
    "sls_c05": ("sls", {"c": 0.5}, None, {}),
    "sls_hb": ("sls", {"momentum": "heavy_ball"}, None, {}),
    "sps_c05": ("sps", {"c": 0.5}, None, {}),
    "sps_lr01": ("sps", {"lr": 0.1}, None, {}),
    "rigl_itop": ("adam", {}, "rigl", {"update_every": lambda total: max(1, total // 24)}),
    "gmp_global": ("adam", {}, "gmp", {"scope": "global"}),
    "ssgd_eps2": ("sgd", {}, "ssgd", {"eps": 1e-2}),
}


def _optimizer(kind, params, n_batches, **kwargs):
    """The optimizer ``kind``: torch's at its defaults (SGD: SSGD's docstring's), or ours."""
    import torch

    from solvers.torch import SLS, SPS, AdaSLS

    torch_optimizers = {
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "sgd": lambda p, **kw: torch.optim.SGD(p, **{"lr": 0.1, "momentum": 0.9, **kw}),
    }
    if kind in torch_optimizers:
        return torch_optimizers[kind](params, **kwargs)
    kwargs.setdefault("n_batches_per_epoch", n_batches)  # len(loader), as the docstring asks
    return {"adasls": AdaSLS, "sls": SLS, "sps": SPS}[kind](params, **kwargs)


def _controller(kind, model, opt, n_batches, total_steps, **kwargs):
    """The sparse controller ``kind`` around ``opt`` (None: dense)."""
    from solvers.torch import SSGD, DynamicSparsity, GradualMagnitudePruning, StaticSparsity

    if kind is None:
        return None
    if kind == "static":
        return StaticSparsity(model, opt, **kwargs)
    if kind == "rigl":
        return DynamicSparsity(model, opt, total_steps=total_steps, **kwargs)
    if kind == "gmp":  # no default schedule: from the first epoch's end to 60 % of training
        end = max(n_batches, int(0.6 * total_steps))
        return GradualMagnitudePruning(model, opt, DENSITY, start=n_batches, end=end, **kwargs)
    return SSGD(model, opt, **kwargs)


class Method:
    """A method's optimizer and controller, and its post-epoch action (SSGD's prune)."""

    def __init__(self, name, model, n_batches, epochs):
        total = epochs * n_batches
        opt_kind, opt_kw, ctl_kind, ctl_kw = SPECS[name]
        ctl_kw = {k: v(total) if callable(v) else v for k, v in ctl_kw.items()}
        self.name, self.model = name, model
        self.opt = _optimizer(opt_kind, model.parameters(), n_batches, **opt_kw)
        self.controller = _controller(ctl_kind, model, self.opt, n_batches, total, **ctl_kw)
        self.prune_epoch = max(1, round(SSGD_PRUNE_AT * epochs)) if ctl_kind == "ssgd" else None

    @property
    def line_search(self):
        return hasattr(self.opt, "totals")

    def step(self, closure):
        """One step (``step(closure)`` for ours; ``backward`` then ``step()`` for torch's)."""
        if self.line_search:
            return self.opt.step(closure)
        loss = closure()
        self.opt.step()
        return loss

    def after_epoch(self, epoch):
        """SSGD: prune to :data:`DENSITY` and fine-tune on the fixed mask from here."""
        from solvers.torch import StaticSparsity

        if epoch == self.prune_epoch:
            masks = self.controller.prune_masks(DENSITY)
            self.controller.remove()
            self.controller = StaticSparsity(self.model, self.opt, masks=masks)

    def density(self):
        return getattr(self.controller, "density", None)


def evaluate(problem, model):
    """Training loss on the whole training set and test accuracy, in eval mode."""
    import torch

    X, y, X_te, y_te = problem.data
    model.eval()
    with torch.no_grad():
        loss = (
            sum(
                float(
                    problem.loss_fn(
                        model(X[i : i + EVAL_BATCH]), y[i : i + EVAL_BATCH], reduction="sum"
                    )
                )
                for i in range(0, X.shape[0], EVAL_BATCH)
            )
            / X.shape[0]
        )
        correct = sum(
            float(problem.acc_fn(model(X_te[i : i + EVAL_BATCH]), y_te[i : i + EVAL_BATCH]))
            * len(y_te[i : i + EVAL_BATCH])
            for i in range(0, X_te.shape[0], EVAL_BATCH)
        )
    model.train()
    return (loss if math.isfinite(loss) else None), correct / X_te.shape[0]


def train(problem, name, seed):
    """One run: a point per epoch (epoch 0 = the start), and the run's facts."""
    import torch

    X, y = problem.data[:2]
    torch.manual_seed(seed)
    model = problem.model_fn()
    n, batch, n_batches = X.shape[0], problem.batch_size, problem.n_batches
    method = Method(name, model, n_batches, problem.epochs)
    g = torch.Generator().manual_seed(seed)
    points, seconds, forwards, diverged = [], 0.0, 0, False

    def record(epoch):
        loss, acc = evaluate(problem, model)
        points.append(
            dict(epoch=epoch, seconds=seconds, forwards=forwards, train_loss=loss, test_acc=acc)
        )
        return loss

    record(0)
    for epoch in range(1, problem.epochs + 1):
        perm = torch.randperm(n, generator=g)
        t0 = time.perf_counter()
        for i in range(n_batches):
            idx = perm[i * batch : (i + 1) * batch]
            try:
                method.step(_closure(method.opt, model, problem.loss_fn, X[idx], y[idx]))
            except ValueError:  # ours: a non-finite loss at the current point
                diverged = True
                break
            forwards += 1
        seconds += time.perf_counter() - t0
        if method.line_search:
            forwards = method.opt.totals["forwards"]
        method.after_epoch(epoch)
        if record(epoch) is None or diverged:
            diverged = True
            break
    facts = {"diverged": diverged, "density": method.density()}
    if method.line_search:
        facts["totals"] = dict(method.opt.totals)
        facts["final_step_size"] = method.opt.param_groups[0]["step_size"]
    return points, facts


# -- the suite -----------------------------------------------------------------------------


def _methods(args):
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS) - set(DIAGNOSTICS)
    if unknown:
        raise SystemExit(
            f"unknown methods {sorted(unknown)}; choose from {METHODS + tuple(DIAGNOSTICS)}"
        )
    return methods


def _models(args):
    models = [m for m in args.models.split(",") if m]
    if set(models) - set(MODELS):
        raise SystemExit(
            f"unknown models {sorted(set(models) - set(MODELS))}; choose from {MODELS}"
        )
    return models


def run(args):
    try:
        import torch
    except ImportError as e:
        raise SystemExit(
            "The torch-defaults benchmark needs torch: pip install torch==2.13.0"
        ) from e
    torch.set_num_threads(1)
    methods, models = _methods(args), _models(args)
    ds = datasets.load(args.data, n_train=args.n_train)
    data = tuple(torch.from_numpy(a) for a in (ds.X_train, ds.y_train, ds.X_test, ds.y_test))
    epochs = args.epochs or (3 if args.data else 20)
    _log(f"{ds.name}: {len(ds.y_train)} train / {len(ds.y_test)} test, {epochs} epochs, "
         f"batch {args.batch_size}, {args.seeds} seeds")  # fmt: skip
    t_start = time.perf_counter()
    problems = {}
    for model_name in models:
        problem = make_problem(model_name, data, epochs, args.batch_size)
        results = {}
        for name in methods:
            runs = [train(problem, name, seed) for seed in range(args.seeds)]
            results[name] = {"runs": [r[0] for r in runs], "facts": [r[1] for r in runs]}
            accs = [r[0][-1]["test_acc"] for r in runs]
            _log(f"  {problem.title} {name:12s} test acc {100 * np.mean(accs):.2f} "
                 f"+- {100 * np.std(accs):.2f} %")  # fmt: skip
        problems[problem.title] = {"model": model_name, "results": results}
    summary = summarize(problems)
    table = format_summary(summary)
    payload = {
        "suite": "torch-defaults",
        "dataset": ds.name,
        "n_train": len(ds.y_train),
        "epochs": epochs,
        "batch_size": args.batch_size,
        "seeds": args.seeds,
        "methods": methods,
        "diagnostics": {m: DIAGNOSTICS[m] for m in methods if m in DIAGNOSTICS},
        "machine": report.machine_info(),
        "threads": torch.get_num_threads(),
        "wall_seconds": time.perf_counter() - t_start,
        "summary": summary,
        "problems": problems,
    }
    stem = os.path.join(args.out, f"torch_defaults_{ds.name}{args.tag}")
    report.write_json(stem + ".json", payload)
    plot(stem + ".png", problems)
    _log("\n" + table)
    _log(f"\nwrote {stem}.json and {stem}.png ({math.ceil(payload['wall_seconds'])} s)")
    return payload


def summarize(problems):
    """Per model and method: final test accuracy (mean, std, seeds), loss, seconds, gaps."""
    out = {}
    for title, prob in problems.items():
        rows = {}
        for name, r in prob["results"].items():
            accs = [run[-1]["test_acc"] for run in r["runs"]]
            losses = [run[-1]["train_loss"] for run in r["runs"]]
            curve = mean_curve(r["runs"])
            steps = [f.get("totals", {}).get("steps") for f in r["facts"]]
            fw = [f["totals"]["forwards"] / f["totals"]["steps"] for f in r["facts"]
                  if f.get("totals") and f["totals"]["steps"]]  # fmt: skip
            densities = [f["density"] for f in r["facts"] if f["density"] is not None]
            rows[name] = {
                "test_acc_mean": float(np.mean(accs)),
                "test_acc_std": float(np.std(accs)),
                "test_acc_seeds": accs,
                "train_loss_mean": None if None in losses else float(np.mean(losses)),
                "seconds_mean": float(np.mean([run[-1]["seconds"] for run in r["runs"]])),
                "forwards_per_step": float(np.mean(fw)) if fw else 1.0,
                "density": float(np.mean(densities)) if densities else None,
                "diverged": sum(f["diverged"] for f in r["facts"]),
                "steps": steps,
                "curve": curve,
            }
        for name, row in rows.items():
            ref = DENSE_REFERENCE.get(name, "adam")
            if "adam" in rows:
                row["gap_to_adam"] = row["test_acc_mean"] - rows["adam"]["test_acc_mean"]
                row["loss_at_adam_seconds"] = _interpolate(
                    row["curve"], "seconds", "train_loss", rows["adam"]["seconds_mean"]
                )
            if ref in rows and ref != name:
                row["reference"] = ref
                row["gap_to_reference"] = row["test_acc_mean"] - rows[ref]["test_acc_mean"]
        out[title] = rows
    return out


def format_summary(summary):
    """The markdown table of :func:`summarize`: a row per model and method."""
    headers = ["model", "method", "test acc. % (mean +- std)", "vs Adam()", "train loss",
               "fit s", "fwd/step", "density"]  # fmt: skip
    cells = []
    for title, rows in summary.items():
        for name, r in rows.items():
            gap = r.get("gap_to_adam")
            loss = r["train_loss_mean"]
            cells.append(
                [
                    title,
                    name + (f" ({r['diverged']} diverged)" if r["diverged"] else ""),
                    f"{100 * r['test_acc_mean']:.2f} +- {100 * r['test_acc_std']:.2f}",
                    "" if gap is None or name == "adam" else f"{100 * gap:+.2f}",
                    "-" if loss is None else f"{loss:.3g}",
                    f"{r['seconds_mean']:.1f}",
                    f"{r['forwards_per_step']:.2f}",
                    "" if r["density"] is None else f"{r['density']:.3f}",
                ]
            )
    return report.markdown_table(headers, cells)


def plot(path, problems):
    """A row per model: training loss against epochs, seconds, forwards; test accuracy.

    Each method's mean over seeds (:func:`~benchmarks.optimizers_suite.plot_row`).
    """
    rows = []
    for title, prob in problems.items():
        results = prob["results"].items()
        series = [report.Series(name, mean_curve(r["runs"]), _style(name)) for name, r in results]
        rows.append(plot_row(title, series))
    return report.save_figure(path, rows, figsize=(18, 3.4 * len(rows)), dpi=90)


def _style(name):
    """Ours solid, torch's optimizers alone dashed, the sparse controllers dotted."""
    optimizer, _, controller, _ = SPECS[name]
    return ":" if controller else "--" if optimizer in ("adam", "adamw", "sgd") else "-"
