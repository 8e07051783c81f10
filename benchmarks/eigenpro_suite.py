# SPDX-License-Identifier: BSD-3-Clause
"""EigenPro against plain kernel SGD, exact KernelRidge and Nystroem + RidgeClassifier.

Objective: kernel least squares on one-hot targets (train MSE) and test
accuracy, after every epoch. Solvers:

- ``eigenpro``: :class:`eigenpro.EigenProClassifier`, automatic batch and step.
- ``sgd``: the same kernel regression by plain mini-batch SGD (no
  preconditioner; EigenPro's batch size, so an epoch costs the same), with its
  best stable step from a grid of multiples of the analytic rule
  ``0.99 * 2m / (beta + (m - 1) lambda_1)``, chosen on a 10k subset.
- ``kernel_ridge``: :class:`sklearn.kernel_ridge.KernelRidge` (``alpha=1e-3``,
  float32) where the n x n matrix fits in memory.
- ``nystroem``: :class:`sklearn.kernel_approximation.Nystroem` +
  :class:`sklearn.linear_model.RidgeClassifier` (``alpha=1e-3``).

Reported alongside: the GEMM rate measured in the same run and the time of the
kernel matrix's own GEMM (2 n^2 d flops) at that rate, and every fit's peak
memory: the process's peak resident set above its level before the fit
(:class:`solvers.backend.MemoryPeak`; on a CUDA device also torch's peak
allocation), next to EigenPro's ``memory_budget`` in bytes. The resident set
also counts what the budget does not cover (the data's copies, library
workspaces, allocator slack; see :mod:`solvers.backend`).
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass

import numpy as np

from benchmarks import datasets
from benchmarks.report import Curve, format_table, gemm_rate, machine_info, plot_curves, write_json
from solvers.backend import MemoryPeak

SOLVERS = ("eigenpro", "sgd", "kernel_ridge", "nystroem")
RESULTS = os.path.join(os.path.dirname(__file__), "results")


def add_arguments(p):
    p.add_argument("--data", help="MNIST .npz (x_train, y_train, x_test, y_test); default: digits")
    p.add_argument("--n-train", type=int, default=None, help="first N training samples")
    p.add_argument(
        "--epochs", type=int, default=None, help="EigenPro epochs (default 3 MNIST, 10 digits)"
    )
    p.add_argument(
        "--sgd-epochs", type=int, default=None, help="SGD epochs (default 10x --epochs, max 40)"
    )
    p.add_argument(
        "--device", default="cpu", help="cpu or cuda (EigenPro and SGD; sklearn stays on CPU)"
    )
    p.add_argument("--kernel", default="gaussian")
    p.add_argument(
        "--bandwidth", type=float, default=None, help="default: 5 on MNIST, auto on digits"
    )
    p.add_argument(
        "--memory-budget", type=float, default=None, help="bytes for kernel blocks (default auto)"
    )
    p.add_argument(
        "--solvers",
        default=",".join(SOLVERS),
        help="comma-separated subset of " + ",".join(SOLVERS),
    )
    p.add_argument("--krr-max-n", type=int, default=20000, help="largest n for exact KernelRidge")
    p.add_argument("--nystroem-components", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=RESULTS, help="folder for the JSON and PNG")
    p.add_argument("--tag", default="", help="suffix for the output file names")
    p.add_argument(
        "--distributed",
        action="store_true",
        help="under torchrun: fit over the ranks (process_group) and compare with one process",
    )


@dataclass(frozen=True)
class Settings:
    """The run's choices, with the dataset's defaults filled in."""

    epochs: int
    sgd_epochs: int
    bandwidth: float | str
    solvers: tuple[str, ...]
    device: str | None  # None: NumPy on the CPU
    memory_budget: float | str


def settings(args, data):
    """:class:`Settings` from the command line (defaults: MNIST or digits)."""
    mnist = data.name == "mnist"
    epochs = args.epochs or (3 if mnist else 10)
    solvers = tuple(s.strip() for s in args.solvers.split(",") if s.strip())
    unknown = set(solvers) - set(SOLVERS)
    if unknown:
        raise SystemExit(f"unknown solvers {sorted(unknown)}; choose from {SOLVERS}")
    return Settings(
        epochs=epochs,
        sgd_epochs=args.sgd_epochs or min(10 * epochs, 40),
        bandwidth=args.bandwidth if args.bandwidth is not None else (5.0 if mnist else "auto"),
        solvers=solvers,
        device=None if args.device == "cpu" else args.device,
        memory_budget="auto" if args.memory_budget is None else args.memory_budget,
    )


def run(args):
    os.environ.setdefault("SCIPY_ARRAY_API", "1")
    if args.distributed:
        from benchmarks.eigenpro_distributed import run_distributed

        return run_distributed(args)
    data = datasets.load(args.data, args.n_train)
    setup = settings(args, data)
    n, d = data.X_train.shape
    print(
        f"EigenPro benchmark: {data.name}, n={n}, d={d}, test={len(data.X_test)}, "
        f"kernel={args.kernel}, bandwidth={setup.bandwidth}, device={args.device}",
        flush=True,
    )
    info = machine_info()
    rate, gemm_seconds = measure_gemm(data, setup.device)
    curves = fit_solvers(data, setup, args)
    summary = _summary(curves, gemm_seconds, rate, data.name == "mnist")
    table = format_table(curves, TABLE_COLUMNS)
    print()
    print(table)
    print()
    for line in summary["lines"]:
        print(line)
    payload = {
        "suite": "eigenpro",
        "dataset": data.name,
        "n_train": n,
        "n_features": d,
        "n_test": len(data.X_test),
        "kernel": args.kernel,
        "bandwidth": setup.bandwidth,
        "device": args.device,
        "machine": info,
        "gemm_gflops": rate / 1e9,
        "gemm_seconds": gemm_seconds,
        "summary": summary,
        "table": table,
        "curves": curves,
    }
    write_results(payload, args)
    return payload


#: the table's columns ``(header, key, fmt)`` (:func:`benchmarks.report.format_table`)
TABLE_COLUMNS = [
    ("epochs", "epoch", "d"),
    ("fit s", "seconds", ".1f"),
    ("train mse", "train_mse", ".3e"),
    ("test acc %", lambda c: _pct(c.last("test_acc")), ".2f"),
    ("peak MiB", lambda c: _mib(c.params.get("peak_resident_bytes")), ".0f"),
    ("budget MiB", lambda c: _mib(c.params.get("memory_budget_bytes")), ".0f"),
]


def measure_gemm(data, device):
    """This machine's GEMM rate on the kernel's shape and the kernel matrix's GEMM seconds."""
    n, d = data.X_train.shape
    rate = gemm_rate(data.X_train, device=device)
    gemm_seconds = 2.0 * n * n * d / rate
    print(
        f"GEMM rate {rate / 1e9:.1f} GFLOP/s -> kernel-matrix GEMM (2 n^2 d) {gemm_seconds:.2f} s",
        flush=True,
    )
    return rate, gemm_seconds


def fit_solvers(data, setup, args):
    """A :class:`Curve` per solver of ``setup.solvers`` that runs (KernelRidge may not fit)."""
    common = dict(
        kernel=args.kernel,
        bandwidth=setup.bandwidth,
        memory_budget=setup.memory_budget,
        random_state=args.seed,
        device=setup.device,
    )
    curves, ep = [], None
    if "eigenpro" in setup.solvers or "sgd" in setup.solvers:
        ep_curve, ep = _eigenpro(data, setup.epochs, common)
        curves.append(ep_curve)
        _log_fit("eigenpro", ep_curve)
    if "sgd" in setup.solvers:
        curves.append(_sgd(data, setup.sgd_epochs, common, ep))
        print(f"  sgd: {curves[-1].last('test_acc'):.4f} acc", flush=True)
    gamma = _sklearn_gamma(ep, args.kernel, setup.bandwidth, data.X_train)
    if "kernel_ridge" in setup.solvers:
        c = _kernel_ridge(data, gamma, args.kernel, args.krr_max_n)
        if c is not None:
            curves.append(c)
            _log_fit("kernel_ridge", c)
    if "nystroem" in setup.solvers:
        curves.append(_nystroem(data, gamma, args.kernel, args.nystroem_components, args.seed))
        _log_fit("nystroem", curves[-1])
    return curves


def _log_fit(name, curve):
    print(f"  {name}: {curve.last('test_acc'):.4f} acc, {curve.last('seconds'):.1f} s", flush=True)


def _sklearn_gamma(ep, kernel, bandwidth, X):
    """scikit-learn's ``gamma = 1 / (2 s^2)`` of EigenPro's bandwidth ``s`` (or the kernel's)."""
    if ep is not None:
        return 1.0 / (2.0 * ep.bandwidth_**2)
    from eigenpro.kernels import make_kernel

    k = make_kernel(kernel, None if bandwidth == "auto" else bandwidth)
    return 1.0 / (2.0 * (k.bandwidth or k.default_bandwidth(X)) ** 2)


def write_results(payload, args):
    """The JSON and the PNG (accuracy and train MSE against seconds and epochs)."""
    name, n = payload["dataset"], payload["n_train"]
    stem = f"eigenpro_{name}_n{n}_{args.device.replace(':', '')}{args.tag}"
    json_path = write_json(os.path.join(args.out, stem + ".json"), payload)
    png_path = plot_curves(
        os.path.join(args.out, stem + ".png"),
        payload["curves"],
        f"{name} n={n}: kernel least squares ({args.kernel}), {args.device}",
        [("test_acc", "test accuracy", False), ("train_mse", "train MSE (one-hot)", True)],
    )
    print(f"\nwrote {json_path}\nwrote {png_path}")


# --------------------------------------------------------------------------- #
def _pct(v):
    return None if v is None else 100.0 * v


def _mib(v):
    return None if v is None else v / 2**20


class FitMemory(MemoryPeak):
    """:class:`solvers.backend.MemoryPeak` of a fit, plus torch's peak on a CUDA device.

    ``params()``: ``peak_resident_bytes`` (None where the resident set's
    high-water mark cannot be reset) and, on CUDA, ``peak_device_bytes``.
    """

    def __init__(self, device=None):
        super().__init__(trace=False)
        self.cuda = device is not None and "cuda" in str(device)
        self.device_peak = None

    def __enter__(self):
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._device_base = torch.cuda.memory_allocated()
        return super().__enter__()

    def __exit__(self, *exc):
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            self.device_peak = torch.cuda.max_memory_allocated() - self._device_base
        return super().__exit__(*exc)

    def params(self):
        out = {"peak_resident_bytes": self.resident}
        if self.cuda:
            out["peak_device_bytes"] = self.device_peak
        return out


def _budget_bytes(memory_budget, device):
    """The bytes ``memory_budget`` resolves to on ``device`` (None: NumPy on the CPU)."""
    from solvers.backend import resolve_device, resolve_memory_budget

    xp, dev = resolve_device("cpu" if device is None else device)
    return resolve_memory_budget(memory_budget, xp, dev)


def _eigenpro(data, epochs, common, name="eigenpro", **overrides):
    from eigenpro import EigenProClassifier

    est = EigenProClassifier(n_epochs=epochs, **{**common, **overrides})
    budget = _budget_bytes(est.memory_budget, common.get("device"))
    with FitMemory(common.get("device")) as memory:
        t0 = time.perf_counter()
        est.fit(data.X_train, data.y_train, X_val=data.X_test, y_val=data.y_test)
        wall = time.perf_counter() - t0
    h = est.history_
    curve = Curve(
        name,
        params={
            "batch_size": est.batch_size_,
            "step_size": est.step_size_,
            "n_components": est.n_components_,
            "subsample_size": est.subsample_size_,
            "bandwidth": est.bandwidth_,
            "wall_seconds_with_eval": wall,
            "setup_seconds": est.timings_,
            "memory_budget_bytes": budget,
            **memory.params(),
            **overrides,
        },
    )
    for e, t, mse, acc in zip(h["epoch"], h["time"], h["train_mse"], h["val_score"], strict=False):
        curve.add(epoch=e, seconds=t, train_mse=mse, test_acc=acc)
    return curve, est


def _sgd(data, epochs, common, ep):
    from sklearn.exceptions import ConvergenceWarning

    from eigenpro.preconditioner import step_size_for_batch

    m = ep.batch_size_
    rule = step_size_for_batch(m, ep.beta_, ep.top_eigenvalue_)
    sub = datasets.Dataset(
        data.name,
        data.X_train[:10000],
        data.y_train[:10000],
        data.X_test[:2000],
        data.y_test[:2000],
    )
    grid = {}
    for mult in (0.25, 0.5, 1.0, 2.0, 4.0):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            c, _ = _eigenpro(
                sub,
                2,
                common,
                name="sgd-grid",
                n_components=0,
                batch_size=min(m, len(sub.X_train)),
                step_size=rule * mult,
            )
        stable = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        grid[mult] = {"stable": stable, "train_mse": c.last("train_mse")}
    ok = {k: v for k, v in grid.items() if v["stable"]}
    best = min(ok, key=lambda k: ok[k]["train_mse"]) if ok else min(grid)
    curve, _ = _eigenpro(
        data, epochs, common, name="sgd", n_components=0, batch_size=m, step_size=rule * best
    )
    curve.params.update({"step_rule": rule, "step_multiplier": best, "grid": grid})
    curve.notes = "EigenPro's engine with the preconditioner off (n_components=0)"
    return curve


def _one_hot(y, k):
    Y = np.zeros((len(y), k), dtype=np.float32)
    Y[np.arange(len(y)), y] = 1.0
    return Y


def _kernel_ridge(data, gamma, kernel, max_n):
    from sklearn.kernel_ridge import KernelRidge

    from solvers.backend import available_memory

    n = len(data.X_train)
    if kernel not in ("gaussian", "rbf", "laplacian"):
        return None
    need = 3 * n * n * 4  # float32 K, its factorisation and a copy
    if n > max_n or need > 0.9 * available_memory():
        print(f"  kernel_ridge: skipped (n={n} needs ~{need / 2**30:.1f} GiB)", flush=True)
        return None
    Y = _one_hot(data.y_train, data.n_classes)
    sk_kernel = "rbf" if kernel in ("gaussian", "rbf") else "laplacian"
    if sk_kernel == "laplacian":
        return None  # sklearn's laplacian kernel uses the L1 distance: not the same kernel
    krr = KernelRidge(kernel=sk_kernel, gamma=gamma, alpha=1e-3)
    with warnings.catch_warnings(), FitMemory() as memory:
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        krr.fit(data.X_train, Y)
        fit = time.perf_counter() - t0
    acc = float(np.mean(krr.predict(data.X_test).argmax(1) == data.y_test))
    k = min(n, 4096)
    mse = float(np.mean((krr.predict(data.X_train[:k]) - Y[:k]) ** 2))
    c = Curve(
        "kernel_ridge",
        params={"alpha": 1e-3, "gamma": gamma, "dtype": "float32", **memory.params()},
    )
    c.add(epoch=None, seconds=fit, train_mse=mse, test_acc=acc)
    return c


def _nystroem(data, gamma, kernel, n_components, seed):
    from sklearn.kernel_approximation import Nystroem
    from sklearn.linear_model import RidgeClassifier
    from sklearn.pipeline import make_pipeline

    n = len(data.X_train)
    comps = min(n_components, n // 2)
    sk_kernel = "rbf" if kernel in ("gaussian", "rbf") else kernel
    pipe = make_pipeline(
        Nystroem(kernel=sk_kernel, gamma=gamma, n_components=comps, random_state=seed),
        RidgeClassifier(alpha=1e-3),
    )
    with FitMemory() as memory:
        t0 = time.perf_counter()
        pipe.fit(data.X_train, data.y_train)
        fit = time.perf_counter() - t0
    acc = float(np.mean(pipe.predict(data.X_test) == data.y_test))
    c = Curve(
        "nystroem",
        params={"n_components": comps, "gamma": gamma, "ridge_alpha": 1e-3, **memory.params()},
    )
    c.add(epoch=None, seconds=fit, train_mse=None, test_acc=acc)
    return c


def _summary(curves, gemm_seconds, rate, mnist):
    """The figures of the README: fit time over the GEMM's, and the ratios to the baselines.

    A dict of numbers, and ``"lines"``: the same as sentences for stdout.
    """
    by = {c.solver: c for c in curves}
    s = {"gemm_gflops": rate / 1e9, "gemm_seconds": gemm_seconds, "lines": []}
    ep = by.get("eigenpro")
    if ep is not None:
        _eigenpro_facts(s, ep, gemm_seconds, rate, mnist)
        if "kernel_ridge" in by:
            _kernel_ridge_facts(s, ep, by["kernel_ridge"])
        if "sgd" in by:
            _sgd_facts(s, ep, by["sgd"])
    ny = by.get("nystroem")
    if ny is not None:
        s["lines"].append(
            f"Nystroem({ny.params['n_components']}) + RidgeClassifier: "
            f"{100 * ny.last('test_acc'):.2f}% in {ny.last('seconds'):.1f} s"
        )
    return s


def _eigenpro_facts(s, ep, gemm_seconds, rate, mnist):
    """EigenPro's fit seconds against the kernel GEMM's; accuracy per epoch."""
    fit = ep.last("seconds")
    s["eigenpro_fit_seconds"] = fit
    s["fit_over_gemm"] = fit / gemm_seconds
    s["eigenpro_test_acc_per_epoch"] = [p["test_acc"] for p in ep.points[1:]]
    s["lines"].append(
        f"EigenPro fit {fit:.1f} s = {fit / gemm_seconds:.2f} x the kernel GEMM "
        f"({gemm_seconds:.1f} s at {rate / 1e9:.0f} GFLOP/s)"
    )
    s["lines"].append(
        "EigenPro test accuracy per epoch: "
        + ", ".join(f"{100 * a:.2f}%" for a in s["eigenpro_test_acc_per_epoch"])
    )
    _memory_facts(s, ep)
    if mnist:
        hit = ep.first_reaching("test_acc", 0.986)
        s["epochs_to_98.6"] = hit["epoch"] if hit else None
        s["lines"].append(
            f"epochs to 98.6% test accuracy: {hit['epoch'] if hit else 'not reached'}"
        )


def _memory_facts(s, ep):
    """EigenPro's peak memory during fit next to its budget."""
    budget, peak = ep.params.get("memory_budget_bytes"), ep.params.get("peak_resident_bytes")
    device = ep.params.get("peak_device_bytes")
    s["eigenpro_memory_budget_bytes"] = budget
    s["eigenpro_peak_resident_bytes"] = peak
    s["eigenpro_peak_device_bytes"] = device
    if budget is None:
        return
    measured = "not measured" if peak is None else f"{peak / 2**20:.0f} MiB resident"
    on_device = "" if device is None else f", {device / 2**20:.0f} MiB on the device"
    s["lines"].append(
        f"EigenPro peak memory during fit: {measured}{on_device} above the data "
        f"(memory budget {budget / 2**20:.0f} MiB)"
    )


def _kernel_ridge_facts(s, ep, krr):
    """EigenPro's seconds to KernelRidge's accuracy less 0.1 point, and the speed-up."""
    krr_seconds = krr.last("seconds")
    target = krr.last("test_acc") - 0.001
    hit = ep.first_reaching("test_acc", target)
    s["kernel_ridge_seconds"] = krr_seconds
    s["eigenpro_seconds_to_krr_minus_0.1"] = hit["seconds"] if hit else None
    s["speedup_vs_kernel_ridge"] = krr_seconds / hit["seconds"] if hit else None
    reached = (
        f"reaches {100 * target:.2f}% at epoch {hit['epoch']} after {hit['seconds']:.1f} s "
        f"({krr_seconds / hit['seconds']:.1f}x faster)"
        if hit
        else "does not reach it"
    )
    s["lines"].append(
        f"KernelRidge {100 * krr.last('test_acc'):.2f}% in {krr_seconds:.1f} s; EigenPro " + reached
    )


def _sgd_facts(s, ep, sgd):
    """SGD's epochs to EigenPro's final training loss, as a ratio of epochs."""
    target = ep.last("train_mse")
    hit = sgd.first_reaching("train_mse", target, below=True)
    ep_epochs = ep.points[-1]["epoch"]
    sgd_run = sgd.points[-1]["epoch"]
    sgd_epochs = hit["epoch"] if hit else None
    s["sgd_epochs_to_eigenpro_loss"] = sgd_epochs
    s["sgd_epochs_run"] = sgd_run
    ratio = (sgd_epochs or sgd_run) / ep_epochs
    s["epoch_ratio_sgd_over_eigenpro"] = ratio
    outcome = (
        f"{sgd_epochs} epochs ({ratio:.1f}x)"
        if hit
        else f"not reached in {sgd_run} epochs (> {ratio:.1f}x; SGD ends at "
        f"{sgd.last('train_mse'):.3e})"
    )
    s["lines"].append(
        f"SGD to EigenPro's final train MSE {target:.3e} ({ep_epochs} epochs): " + outcome
    )
