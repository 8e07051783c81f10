# SPDX-License-Identifier: BSD-3-Clause
"""Hyperparameter search: GBDTSearchCV against random search and successive halving.

``python -m benchmarks search [--data MNIST_NPZ]``: the best cross-validated
accuracy against the number of fits of

- ours, :class:`solvers.model_selection.GBDTSearchCV` (GBDT-NAS: a
  gradient-boosted-tree score predictor chooses each batch);
- :class:`~sklearn.model_selection.RandomizedSearchCV`, the same number of
  configurations;
- :class:`~sklearn.model_selection.HalvingRandomSearchCV` (factor 3,
  ``min_resources="exhaust"``), with as many configuration evaluations in
  all as the others (its early ones on subsets of the rows),

over :func:`solvers.model_selection.manifold_net_space` for
``ManifoldNetClassifier`` (width, activation, draw, scale, head, penalty,
sweeps; penalties below ~1e-7 fail and get ``error_score=nan``). Each seed
runs the three searches with their own random streams (ours ``1000 + seed``,
the others ``seed``: no shared initial sample); ``--paired`` seeds ours with
``seed`` too, so that its initial sample is random search's first
``n_initial`` configurations (common random numbers: the comparison is then
of what each does with the remaining fits). A fit is one estimator fit on
one CV split. Every refit best model is scored once on the test set.

Writes ``benchmarks/results/search_{dataset}.json`` and ``.png`` and prints
the table and the targets: ours >= random at equal fits on at least 4 of 5
seeds; ours reaches random search's final best in <= 1/3 of the fits on the
median seed.
"""

from __future__ import annotations

import os
import time
import warnings

import numpy as np

from benchmarks import datasets
from benchmarks.report import Line, Panel, machine_info, save_figure, text_table, write_json

RESULTS = os.path.join(os.path.dirname(__file__), "results")

#: bytes each ManifoldNet fit may use for its blocks (fixed for reproducible runs)
MEMORY_BUDGET = 2**30

#: the searches, in table order
SEARCHES = ("gbdt", "random", "halving")


def add_arguments(p):
    p.add_argument("--data", default=None, help="MNIST .npz (default: scikit-learn digits)")
    p.add_argument(
        "--n-train", type=int, default=None, help="first N training rows (MNIST default 3000)"
    )
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--n-iter", type=int, default=30, help="configurations per search")
    p.add_argument("--n-initial", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=5)
    p.add_argument("--cv", type=int, default=3)
    p.add_argument("--widths", type=int, nargs="+", default=None, help="hidden widths")
    p.add_argument("--out", default=RESULTS, help="folder for the JSON and PNG results")
    p.add_argument("--tag", default="", help="suffix of the result files' names")
    p.add_argument(
        "--paired",
        action="store_true",
        help="ours seeded like random search: both start from the same 10 configurations",
    )


def searches(n_iter, n_initial, batch_size, cv, widths, seed, paired=False):
    """(name, search) of the three searches of one seed."""
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401
    from sklearn.model_selection import HalvingRandomSearchCV, RandomizedSearchCV

    from closedform import ManifoldNetClassifier
    from solvers.model_selection import GBDTSearchCV, manifold_net_space

    space = manifold_net_space(widths=widths)
    # a fixed memory budget: "auto" sizes the blocks from the memory free at the time, and
    # the block sizes change the float sums (decision values by up to 0.05 on digits),
    # so a search's path would depend on the other jobs of the machine
    est = ManifoldNetClassifier(random_state=0, memory_budget=MEMORY_BUDGET)
    return [
        ("gbdt", GBDTSearchCV(est, space, n_iter=n_iter, n_initial=n_initial,
                              batch_size=batch_size, cv=cv,
                              random_state=seed if paired else 1000 + seed)),
        ("random", RandomizedSearchCV(est, space, n_iter=n_iter, cv=cv, random_state=seed)),
        ("halving", HalvingRandomSearchCV(est, space, n_candidates=halving_candidates(n_iter),
                                          factor=3, min_resources="exhaust", cv=cv,
                                          random_state=seed)),
    ]  # fmt: skip


def halving_candidates(n_iter, factor=3):
    """The most first-round candidates whose halving rounds evaluate at most ``n_iter`` in all.

    scikit-learn runs ``1 + floor(log_factor(n))`` rounds from ``n`` candidates
    (when the rows allow), each keeping ``ceil(k / factor)`` of the ``k`` before.
    """
    best = 1
    for n in range(1, n_iter + 1):
        rounds = 1
        while factor**rounds <= n:
            rounds += 1
        total, k = 0, n
        for _ in range(rounds):
            total += k
            k = -(-k // factor)
        if total <= n_iter:
            best = n
    return best


def run(args):
    data = datasets.load(args.data, n_train=args.n_train or (3000 if args.data else None))
    mnist = data.name == "mnist"
    widths = tuple(args.widths or ((100, 200, 500, 1000) if mnist else (50, 100, 200, 500, 1000)))
    print(
        f"{data.name}: {data.X_train.shape[0]} train / {data.X_test.shape[0]} test; "
        f"{args.seeds} seeds x {args.n_iter} configurations x {args.cv} folds; widths {widths}",
        flush=True,
    )
    t_start = time.perf_counter()
    runs = []
    for seed in range(args.seeds):
        for name, search in searches(
            args.n_iter, args.n_initial, args.batch_size, args.cv, widths, seed, args.paired
        ):
            runs.append(run_search(name, seed, search, data))
    summary = summarize(runs, args.n_iter)
    print(format_table(runs))
    print(format_summary(summary))
    payload = {
        "suite": "search",
        "dataset": data.name,
        "n_train": int(data.X_train.shape[0]),
        "n_test": int(data.X_test.shape[0]),
        "settings": {
            "seeds": args.seeds,
            "n_iter": args.n_iter,
            "n_initial": args.n_initial,
            "batch_size": args.batch_size,
            "cv": args.cv,
            "widths": list(widths),
            "halving_candidates": halving_candidates(args.n_iter),
            "paired": args.paired,
        },
        "machine": machine_info(),
        "total_seconds": time.perf_counter() - t_start,
        "runs": runs,
        "summary": summary,
    }
    stem = os.path.join(args.out, f"search_{data.name}{args.tag}")
    write_json(stem + ".json", payload)
    plot(stem + ".png", runs, f"Search over ManifoldNetClassifier on {data.name}", args.cv)
    print(f"wrote {stem}.json and {stem}.png")
    return payload


def run_search(name, seed, search, data):
    """Run one search; a row with its best-so-far curve (per fit) and the refit's test score."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        search.fit(data.X_train, data.y_train)
        seconds = time.perf_counter() - t0
    r = search.cv_results_
    scores = np.asarray(r["mean_test_score"], dtype=float)
    n_splits = search.n_splits_
    if name == "halving":
        # only the last round is scored on all the rows: one point, at the total of fits
        curve = [[len(scores) * n_splits, float(search.best_score_)]]
    else:
        best = np.maximum.accumulate(np.where(np.isfinite(scores), scores, -np.inf))
        curve = [[(i + 1) * n_splits, float(b)] for i, b in enumerate(best)]
    row = {
        "search": name,
        "seed": seed,
        "n_configurations": len(scores),
        "n_fits": len(scores) * n_splits,
        "n_failed": int(np.sum(~np.isfinite(scores))),
        "best_cv_score": float(search.best_score_),
        "best_params": {k: _plain(v) for k, v in search.best_params_.items()},
        "test_score": float(search.score(data.X_test, data.y_test)),
        "seconds": seconds,
        "curve": curve,
        "warnings": len(caught),
    }
    if name == "gbdt":
        row["pruned"] = [p["description"] for p in search.pruned_]
        row["proposed_by"] = [str(v) for v in r["proposed_by"]]
    print(
        f"  seed {seed} {name:8s} best CV {100 * row['best_cv_score']:6.2f} %  "
        f"test {100 * row['test_score']:6.2f} %  {row['n_fits']:4d} fits  {seconds:6.1f} s",
        flush=True,
    )
    return row


def _plain(v):
    if isinstance(v, tuple):
        return list(v)
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v


def fits_to_reach(curve, target):
    """The first number of fits whose best-so-far reaches ``target`` (None if never)."""
    return next((fits for fits, best in curve if best >= target), None)


def summarize(runs, n_iter):
    """Per seed: final bests, test scores, fits ours needs for random's best; the targets."""
    seeds = sorted({r["seed"] for r in runs})
    per_seed = []
    for seed in seeds:
        by = {r["search"]: r for r in runs if r["seed"] == seed}
        ours, rand = by["gbdt"], by["random"]
        reach = fits_to_reach(ours["curve"], rand["best_cv_score"])
        row = {
            "seed": seed,
            **{f"{s}_best": by[s]["best_cv_score"] for s in SEARCHES if s in by},
            **{f"{s}_test": by[s]["test_score"] for s in SEARCHES if s in by},
            "gbdt_fits_to_random_best": reach,
            "fraction_of_fits": None if reach is None else reach / ours["n_fits"],
        }
        row["gbdt_at_least_random"] = ours["best_cv_score"] >= rand["best_cv_score"]
        per_seed.append(row)
    fractions = [
        np.inf if r["fraction_of_fits"] is None else r["fraction_of_fits"] for r in per_seed
    ]
    median = float(np.median(fractions))
    wins = sum(r["gbdt_at_least_random"] for r in per_seed)

    def mean(key):
        vals = [r[key] for r in per_seed if key in r]
        return float(np.mean(vals)) if vals else None

    return {
        "per_seed": per_seed,
        "gbdt_at_least_random_seeds": wins,
        "n_seeds": len(per_seed),
        "median_fraction_of_fits_to_random_best": median if np.isfinite(median) else None,
        "meets_4_of_5": wins >= 0.8 * len(per_seed),
        "meets_third_of_fits": bool(median <= 1 / 3),
        "mean": {f"{s}_{k}": mean(f"{s}_{k}") for s in SEARCHES for k in ("best", "test")},
    }


def format_table(runs):
    """Text table: a row per search and seed."""
    rows = [
        [f"{r['search']} (seed {r['seed']})", f"{100 * r['best_cv_score']:.2f}",
         f"{100 * r['test_score']:.2f}", str(r["n_fits"]), str(r["n_failed"]),
         f"{r['seconds']:.0f}"]
        for r in runs
    ]  # fmt: skip
    return text_table(["search", "best CV %", "test %", "fits", "failed", "s"], rows)


def format_summary(s):
    m = s["mean"]
    fr = s["median_fraction_of_fits_to_random_best"]
    lines = [
        "mean best CV %: " + ", ".join(
            f"{k} {100 * m[f'{k}_best']:.2f}" for k in SEARCHES if m[f"{k}_best"] is not None
        ),
        "mean test %:    " + ", ".join(
            f"{k} {100 * m[f'{k}_test']:.2f}" for k in SEARCHES if m[f"{k}_test"] is not None
        ),
        f"GBDTSearchCV >= random at equal fits: {s['gbdt_at_least_random_seeds']} of "
        f"{s['n_seeds']} seeds (target 4 of 5: {s['meets_4_of_5']})",
        "fraction of fits GBDTSearchCV needs to reach random's final best, per seed: "
        + ", ".join("never" if r["fraction_of_fits"] is None else f"{r['fraction_of_fits']:.2f}"
                    for r in s["per_seed"])
        + f"; median {'never' if fr is None else f'{fr:.2f}'} "
        f"(target <= 1/3: {s['meets_third_of_fits']})",
    ]  # fmt: skip
    return "\n".join(lines)


#: the plot's colour of each search
COLORS = {"gbdt": "tab:red", "random": "tab:blue", "halving": "tab:green"}
LABELS = {
    "gbdt": "GBDTSearchCV (ours)",
    "random": "RandomizedSearchCV",
    "halving": "HalvingRandomSearchCV (final)",
}


def plot(path, runs, title, cv):
    """Best CV accuracy against fits: thin lines per seed, the median thick; halving as points."""
    marks = []
    for name in ("random", "gbdt"):
        rs = [r for r in runs if r["search"] == name]
        if not rs:
            continue
        for r in rs:
            fits, best = zip(*r["curve"], strict=True)
            pct = [100 * b if np.isfinite(b) else np.nan for b in best]
            thin = {"color": COLORS[name], "lw": 0.6, "alpha": 0.35}
            marks.append(Line(fits, pct, "-", options=thin))
        n = min(len(r["curve"]) for r in rs)
        fits = [p[0] for p in rs[0]["curve"][:n]]
        med = np.median([[100 * p[1] for p in r["curve"][:n]] for r in rs], axis=0)
        marks.append(Line(fits, med, "-", LABELS[name], {"color": COLORS[name], "lw": 2}))
    hv = [r for r in runs if r["search"] == "halving"]
    if hv:
        xs = [r["curve"][0][0] for r in hv]
        ys = [100 * r["curve"][0][1] for r in hv]
        marks.append(Line(xs, ys, "o", LABELS["halving"], {"color": COLORS["halving"], "ms": 6}))
    finite = [100 * p[1] for r in runs for p in r["curve"] if np.isfinite(p[1])]
    top = max(finite)
    panel = Panel(
        marks, xlabel=f"fits ({cv} per configuration)", ylabel="best CV accuracy so far (%)",
        title=title, ylim=(max(min(finite), top - 6), top + 0.3),
        legend={"fontsize": 8, "loc": "lower right"},
    )  # fmt: skip
    return save_figure(path, [[panel]], figsize=(8, 5), dpi=120)
