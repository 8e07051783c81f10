# SPDX-License-Identifier: BSD-3-Clause
"""Ensembles from the end-of-training weight distribution against SWA and the final model.

For each model (``--models``): LeNet-300-100 (``mlp``) and LeNet-5
(``lenet5``) trained with SGD (momentum 0.9, cosine from ``lr`` to
``lr_extra``), and LeNet-5 with BatchNorm pre-trained in the run with Adam
(``pretrained``, cosine to 0). Then one extra phase of ``--extra`` epochs
(``--extra-pretrained`` for the pre-trained model; at most 1) with SGD at the
constant ``lr_extra``, during which ``--snapshots`` weight snapshots are
collected, evenly spaced, by
:class:`solvers.torch.ParameterEnsemble` (SWAG-diagonal, ``rank=0``, and
SWAG with the last ``--rank`` deviations) and by
``torch.optim.swa_utils.AveragedModel`` (SWA) at the same steps. All
methods therefore cost the same extra epochs. Reported on the test set:
accuracy, negative log-likelihood and expected calibration error (15 bins)
of

- ``final``: the model before the extra phase, and ``final+extra`` the last
  iterate after it (the better of the two is the final-model baseline);
- ``swa``: the average, with BatchNorm statistics recomputed (``update_bn``);
- ``ensemble_diag`` / ``ensemble_swag``: ``--n-samples`` members averaged
  (``ParameterEnsemble.predict``, BatchNorm refreshed per member over
  ``--bn-samples`` training images), at SWAG's covariance scale 0.5;
- ``ensemble_diag_val`` / ``ensemble_swag_val``: the same with the scale
  among :data:`SCALES` of lowest NLL on a validation split (the last
  ``--n-val`` training images, never trained on).

Targets (issue 18): ensemble NLL below SWA's, and accuracy at least the
final model's. One thread (``torch.set_num_threads(1)``).
"""

from __future__ import annotations

import math
import os
import time

from benchmarks import datasets, vision
from benchmarks.report import Panel, Scatter, machine_info, markdown_table, save_figure, write_json

RESULTS = os.path.join(os.path.dirname(__file__), "results")
MODELS = ("mlp", "lenet5", "pretrained")
METHODS = ("final", "final+extra", "swa", "ensemble_diag", "ensemble_swag", "ensemble_diag_val",
           "ensemble_swag_val")  # fmt: skip
#: ``scale`` candidates of the ``*_val`` rows (chosen by validation NLL)
SCALES = (0.25, 0.5, 1.0)
#: (epochs on digits, epochs on MNIST) of the main training
EPOCHS = {"mlp": (30, 10), "lenet5": (30, 6), "pretrained": (30, 4)}
#: (lr of the main phase, constant lr of the extra phase)
LRS = {"mlp": (0.05, 0.05), "lenet5": (0.05, 0.05), "pretrained": (1e-3, 0.01)}


def add_arguments(p):
    p.add_argument("--data", help="MNIST .npz (x_train, y_train, x_test, y_test); default: digits")
    p.add_argument("--n-train", type=int, default=None, help="first N training images")
    p.add_argument("--n-val", type=int, default=2000, help="last N training images: validation")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--epochs", type=int, default=None, help="main epochs (default per model)")
    p.add_argument("--extra", type=float, default=1.0, help="extra epochs (<= 1)")
    p.add_argument("--extra-pretrained", type=float, default=0.5, help="extra epochs, pretrained")
    p.add_argument("--snapshots", type=int, default=20, help="collections in the extra phase")
    p.add_argument("--rank", type=int, default=20, help="SWAG deviations kept")
    p.add_argument("--n-samples", type=int, default=30, help="ensemble members")
    p.add_argument("--lr-extra", type=float, default=None, help="lr of the extra phase")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--bn-samples", type=int, default=2000, help="images per BatchNorm refresh")
    p.add_argument("--seeds", type=int, default=2, help="runs per model (seeds 0, 1, ...)")
    p.add_argument("--tag", default="", help="suffix of the result files")
    p.add_argument("--out", default=RESULTS)


def _build(name, seed):
    return vision.mlp(seed=seed) if name == "mlp" else vision.lenet5(seed, name == "pretrained")


def _train(model, opt, X, y, steps, batch, gen, on_step=None, scheduler=None):
    import torch

    model.train()
    done, losses = 0, []
    while done < steps:
        perm = torch.randperm(len(X), generator=gen)
        for i in range(0, len(X) - batch + 1, batch):
            idx = perm[i : i + batch]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(X[idx]), y[idx])
            loss.backward()
            opt.step()
            if scheduler is not None:
                scheduler.step()
            losses.append(float(loss.detach()))
            done += 1
            if on_step is not None:
                on_step()
            if done == steps:
                break
    return float(sum(losses[-50:]) / max(len(losses[-50:]), 1))


def run_model(name, args, tensors, n_main_epochs, seed):
    """Main training, the extra phase, and the five methods' test metrics for one model."""
    import torch
    from torch.optim.swa_utils import AveragedModel, update_bn

    from solvers.torch import ParameterEnsemble

    X, y, Xv, yv, Xt, yt = tensors
    gen = torch.Generator().manual_seed(seed)
    model = _build(name, seed)
    lr, lr_extra = LRS[name]
    lr_extra = args.lr_extra or lr_extra
    per_epoch = len(X) // args.batch
    main_steps = n_main_epochs * per_epoch
    if name == "pretrained":
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, main_steps, eta_min=0.0)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, main_steps, eta_min=0.01 * lr)
    t0 = time.perf_counter()
    train_loss = _train(model, opt, X, y, main_steps, args.batch, gen, scheduler=sched)
    t_main = time.perf_counter() - t0
    out = {"model": name, "seed": seed, "main_epochs": n_main_epochs, "main_steps": main_steps,
           "main_seconds": t_main, "train_loss": train_loss, "methods": {}}  # fmt: skip
    out["methods"]["final"] = vision.metrics(vision.predict_proba(model, Xt), yt)

    # the extra phase: SGD at a constant lr; every method sees the same steps
    extra = args.extra_pretrained if name == "pretrained" else args.extra
    extra_steps = max(round(extra * per_epoch), 1)
    every = max(extra_steps // args.snapshots, 1)
    opt = torch.optim.SGD(model.parameters(), lr=lr_extra, momentum=0.9)
    diag = ParameterEnsemble(model, opt, every=every, rank=0, seed=seed)
    swag = ParameterEnsemble(model, opt, every=every, rank=args.rank, seed=seed)
    swa = AveragedModel(model)

    def on_step():
        if diag.n_collected > swa.n_averaged.item():
            swa.update_parameters(model)

    t0 = time.perf_counter()
    _train(model, opt, X, y, extra_steps, args.batch, gen, on_step=on_step)
    t_extra = time.perf_counter() - t0
    out.update(extra_epochs=extra, extra_steps=extra_steps, collect_every=every,
               snapshots=diag.n_collected, extra_seconds=t_extra)  # fmt: skip
    out["methods"]["final+extra"] = vision.metrics(vision.predict_proba(model, Xt), yt)

    has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    bn_idx = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed + 1))
    bn_idx = bn_idx[: args.bn_samples]
    bn_loader = [X[bn_idx[i : i + 500]] for i in range(0, len(bn_idx), 500)] if has_bn else None
    if has_bn:
        update_bn(bn_loader, swa)
    out["methods"]["swa"] = vision.metrics(vision.predict_proba(swa.module, Xt), yt)
    torch.testing.assert_close(  # the ensemble's mean is SWA's average (same snapshots)
        diag.mean(), dict(swa.module.named_parameters()), rtol=1e-5, atol=1e-6
    )
    for label, ens in (("ensemble_diag", diag), ("ensemble_swag", swag)):
        t0 = time.perf_counter()
        proba = ens.predict(Xt, n_samples=args.n_samples, bn_loader=bn_loader, batch_size=2000)
        out["methods"][label] = vision.metrics(proba, yt)
        out["methods"][label]["predict_seconds"] = time.perf_counter() - t0
        # the covariance scale chosen on held-out training images (SWAG fixes it at 0.5)
        val_nll = {
            sc: vision.metrics(ens.predict(Xv, n_samples=args.n_samples, bn_loader=bn_loader,
                                           batch_size=2000, scale=sc), yv)["nll"]
            for sc in SCALES
        }  # fmt: skip
        best = min(val_nll, key=val_nll.get)
        if best == ens.scale:
            chosen = dict(out["methods"][label])
        else:
            proba = ens.predict(Xt, n_samples=args.n_samples, bn_loader=bn_loader, batch_size=2000,
                                scale=best)  # fmt: skip
            chosen = vision.metrics(proba, yt)
        chosen.update(scale=best, val_nll={str(k): v for k, v in val_nll.items()})
        out["methods"][f"{label}_val"] = chosen
    out["targets"] = targets(out["methods"])
    return out


def targets(methods):
    """Per ensemble: NLL below SWA's, accuracy at least the better final model's."""
    final_acc = max(methods["final"]["acc"], methods["final+extra"]["acc"])
    return {
        label: {
            "nll_below_swa": methods[label]["nll"] < methods["swa"]["nll"],
            "acc_at_least_final": methods[label]["acc"] >= final_acc,
        }
        for label in ("ensemble_diag", "ensemble_swag", "ensemble_diag_val", "ensemble_swag_val")
    }


def summarize(results):
    """Per model: each method's metrics averaged over seeds, and the targets on the means."""
    out = []
    for name in dict.fromkeys(r["model"] for r in results):
        rs = [r for r in results if r["model"] == name]
        methods = {
            m: {k: sum(r["methods"][m][k] for r in rs) / len(rs) for k in ("acc", "nll", "ece")}
            for m in METHODS
        }
        out.append({"model": name, "seeds": len(rs), "main_epochs": rs[0]["main_epochs"],
                    "extra_epochs": rs[0]["extra_epochs"], "methods": methods,
                    "targets": targets(methods),
                    "val_scales": {m: [r["methods"][m]["scale"] for r in rs]
                                   for m in ("ensemble_diag_val", "ensemble_swag_val")},
                    "targets_per_seed": [r["targets"] for r in rs]})  # fmt: skip
    return out


def format_rows(results):
    """Markdown table: a row per (model, method) of :func:`summarize`'s means."""
    rows = []
    for r in results:
        for method in METHODS:
            m = r["methods"][method]
            rows.append([r["model"], method, f"{100 * m['acc']:.2f} %", f"{m['nll']:.4f}",
                         f"{100 * m['ece']:.2f} %"])  # fmt: skip
    return markdown_table(["model", "method", "test acc", "NLL", "ECE"], rows)


def plot(path, results):
    panels = []
    for r in results:
        marks = tuple(
            Scatter([r["methods"][m]["nll"]], [100 * r["methods"][m]["acc"]], label=m)
            for m in METHODS
        )
        panels.append(
            Panel(marks=marks, xlabel="test NLL", ylabel="test accuracy (%)",
                  title=f"{r['model']} ({r['main_epochs']} + {r['extra_epochs']:g} epochs)",
                  legend={"fontsize": 7})
        )  # fmt: skip
    return save_figure(path, [panels], figsize=(4.5 * max(len(panels), 1), 3.8), dpi=110)


def run(args):
    try:
        import torch
    except ImportError as e:
        raise SystemExit("The ensemble benchmark needs torch: pip install torch==2.13.0") from e
    if not 0 < args.extra <= 1 or not 0 < args.extra_pretrained <= 1:
        raise SystemExit("--extra and --extra-pretrained must be in (0, 1] epochs")
    models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        raise SystemExit(f"unknown models {unknown}; choose from {', '.join(MODELS)}")
    torch.set_num_threads(1)
    data = datasets.load(args.data)
    X, y, Xt, yt = vision.image_tensors(data)
    n_val = min(args.n_val, len(X) // 5)
    n_train = min(args.n_train or len(X), len(X) - n_val)
    tensors = (X[:n_train], y[:n_train], X[-n_val:], y[-n_val:], Xt, yt)
    print(f"{data.name}: {n_train} train / {n_val} validation / {len(Xt)} test; models {models}")
    t_start = time.perf_counter()
    results, summary = [], []
    for name in models:
        epochs = args.epochs or EPOCHS[name][data.name != "digits"]
        for seed in range(args.seeds):
            r = run_model(name, args, tensors, epochs, seed)
            results.append(r)
            for method in METHODS:
                m = r["methods"][method]
                print(f"  {name:10s} seed {seed} {method:14s} acc {100 * m['acc']:.2f} %  "
                      f"NLL {m['nll']:.4f}  ECE {100 * m['ece']:.2f} %", flush=True)  # fmt: skip
        summary = _write(args, data, tensors, results, models, t_start)  # a partial run is kept
    print(format_rows(summary))
    for s in summary:
        print(f"  {s['model']:10s} targets (means over {s['seeds']} seeds) {s['targets']}")
    stem = os.path.join(args.out, f"ensemble_{data.name}{args.tag}")
    print(f"wrote {stem}.json and {stem}.png ({math.ceil(time.perf_counter() - t_start)} s)")
    return {"summary": summary, "results": results}


def _write(args, data, tensors, results, models, t_start):
    summary = summarize(results)
    payload = {
        "suite": "ensemble",
        "dataset": data.name,
        "n_train": len(tensors[0]),
        "n_val": len(tensors[2]),
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "func")},
        "complete": len(results) == len(models) * args.seeds,
        "machine": machine_info(),
        "total_seconds": time.perf_counter() - t_start,
        "summary": summary,
        "results": results,
    }
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"ensemble_{data.name}{args.tag}")
    write_json(stem + ".json", payload)
    plot(stem + ".png", summary)
    return summary
