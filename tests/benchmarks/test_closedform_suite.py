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


def _torch_row(width, points):
    curve = [{"epoch": i + 1, "seconds": t, "test_accuracy": a} for i, (t, a) in enumerate(points)]
    return _row(f"torch MLP ({width},)", "torch", width, points[-1][1], points[-1][0],
                curve=curve)  # fmt: skip


def test_time_to_accuracy_takes_the_fastest_of_each_family():
    rows = [
        _row("ours 1000", "width", 1000, 0.9760, 2.0),
        _row("ours 2000", "width", 2000, 0.9790, 6.0),
        _torch_row(256, [(1.0, 0.970), (2.0, 0.9755), (3.0, 0.9770)]),
        _torch_row(512, [(2.0, 0.972), (4.0, 0.9780), (6.0, 0.9800)]),
    ]
    levels = {round(r["accuracy"], 4): r for r in suite.time_to_accuracy(rows)}
    assert sorted(levels) == [0.975, 0.9755, 0.976, 0.9765, 0.977, 0.9775, 0.978, 0.9785,
                              0.979, 0.9795, 0.98]  # fmt: skip
    assert levels[0.975]["ours_seconds"] == 2.0 and levels[0.975]["torch_seconds"] == 2.0
    assert levels[0.9765]["ours_seconds"] == 6.0 and levels[0.9765]["torch_seconds"] == 3.0
    assert levels[0.9765]["ratio"] == 0.5
    assert levels[0.98]["ratio"] == 0.0  # only torch reaches it
    elms = [_row(f"ELM {w}", "elm", w, 0.95, 1.0) for w in (1000, 2000)]
    s = suite.summarize(
        [_row("MLPClassifier (256,)", "anchor", 256, 0.96, 4.0), *rows, *elms], 1000
    )
    assert s["time_to_accuracy"]["min_ratio"] == 0.0
    assert not s["time_to_accuracy"]["meets_1_5x"]
    assert "at least 0.00 x (at 97.95 %)" in suite.format_summary(s)  # the first level missed


def test_torch_mlp_run_records_every_epoch():
    pytest.importorskip("torch")
    from benchmarks import datasets

    data = datasets.load(None)
    row = suite.torch_mlp_run(64, data, 20, 0)
    assert [p["epoch"] for p in row["curve"]] == list(range(1, 21))
    seconds = [p["seconds"] for p in row["curve"]]
    assert seconds == sorted(seconds) and seconds[-1] == row["fit_seconds"]
    assert row["curve"][-1]["test_accuracy"] > 0.9  # digits after 20 epochs


def test_torch_baselines_are_skipped_without_torch(monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    assert suite.torch_widths([256]) == []
    assert "torch is not installed" in capsys.readouterr().out
    assert suite.torch_widths([]) == []
