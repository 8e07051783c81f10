# SPDX-License-Identifier: BSD-3-Clause
"""Curves, machine facts, JSON, tables and plots shared by every suite."""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class Curve:
    """One solver's run: a point per epoch (or a single point for direct solvers)."""

    solver: str
    params: dict = field(default_factory=dict)
    points: list = field(default_factory=list)  # dicts: epoch, seconds, metrics...
    notes: str = ""

    def add(self, **point):
        self.points.append({k: _plain(v) for k, v in point.items()})

    def last(self, key):
        return self.points[-1].get(key) if self.points else None

    def first_reaching(self, key, target, *, below=False):
        """First point whose ``key`` reaches ``target`` (>=, or <= with below)."""
        for p in self.points:
            v = p.get(key)
            if v is not None and (v <= target if below else v >= target):
                return p
        return None


def _plain(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v


def machine_info():
    import numpy
    import scipy
    import sklearn

    info = {
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "cpu_count": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def gemm_rate(X, *, block_rows=1024, min_seconds=2.0, device=None):
    """Measured FLOP/s of the kernel's GEMM shape ``X[block] @ X.T`` on this machine.

    Runs whole row blocks until ``min_seconds`` have passed (after one warm-up
    block) and returns flops / seconds.
    """
    if device is not None and str(device).startswith("cuda"):
        import torch

        Xd = torch.as_tensor(X, device=device)
        out = torch.empty((block_rows, Xd.shape[0]), device=device, dtype=Xd.dtype)
        torch.matmul(Xd[:block_rows], Xd.T, out=out)
        torch.cuda.synchronize()
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < min_seconds:
            start = (reps * block_rows) % max(Xd.shape[0] - block_rows, 1)
            torch.matmul(Xd[start : start + block_rows], Xd.T, out=out)
            reps += 1
            torch.cuda.synchronize()
        return reps * 2.0 * block_rows * Xd.shape[0] * Xd.shape[1] / (time.perf_counter() - t0)
    n, d = X.shape
    rows = min(block_rows, n)
    out = np.empty((rows, n), dtype=X.dtype)
    np.matmul(X[:rows], X.T, out=out)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_seconds:
        start = (reps * rows) % max(n - rows, 1)
        np.matmul(X[start : start + rows], X.T, out=out)
        reps += 1
    return reps * 2.0 * rows * n * d / (time.perf_counter() - t0)


def write_json(path, payload):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    payload = dict(payload)
    payload["curves"] = [
        asdict(c) if isinstance(c, Curve) else c for c in payload.get("curves", [])
    ]
    with open(path, "w") as f:
        json.dump(payload, f, indent=1, default=_plain)
    return path


def format_table(curves, columns):
    """Plain-text table: a row per curve, columns ``(header, key, fmt)`` of its last point."""
    headers = ["solver", *[c[0] for c in columns]]
    rows = []
    for c in curves:
        row = [c.solver]
        for _, key, fmt in columns:
            v = c.last(key) if not callable(key) else key(c)
            row.append("-" if v is None else format(v, fmt))
        rows.append(row)
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    line = lambda r: "  ".join(
        str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(zip(r, widths))
    )
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def plot_curves(path, curves, title, metrics):
    """PNG grid: one row per metric ``(key, label, log)``, against seconds and epochs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(metrics), 2, figsize=(11, 3.6 * len(metrics)), squeeze=False)
    for row, (key, label, log) in enumerate(metrics):
        for col, xkey in enumerate(("seconds", "epoch")):
            ax = axes[row, col]
            for c in curves:
                pts = [p for p in c.points if p.get(key) is not None and p.get(xkey) is not None]
                if not pts:
                    continue
                xs = [p[xkey] for p in pts]
                ys = [p[key] for p in pts]
                style = "-o" if len(pts) > 1 else "*"
                ax.plot(xs, ys, style, label=c.solver, markersize=4 if len(pts) > 1 else 12)
            ax.set_xlabel("fit seconds" if xkey == "seconds" else "epochs")
            ax.set_ylabel(label)
            if log:
                ax.set_yscale("log")
            if xkey == "seconds":
                ax.set_xscale("symlog", linthresh=1.0)
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
