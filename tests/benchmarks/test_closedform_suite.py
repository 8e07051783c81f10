# SPDX-License-Identifier: BSD-3-Clause
import pytest

from benchmarks import closedform_suite as suite


def _row(name, group, width, acc, seconds, **kw):
    return {"name": name, "group": group, "width": width, "test_accuracy": acc,
            "fit_seconds": seconds, **kw}  # fmt: skip


ROWS = [
    _row("MLPClassifier (256,)", "anchor", 256, 0.96, 4.0, n_iter=20),
    _row("ours 100", "width", 100, 0.97, 0.5, n_iter=1),
    _row("ELM 100 (gaussian + least squares)", "elm", 100, 0.95, 0.4, n_iter=1),
    _row("ours 100, 1 proximal sweep", "sweeps", 100, 0.975, 1.0, n_iter=2),
]


def test_summary_and_table_of_the_targets():
    s = suite.summarize(ROWS, 100)
    assert s["default"]["mlp_time_ratio"] == 8.0 and s["default"]["meets_quarter_time"]
    assert s["gain_over_elm_points"][100] == pytest.approx(2.0)
    sweep = s["sweeps_points"]["ours 100, 1 proximal sweep"]
    assert sweep["sweeps_kept"] == 1 and sweep["accuracy_gain"] == pytest.approx(0.5)
    lines = suite.format_table(ROWS).splitlines()
    assert lines[0].split() == ["model", "test", "acc", "fit", "s", "iters"]
    assert lines[3].split()[-3:] == ["97.00%", "0.5", "1"]
    assert "gain over the ELM at equal width (points): 100: +2.00" in suite.format_summary(s)


def test_plot_writes_a_png(tmp_path, read_png):
    path = suite.plot(str(tmp_path / "c.png"), ROWS, "title")
    assert read_png(path).shape[:2] == (845, 1300)  # 10 x 6.5 inches at 130 dpi
