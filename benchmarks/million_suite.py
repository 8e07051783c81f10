# SPDX-License-Identifier: BSD-3-Clause
"""A million points: EigenPro with decoupled centres against the best Nyström ridge in its memory.

``python -m benchmarks million [--n-train 1000000] [--n-centers 20000]
[--memory-budget 8e9]``: a seeded smooth regression
(:func:`benchmarks.datasets.smooth_regression`, 32 features, Gaussian noise of
known variance, so the Bayes risk is known) of ``--n-train`` rows and an
independent test set of ``--n-test`` rows. Models, each fitted in its own
process so that its peak memory is its own:

- the mean predictor, first: its peak memory is the interpreter's, the
  libraries' and the data's, ``base``. Each model gets the same
  ``A = budget - base - SLACK`` bytes beyond it (:func:`model_budget`), so
  one that keeps to ``A`` keeps its whole process within ``--memory-budget``;
- ours: ``EigenProRegressor(n_centers=P, bandwidth=b, memory_budget=A)``
  (``P`` seeded random training rows as centres, EigenPro 3/4), its other
  settings at their defaults; the test set is passed as validation data, so
  ``history_`` holds the test R^2 after every epoch (recorded only, never
  used to choose anything; its cost is inside the fit seconds). Skipped with
  a note while the estimator has no ``n_centers`` parameter;
- the strongest scikit-learn model in the same memory:
  ``Nystroem(kernel="rbf", gamma=1/(2 b^2), n_components=p) + Ridge`` at the
  largest ``p`` whose feature matrix and ridge solve fit ``A``
  (:func:`nystroem_components`: ``4 (2 n p + 2 p^2) <= A``), the penalty
  chosen on a held-out tenth of the training rows (never on the test set),
  then refitted on all rows;
- a reference: a linear ``Ridge`` on the features (same penalty choice).

``b`` is the bandwidth EigenPro's default ``bandwidth="auto"`` picks on this
training set (:func:`eigenpro.model_selection.choose_kernel`, the same
routine, run once here): both kernel models use the same Gaussian kernel.

Per model: fit wall seconds (measured around ``fit`` in the child: data
generation and scoring excluded), peak resident memory of the child process
(``VmHWM``, in bytes, see :func:`run_in_child`; the resident memory before
``fit`` is recorded too, and their difference is ``fit_peak_bytes``), test
mean squared error and its ratio to the noise variance (1 is the Bayes
risk), and the excess error over the noise, measured against the noiseless
teacher. Writes ``benchmarks/results/million.json`` and
``.png`` (test error against fit seconds; peak memory against the budget).
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time

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

#: Ridge penalties the Nyström baseline chooses from on its held-out split:
#: multiples of the mean k(x, x) = 1, the grid of EigenPro's ``alpha="auto"``
RIDGE_ALPHAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)

#: fraction of the training rows the baselines hold out to choose their penalty
HELD_OUT = 0.1

#: float32 features: bytes per entry of the Nyström feature matrix
FEATURE_BYTES = 4

#: bytes a fit takes beyond its arrays: BLAS buffers and the libraries it loads
#: (about 40 MB measured for the Nyström ridge at n = 50000)
SLACK = 128 * 2**20


def add_arguments(p):
    p.add_argument("--n-train", type=int, default=1_000_000, help="training rows")
    p.add_argument("--n-test", type=int, default=20000, help="test rows (independent of n)")
    p.add_argument("--n-features", type=int, default=32, help="features of the synthetic data")
    p.add_argument("--n-centers", type=int, default=20000, help="EigenPro's centres P")
    p.add_argument(
        "--memory-budget", type=float, default=8e9, help="bytes, for every model (default 8e9)"
    )
    p.add_argument(
        "--n-epochs", type=int, default=None, help="EigenPro epochs (default: the estimator's)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--models",
        nargs="+",
        default=[m for m in MODELS if m != "mean"],
        choices=[m for m in MODELS if m != "mean"],
        help="models to run besides the mean predictor, which always runs first (default: all)",
    )
    p.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds after which a model is stopped"
    )
    p.add_argument("--out", default=RESULTS, help="folder for the JSON and PNG results")


#: model name -> what the row is
MODELS = {
    "mean": "mean predictor",
    "linear": "Ridge on the features",
    "nystroem": "Nystroem(p={n_components}) + Ridge, largest p in the budget",
    "eigenpro": "ours: EigenProRegressor(n_centers={n_centers})",
}


def nystroem_components(n_train, budget, *, itemsize=FEATURE_BYTES):
    """The largest ``p`` whose Nyström features and ridge solve fit in ``budget`` bytes.

    The peak of ``Nystroem(n_components=p).fit_transform(X)`` followed by
    ``Ridge().fit`` on ``n`` rows (float32 features; the data themselves are
    not counted, as for EigenPro's ``memory_budget``):

    - ``transform`` holds the kernel block ``K(X, Z)`` (n x p) and its
      product with the normalisation (n x p): ``2 n p``;
    - ``Ridge.fit`` holds the features (n x p), the centred copy it makes
      (``copy_X``, n x p), the Gram matrix ``F^T F`` and the Cholesky solve's
      copy of it (p x p each): ``2 n p + 2 p^2``;
    - ``Nystroem.fit``'s SVD of the ``p x p`` basis kernel (four p x p) comes
      before the features exist.

    So ``peak = itemsize (2 n p + 2 p^2)``, and ``p`` is the largest root of
    ``2 p^2 + 2 n p <= budget / itemsize`` (measured against the child's peak
    resident memory in ``tests/benchmarks/test_million_suite.py`` and by every
    run: ``fit_peak_bytes`` of the row).
    """
    entries = budget / itemsize
    p = (-2.0 * n_train + math.sqrt(4.0 * n_train**2 + 8.0 * entries)) / 4.0
    return max(int(p), 0)


def nystroem_bytes(n_train, p, *, itemsize=FEATURE_BYTES):
    """The peak of :func:`nystroem_components`'s formula, in bytes."""
    return itemsize * (2 * n_train * p + 2 * p * p)


def ours_available():
    """Whether ``EigenProRegressor`` takes ``n_centers`` (decoupled centres, issue 15)."""
    from eigenpro import EigenProRegressor

    return "n_centers" in EigenProRegressor().get_params()


def shared_bandwidth(data, budget):
    """The bandwidth (and penalty) ``EigenProRegressor(bandwidth="auto")`` picks on ``data``.

    The estimator's own routine, :func:`eigenpro.model_selection.choose_kernel`,
    on the centred targets, as ``fit`` calls it.
    """
    from eigenpro.kernels import make_kernel
    from eigenpro.model_selection import choose_kernel

    y = data.y_train.astype(data.X_train.dtype)
    Y = (y - y.mean())[:, None]
    choice = choose_kernel(make_kernel("gaussian", None), data.X_train, Y, max_bytes=budget)
    return float(choice.kernel.bandwidth), float(choice.alpha)


def run(args):
    t_start = time.perf_counter()
    data_args = {
        "n_train": args.n_train,
        "n_test": args.n_test,
        "n_features": args.n_features,
        "seed": args.seed,
    }
    t0 = time.perf_counter()
    data = datasets.smooth_regression(**data_args)
    generate_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    bandwidth, alpha = shared_bandwidth(data, args.memory_budget)
    bandwidth_seconds = time.perf_counter() - t0
    noise = data.noise_variance
    print(
        f"smooth-regression: {args.n_train} train / {args.n_test} test rows, "
        f"{args.n_features} features (generated in {generate_seconds:.1f} s); noise variance "
        f"{noise:g} (the Bayes risk); test variance {data.y_test.var():.4f}",
        flush=True,
    )
    print(
        f"shared Gaussian bandwidth {bandwidth:.4g} (EigenPro's 'auto' choice, "
        f"penalty {alpha:.3g}; {bandwidth_seconds:.1f} s); budget {args.memory_budget:.3g} bytes",
        flush=True,
    )
    del data
    spec = {"data": data_args, "bandwidth": bandwidth, "seed": args.seed}
    # the data and the interpreter: measured on the mean predictor, which holds nothing else
    rows = [_child_row(spec, "mean", {}, args, noise)]
    base = rows[0].get("peak_rss_bytes", 0)
    available = model_budget(args.memory_budget, base)
    p_nystroem = min(nystroem_components(args.n_train, available), args.n_train)
    print(
        f"  budget for the models beyond the data: {available / 1e9:.3g} GB "
        f"({args.memory_budget / 1e9:.3g} GB - {base / 1e9:.3g} GB of data and interpreter - "
        f"{SLACK / 2**20:.0f} MiB of libraries); Nystroem p = {p_nystroem}",
        flush=True,
    )
    for model in args.models:
        if model == "eigenpro":
            if not ours_available():
                print(
                    "  ours skipped: EigenProRegressor has no n_centers parameter yet "
                    "(decoupled centres, issue 15)",
                    flush=True,
                )
                note = "EigenProRegressor has no n_centers parameter yet"
                name = MODELS[model].format(n_centers=args.n_centers)
                rows.append({"model": model, "name": name, "skipped": True, "note": note})
                continue
            params = {"n_centers": args.n_centers, "n_epochs": args.n_epochs,
                      "memory_budget": available}  # fmt: skip
        elif model == "nystroem":
            params = {"n_components": p_nystroem,
                      "predicted_bytes": nystroem_bytes(args.n_train, p_nystroem)}  # fmt: skip
        else:
            params = {}
        rows.append(_child_row(spec, model, params, args, noise))
    payload = {
        "suite": "million",
        "dataset": datasets.SMOOTH,
        "data": data_args,
        "noise_variance": noise,
        "bandwidth": bandwidth,
        "eigenpro_auto_alpha": alpha,
        "memory_budget": args.memory_budget,
        "model_budget": available,
        "n_centers": args.n_centers,
        "nystroem_components": p_nystroem,
        "generate_seconds": generate_seconds,
        "bandwidth_seconds": bandwidth_seconds,
        "machine": machine_info(),
        "total_seconds": time.perf_counter() - t_start,
        "results": rows,
    }
    print(format_table(rows, args.memory_budget))
    stem = os.path.join(args.out, "million")
    write_json(stem + ".json", payload)
    plot(stem + ".png", rows, noise, args.memory_budget, args.n_train)
    print(f"wrote {stem}.json and {stem}.png")
    return payload


def model_budget(budget, base):
    """Bytes a model may use beyond the data: ``budget - base -`` :data:`SLACK`.

    ``base`` is the measured peak of the mean predictor's process (the
    interpreter, the libraries and the data). Both kernel models get the
    same figure: EigenPro as its ``memory_budget``, the Nyström baseline
    through :func:`nystroem_components`; so a model that keeps to it keeps the
    whole process within ``budget``.
    """
    return max(budget - base - SLACK, 0.0)


def _child_row(spec, model, params, args, noise):
    row = run_in_child({**spec, "model": model, "params": params}, timeout=args.timeout)
    row["name"] = MODELS[model].format(**params)
    print_row(row, noise)
    return row


# -- the child process --------------------------------------------------------------------------


def run_in_child(spec, *, timeout=None):
    """Fit and score ``spec``'s model in a fresh Python process: its result row.

    The child (:func:`child_main`) generates the data itself and reports its
    resident memory before ``fit`` (``VmRSS``) and its peak (``VmHWM`` of
    ``/proc/self/status``, read after predicting: the high-water mark of the
    child's own address space, which ``exec`` starts afresh). The
    ``ru_maxrss`` of ``os.wait4`` on the child is kept too
    (``wait4_maxrss_bytes``), but only as an upper bound: Linux carries the
    parent's peak at the fork into it (and ``getrusage(RUSAGE_CHILDREN)`` is
    the maximum over all children so far), so it is the peak only where the
    child fails before reporting. A child that fails or runs past
    ``timeout`` gives a row with ``error``.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as tmp:
        spec_path, out_path = os.path.join(tmp, "spec.json"), os.path.join(tmp, "row.json")
        with open(spec_path, "w") as f:
            json.dump(spec, f)
        code = "from benchmarks.million_suite import child_main; child_main()"
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", code, spec_path, out_path], env=env)
        status, usage = _wait(proc, timeout)
        wall = time.perf_counter() - t0
        row = {"model": spec["model"], "params": spec["params"]}
        if os.path.exists(out_path):
            with open(out_path) as f:
                row.update(json.load(f))
        # an upper bound only: Linux carries the parent's peak at the fork into it
        row["wait4_maxrss_bytes"] = usage.ru_maxrss * 1024  # kilobytes on Linux
        row.setdefault("peak_rss_bytes", row["wait4_maxrss_bytes"])
        row["child_seconds"] = wall
        if "rss_before_fit_bytes" in row:
            row["fit_peak_bytes"] = row["peak_rss_bytes"] - row["rss_before_fit_bytes"]
        if status != 0 and "error" not in row:
            row["error"] = f"child exited with status {status}"
        return row


def _wait(proc, timeout):
    """Wait for ``proc`` (killing it after ``timeout`` seconds): its exit status and rusage."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage
        if deadline is not None and time.monotonic() > deadline:
            proc.kill()
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            return f"killed after {timeout:g} s", usage
        time.sleep(0.05)


def child_main():
    """Entry point of a child: ``python -c ... SPEC_JSON OUT_JSON``."""
    spec_path, out_path = sys.argv[1], sys.argv[2]
    with open(spec_path) as f:
        spec = json.load(f)
    try:
        row = fit_and_score(spec)
    except Exception as exc:  # reported in the row, the suite goes on
        row = {"error": f"{type(exc).__name__}: {exc}"}
    with open(out_path, "w") as f:
        json.dump(row, f, default=_plain)


def _plain(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def _status_bytes(field):
    """``VmRSS`` (resident now) or ``VmHWM`` (its peak) of this process, in bytes.

    Where ``/proc`` is absent: the peak from ``getrusage`` for both.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def make_model(spec):
    """The estimator of ``spec`` (with the test set for ours' per-epoch validation)."""
    from sklearn.kernel_approximation import Nystroem
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline

    b, seed, params = spec["bandwidth"], spec["seed"], spec["params"]
    if spec["model"] == "eigenpro":
        from eigenpro import EigenProRegressor

        extra = {} if params.get("n_epochs") is None else {"n_epochs": params["n_epochs"]}
        return EigenProRegressor(
            n_centers=params["n_centers"], bandwidth=b, memory_budget=params["memory_budget"],
            random_state=seed, **extra,
        )  # fmt: skip
    if spec["model"] == "nystroem":
        features = Nystroem(
            kernel="rbf", gamma=1.0 / (2.0 * b * b), n_components=params["n_components"],
            random_state=seed,
        )  # fmt: skip
        return make_pipeline(features, Ridge())
    if spec["model"] == "linear":
        return Ridge()
    if spec["model"] == "mean":
        from sklearn.dummy import DummyRegressor

        return DummyRegressor()
    raise ValueError(f"unknown model {spec['model']!r}")


def fit_and_score(spec):
    """Generate the data, fit ``spec``'s model, score it: the child's part of a row."""
    data = datasets.smooth_regression(**spec["data"])
    model = make_model(spec)
    row = {"rss_before_fit_bytes": _status_bytes("VmRSS")}
    t0 = time.perf_counter()
    if spec["model"] == "eigenpro":
        model.fit(data.X_train, data.y_train, X_val=data.X_test, y_val=data.y_test)
    elif spec["model"] in ("nystroem", "linear"):
        row["alpha_scores"] = fit_ridge_on_held_out(model, data.X_train, data.y_train)
    else:
        model.fit(data.X_train, data.y_train)
    row["fit_seconds"] = time.perf_counter() - t0
    predicted = np.asarray(model.predict(data.X_test), dtype=np.float64)
    row["test_mse"] = float(np.mean((predicted - data.y_test) ** 2))
    row["excess_mse"] = float(np.mean((predicted - data.f_test) ** 2))
    row["relative_to_noise"] = row["test_mse"] / data.noise_variance
    history = getattr(model, "history_", None)
    if history is not None:
        row["history"] = {k: list(v) for k, v in history.items()}
        if "val_score" in history:  # test R^2 -> test MSE, per epoch
            variance = float(np.var(data.y_test))
            row["history"]["test_mse"] = [
                None if r is None else (1.0 - r) * variance for r in history["val_score"]
            ]
    for attr in ("bandwidth_", "alpha_", "batch_size_", "n_iter_"):
        if hasattr(model, attr):
            row[attr] = getattr(model, attr)
    row["peak_rss_bytes"] = _status_bytes("VmHWM")
    return row


def fit_ridge_on_held_out(model, X, y):
    """Choose the ridge penalty on a held-out tenth of the rows, then refit on all of them.

    ``model`` is a ``Ridge`` or a pipeline ending in one. The features are
    computed once (the pipeline's transformer is fitted on all training rows:
    Nyström draws its components from them) and each penalty of
    :data:`RIDGE_ALPHAS` is fitted on the first 90 % of the rows and scored on
    the rest; the best refits on all rows. Returns ``{alpha: held-out MSE}``.
    """
    from sklearn.base import clone
    from sklearn.pipeline import Pipeline

    if isinstance(model, Pipeline):
        features, ridge = model[:-1], model[-1]
        F = features.fit_transform(X)
    else:
        ridge, F = model, X
    n_fit = round(len(y) * (1.0 - HELD_OUT))
    scores = {}
    for alpha in RIDGE_ALPHAS:
        trial = clone(ridge).set_params(alpha=alpha).fit(F[:n_fit], y[:n_fit])
        scores[alpha] = float(np.mean((trial.predict(F[n_fit:]) - y[n_fit:]) ** 2))
        del trial
    ridge.set_params(alpha=min(scores, key=scores.get)).fit(F, y)
    return scores


# -- reporting ----------------------------------------------------------------------------------


def print_row(row, noise):
    if "error" in row:
        print(f"  {row['name']:48s} failed: {row['error']}", flush=True)
        return
    print(
        f"  {row['name']:48s} test MSE {row['test_mse']:.4f} ({row['relative_to_noise']:.3f} x "
        f"noise)  {row['fit_seconds']:8.1f} s  peak {row['peak_rss_bytes'] / 1e9:6.2f} GB",
        flush=True,
    )


def format_table(rows, budget):
    """Text table: test MSE, its ratio to the noise, fit seconds, peak memory of every model."""
    out = []
    for r in rows:
        if r.get("skipped") or "error" in r:
            out.append([r["name"], "-", "-", "-", "-", "-", r.get("note", r.get("error", ""))])
            continue
        fits = "yes" if r["peak_rss_bytes"] <= budget else "NO"
        out.append([r["name"], f"{r['test_mse']:.4f}", f"{r['relative_to_noise']:.3f}",
                    f"{r['excess_mse']:.4f}", f"{r['fit_seconds']:.1f}",
                    f"{r['peak_rss_bytes'] / 1e9:.2f}", fits])  # fmt: skip
    headers = ["model", "test MSE", "/ noise", "excess", "fit s", "peak GB", "in budget"]
    return text_table(headers, out)


class Bars:
    """``ax.barh`` of values with a label per bar (a mark of :class:`benchmarks.report.Panel`)."""

    def __init__(self, labels, values, options=None):
        self.labels, self.values, self.options = list(labels), list(values), options or {}

    def draw(self, ax):
        ax.barh(range(len(self.values)), self.values, **self.options)
        ax.set_yticks(range(len(self.values)), self.labels, fontsize=7)


def plot(path, rows, noise, budget, n_train):
    """Test MSE against fit seconds (ours per epoch); each model's peak memory and the budget."""
    done = [r for r in rows if not r.get("skipped") and "error" not in r]
    marks = []
    for r in done:
        history = r.get("history", {})
        if history.get("test_mse") and history.get("time"):
            pts = [(t, e) for t, e in zip(history["time"], history["test_mse"], strict=False)
                   if e is not None and t > 0]  # fmt: skip
            if pts:
                marks.append(Line([t for t, _ in pts], [e for _, e in pts], "-o",
                                  f"{r['name']} (per epoch)", {"markersize": 3}))  # fmt: skip
    marks.append(Scatter([max(r["fit_seconds"], 1e-3) for r in done],
                         [r["test_mse"] for r in done], "final", [r["name"] for r in done],
                         {"color": "black", "s": 20}))  # fmt: skip
    if done:
        seconds = [max(r["fit_seconds"], 1e-3) for r in done]
        marks.append(Line([min(seconds), max(seconds)], [noise, noise], "--", "noise (Bayes)",
                          {"color": "gray"}))  # fmt: skip
    error = Panel(marks, xlabel="fit seconds", ylabel="test MSE", xscale="log", yscale="log",
                  title=f"n = {n_train:,}", legend={"fontsize": 7})  # fmt: skip
    labels = [r["name"] for r in done]
    peaks = [r["peak_rss_bytes"] / 1e9 for r in done]
    memory = Panel(
        (Bars(labels, peaks, {"color": "tab:blue"}),
         Line([budget / 1e9] * 2, [-0.5, max(len(done), 1) - 0.5], "--", "budget",
              {"color": "red"})),
        xlabel="peak resident memory (GB)", title="memory", legend={"fontsize": 7},
    )  # fmt: skip
    return save_figure(path, [[error, memory]], figsize=(12, 4.5), dpi=110)
