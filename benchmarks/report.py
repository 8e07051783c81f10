# SPDX-License-Identifier: BSD-3-Clause
"""Curves, machine facts, JSON, tables and figures: the reporting of every suite.

The only plotting and table code of the benchmarks. A suite describes what to
draw and :mod:`benchmarks.report` draws it:

- a figure is a grid of :class:`Panel` (axes labels, scales, limits, legend),
  each holding marks drawn in order: :class:`Line` (``ax.plot``) and
  :class:`Scatter` (``ax.scatter`` with a text label per point);
  :func:`convergence_panel` builds the usual panel, one line per solver of a
  metric against epochs, seconds or forward passes, from per-epoch point
  dicts (a :class:`Series` each); :func:`save_figure` lays the panels out and
  writes the PNG;
- :func:`text_table` (stdout) and :func:`markdown_table` (README-ready) lay
  out rows of already formatted cells; :func:`format_table` is the text table
  of a list of :class:`Curve` (their last points);
- :func:`write_json` writes a suite's payload, :class:`Curve` objects as dicts.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

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


# -- machine -------------------------------------------------------------------------------


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
        return _gemm_rate_cuda(X, block_rows, min_seconds, device)
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


def _gemm_rate_cuda(X, block_rows, min_seconds, device):
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


# -- JSON ----------------------------------------------------------------------------------


def write_json(path, payload):
    """Write ``payload`` (its ``"curves"``, :class:`Curve` or dicts, as dicts) to ``path``."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    payload = dict(payload)
    payload["curves"] = [
        asdict(c) if isinstance(c, Curve) else c for c in payload.get("curves", [])
    ]
    with open(path, "w") as f:
        json.dump(payload, f, indent=1, default=_plain)
    return path


# -- tables --------------------------------------------------------------------------------


def text_table(headers, rows):
    """Plain-text table: the first column left-aligned, the others right-aligned.

    ``rows`` holds already formatted cells; a column is as wide as its widest
    cell, columns are two spaces apart, and a dashed rule follows the headers.
    """
    table = [list(map(str, headers)), *[list(map(str, r)) for r in rows]]
    widths = [max(len(r[i]) for r in table) for i in range(len(headers))]

    def line(cells):
        return "  ".join(
            x.rjust(w) if i else x.ljust(w)
            for i, (x, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(table[0]), line(["-" * w for w in widths]), *map(line, table[1:])])


def markdown_table(headers, rows):
    """GitHub markdown table of already formatted cells (``| a | b |`` rows)."""
    line = lambda cells: "| " + " | ".join(map(str, cells)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "---|" * len(headers), *map(line, rows)])


def format_table(curves, columns):
    """Text table: a row per curve, columns ``(header, key, fmt)`` of its last point.

    ``key`` is a point's key or a function of the curve; a missing value is ``-``.
    """
    rows = []
    for c in curves:
        row = [c.solver]
        for _, key, fmt in columns:
            v = c.last(key) if not callable(key) else key(c)
            row.append("-" if v is None else format(v, fmt))
        rows.append(row)
    return text_table(["solver", *[c[0] for c in columns]], rows)


# -- figures -------------------------------------------------------------------------------


class Line(NamedTuple):
    """``ax.plot(x, y, style, label=label, **options)``; no format string if ``style`` is empty."""

    x: Sequence[float]
    y: Sequence[float]
    style: str = ""
    label: str | None = None
    options: Mapping[str, Any] = {}

    def draw(self, ax):
        args = (self.x, self.y, self.style) if self.style else (self.x, self.y)
        label = {} if self.label is None else {"label": self.label}
        ax.plot(*args, **label, **self.options)


class Scatter(NamedTuple):
    """``ax.scatter`` of points, each with an optional text label beside it."""

    x: Sequence[float]
    y: Sequence[float]
    label: str | None = None
    point_labels: Sequence[str] = ()
    options: Mapping[str, Any] = {}
    label_size: float = 6

    def draw(self, ax):
        ax.scatter(self.x, self.y, label=self.label, **self.options)
        for text, x, y in zip(self.point_labels, self.x, self.y, strict=False):
            ax.annotate(
                text, (x, y), fontsize=self.label_size, xytext=(3, 2), textcoords="offset points"
            )


@dataclass(frozen=True)
class Panel:
    """One axes of a figure: its marks, drawn in order, and its decoration.

    ``xscale``/``yscale``: a matplotlib scale name (``"log"``, ``"symlog"``)
    with ``xscale_options`` for ``set_xscale``. ``ylim``: ``(bottom, top)``, or
    a function of the automatic ``(bottom, top)`` returning the limits.
    ``legend``: the ``ax.legend`` keywords, None for no legend. ``grid``: the
    grid's alpha, None for no grid.
    """

    marks: Sequence[Line | Scatter] = ()
    xlabel: str = ""
    ylabel: str = ""
    title: str | None = None
    title_size: float | None = None
    xscale: str | None = None
    xscale_options: Mapping[str, Any] = field(default_factory=dict)
    yscale: str | None = None
    ylim: tuple[float, float] | Callable[[float, float], tuple[float, float]] | None = None
    legend: Mapping[str, Any] | None = None
    grid: float | None = 0.3

    def draw(self, ax):
        for mark in self.marks:
            mark.draw(ax)
        if self.title is not None:
            ax.set_title(
                self.title, **({} if self.title_size is None else {"fontsize": self.title_size})
            )
        ax.set_xlabel(self.xlabel)
        ax.set_ylabel(self.ylabel)
        if self.yscale is not None:
            ax.set_yscale(self.yscale)
        if self.xscale is not None:
            ax.set_xscale(self.xscale, **self.xscale_options)
            if self.xscale == "symlog" and ax.dataLim.x0 >= 0:
                # seconds and counts: the margin would reach into negative values (a "-1" tick)
                ax.set_xlim(left=0)
        if self.ylim is not None:
            ax.set_ylim(*(self.ylim(*ax.get_ylim()) if callable(self.ylim) else self.ylim))
        for scale, axis, limits in ((self.xscale, ax.xaxis, ax.get_xlim()),
                                    (self.yscale, ax.yaxis, ax.get_ylim())):  # fmt: skip
            if scale in ("log", "symlog"):
                _plain_log_ticks(axis, limits)
        if self.grid is not None:
            ax.grid(alpha=self.grid)
        if self.legend is not None:
            ax.legend(**self.legend)


def _plain_log_ticks(axis, limits):
    """Tick labels of a log axis as plain numbers (``0.05``, ``20``), not ``5 x 10^-2``.

    Minor ticks are labelled only when the axis spans less than a decade (then
    the major ticks alone would leave it with one label or none).
    """
    import math

    from matplotlib import ticker

    plain = ticker.FuncFormatter(lambda v, _: f"{v:g}")
    axis.set_major_formatter(plain)
    low, high = (abs(v) for v in limits)
    narrow = min(low, high) > 0 and math.log10(max(low, high) / min(low, high)) < 1.0
    axis.set_minor_formatter(plain if narrow else ticker.NullFormatter())


class Series(NamedTuple):
    """One solver's points (dicts) on a convergence panel.

    ``style``: a matplotlib format string; None marks every point (``-o``), or
    draws a star when the solver has a single point (a direct solver).
    """

    label: str
    points: Sequence[Mapping[str, Any]]
    style: str | None = None


def curve_line(series, xkey, ykey):
    """The :class:`Line` of ``series``'s points having both keys (None if there are none)."""
    pts = [p for p in series.points if p.get(ykey) is not None and p.get(xkey) is not None]
    if not pts:
        return None
    style, options = series.style, {}
    if style is None:
        style = "-o" if len(pts) > 1 else "*"
        options = {"markersize": 4 if len(pts) > 1 else 12}
    return Line([p[xkey] for p in pts], [p[ykey] for p in pts], style, series.label, options)


def convergence_panel(series, xkey, ykey, **decoration):
    """A :class:`Panel` of ``ykey`` against ``xkey``, a line per :class:`Series`.

    ``decoration``: the other fields of :class:`Panel` (labels, scales, legend...).
    """
    lines = (curve_line(s, xkey, ykey) for s in series)
    return Panel(marks=tuple(line for line in lines if line is not None), **decoration)


def save_figure(path, panels, *, figsize, dpi, title=None):
    """Draw ``panels`` (rows of :class:`Panel`) on one figure and write it to ``path``."""
    plt = _pyplot()
    ncols = max(len(row) for row in panels)
    fig, axes = plt.subplots(len(panels), ncols, figsize=figsize, squeeze=False)
    for r, row in enumerate(panels):
        for c, panel in enumerate(row):
            panel.draw(axes[r, c])
    if title is not None:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(path, curves, title, metrics):
    """PNG grid of :class:`Curve`: a row per metric ``(key, label, log)``, a column per x.

    Columns: the metric against fit seconds (symlog) and against epochs.
    """
    series = [Series(c.solver, c.points) for c in curves]
    rows = []
    for row, (key, label, log) in enumerate(metrics):
        scale = "log" if log else None
        by_seconds = convergence_panel(
            series, "seconds", key, xlabel="fit seconds", ylabel=label, yscale=scale,
            xscale="symlog", xscale_options={"linthresh": 1.0},
            legend={"fontsize": 8} if row == 0 else None,
        )  # fmt: skip
        by_epoch = convergence_panel(
            series, "epoch", key, xlabel="epochs", ylabel=label, yscale=scale
        )
        rows.append([by_seconds, by_epoch])
    return save_figure(path, rows, figsize=(11, 3.6 * len(metrics)), dpi=110, title=title)
