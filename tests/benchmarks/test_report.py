# SPDX-License-Identifier: BSD-3-Clause
import json

import numpy as np
import pytest

from benchmarks.report import (
    Curve,
    Line,
    Panel,
    Scatter,
    Series,
    convergence_panel,
    curve_line,
    format_table,
    markdown_table,
    plot_curves,
    save_figure,
    text_table,
    write_json,
)

pytest.importorskip("matplotlib")


def _curve(name, accs, seconds=None):
    c = Curve(name, params={"p": 1})
    for e, a in enumerate(accs):
        c.add(epoch=e, seconds=np.float64(seconds or 0.5 * e), test_acc=np.float32(a))
    return c


def test_curve_points_are_plain_and_searchable():
    c = _curve("a", [0.5, 0.8, 0.9])
    assert type(c.points[0]["test_acc"]) is float and c.last("epoch") == 2
    assert c.first_reaching("test_acc", 0.75)["epoch"] == 1
    assert c.first_reaching("seconds", 0.4, below=True)["epoch"] == 0
    assert c.first_reaching("test_acc", 0.95) is None and Curve("empty").last("x") is None


def test_text_table_aligns_first_column_left_the_others_right():
    table = text_table(["solver", "acc"], [["eigenpro", "99.17"], ["sgd", "-"]])
    assert table.splitlines() == [
        "solver      acc",
        "--------  -----",
        "eigenpro  99.17",
        "sgd           -",
    ]


def test_format_table_reads_last_points_and_functions_of_the_curve():
    curves = [_curve("ep", [0.5, 0.99]), Curve("krr")]
    curves[1].add(epoch=None, seconds=0.1, test_acc=0.98)
    table = format_table(
        curves,
        [("epochs", "epoch", "d"), ("acc %", lambda c: 100 * c.last("test_acc"), ".1f")],
    )
    assert table.splitlines()[2:] == ["ep           1   99.0", "krr          -   98.0"]


def test_markdown_table_keeps_empty_cells():
    assert markdown_table(["a", "b"], [["1", ""]]) == "| a | b |\n|---|---|\n| 1 |  |"


def test_write_json_turns_curves_into_dicts(tmp_path):
    path = write_json(
        str(tmp_path / "sub" / "r.json"), {"x": np.int64(3), "curves": [_curve("a", [0.5])]}
    )
    payload = json.loads(open(path).read())
    assert payload["x"] == 3
    assert payload["curves"][0]["solver"] == "a" and payload["curves"][0]["params"] == {"p": 1}


def test_curve_line_skips_missing_values_and_marks_single_points():
    pts = [{"epoch": 0, "loss": None}, {"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.0}]
    line = curve_line(Series("s", pts), "epoch", "loss")
    assert (line.x, line.y, line.style, line.options) == (
        [1, 2],
        [2.0, 1.0],
        "-o",
        {"markersize": 4},
    )
    single = curve_line(Series("krr", [{"seconds": 1.0, "loss": 3.0}]), "seconds", "loss")
    assert (single.style, single.options) == ("*", {"markersize": 12})
    assert curve_line(Series("s", pts, "--"), "epoch", "loss").style == "--"
    assert curve_line(Series("s", pts), "seconds", "loss") is None


def test_convergence_panel_draws_a_line_per_series_with_points():
    plt = pytest.importorskip("matplotlib.pyplot")
    series = [
        Series("a", [{"epoch": 1, "acc": 0.5}, {"epoch": 2, "acc": 0.9}], "-"),
        Series("none", [{"epoch": 1}]),
    ]
    panel = convergence_panel(
        series, "epoch", "acc", xlabel="epochs", ylabel="accuracy", title="t",
        yscale="log", ylim=lambda bottom, top: (0.4, min(top, 1.0)), legend={"fontsize": 7},
    )  # fmt: skip
    assert len(panel.marks) == 1
    fig, ax = plt.subplots()
    panel.draw(ax)
    assert [line.get_label() for line in ax.get_lines()] == ["a"]
    assert ax.get_yscale() == "log" and ax.get_ylim()[0] == pytest.approx(0.4)
    assert ax.get_title() == "t" and ax.get_legend() is not None
    plt.close(fig)


def test_save_figure_lays_out_rows_of_panels(tmp_path, read_png):
    scatter = Scatter([1.0, 10.0], [90.0, 95.0], "group", ["x", "y"], {"color": "black"})
    line = Line([1.0, 10.0], [90.0, 95.0], options={"lw": 0.8})
    panels = [[Panel([scatter, line], xscale="log", ylim=(80, 100)), Panel()]]
    path = save_figure(str(tmp_path / "out" / "f.png"), panels, figsize=(4, 2), dpi=50, title="T")
    assert read_png(path).shape[:2] == (100, 200)


def test_plot_curves_draws_each_metric_against_seconds_and_epochs(tmp_path, read_png):
    curves = [_curve("a", [0.5, 0.9]), _curve("b", [0.7])]
    path = plot_curves(str(tmp_path / "c.png"), curves, "title", [("test_acc", "acc", False)])
    assert read_png(path).shape[:2] == (396, 1210)  # (11 x 3.6 inches at 110 dpi)


@pytest.mark.parametrize(("xs", "left"), [([0.0, 0.4, 30.0], 0.0), ([-2.0, 5.0], None)])
def test_symlog_axes_of_non_negative_values_start_at_zero(xs, left):
    plt = pytest.importorskip("matplotlib.pyplot")
    fig, ax = plt.subplots()
    Panel([Line(xs, [1.0] * len(xs))], xscale="symlog", xscale_options={"linthresh": 1.0}).draw(ax)
    fig.canvas.draw()
    low = ax.get_xlim()[0]
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    if left is None:  # negative values keep matplotlib's margin
        assert low < min(xs)
    else:
        assert low == left and min(ticks) == 0.0
    plt.close(fig)
