# SPDX-License-Identifier: BSD-3-Clause
import argparse
import json

import pytest

from benchmarks import search_suite as suite


def _run(search, seed, best, curve, test=0.95, fits=9):
    return {"search": search, "seed": seed, "best_cv_score": best, "test_score": test,
            "n_fits": fits, "n_failed": 0, "seconds": 1.0, "curve": curve}  # fmt: skip


RUNS = [
    _run("gbdt", 0, 0.97, [[3, 0.90], [6, 0.96], [9, 0.97]]),
    _run("random", 0, 0.95, [[3, 0.93], [6, 0.95], [9, 0.95]]),
    _run("halving", 0, 0.94, [[9, 0.94]]),
    _run("gbdt", 1, 0.93, [[3, 0.92], [6, 0.93], [9, 0.93]]),
    _run("random", 1, 0.94, [[3, 0.94], [6, 0.94], [9, 0.94]]),
    _run("halving", 1, 0.95, [[9, 0.95]]),
]


def test_summary_counts_wins_and_fits_to_random_best():
    s = suite.summarize(RUNS, 3)
    assert s["gbdt_at_least_random_seeds"] == 1 and not s["meets_4_of_5"]
    first, second = s["per_seed"]
    assert first["gbdt_fits_to_random_best"] == 6 and first["fraction_of_fits"] == pytest.approx(
        2 / 3
    )
    assert second["gbdt_fits_to_random_best"] is None  # never reached 0.94
    assert s["median_fraction_of_fits_to_random_best"] is None and not s["meets_third_of_fits"]
    assert s["mean"]["halving_best"] == pytest.approx(0.945)
    text = suite.format_summary(s)
    assert "1 of 2 seeds" in text and "per seed: 0.67, never" in text
    assert suite.format_table(RUNS).splitlines()[2].split()[:4] == ["gbdt", "(seed", "0)", "97.00"]


@pytest.mark.parametrize("n_iter, expected", [(6, 4), (10, 7), (30, 20), (40, 27)])
def test_halving_candidates_match_the_budget(n_iter, expected):
    """4 -> 2 (6), 7 -> 3 (10), 20 -> 7 -> 3 (30), 27 -> 9 -> 3 -> 1 (40)."""
    assert suite.halving_candidates(n_iter) == expected


def test_halving_budget_is_what_scikit_learn_runs():
    from scipy.stats import loguniform
    from sklearn.datasets import make_classification
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401
    from sklearn.linear_model import RidgeClassifier
    from sklearn.model_selection import HalvingRandomSearchCV

    X, y = make_classification(600, 10, random_state=0)
    n = suite.halving_candidates(30)
    s = HalvingRandomSearchCV(
        RidgeClassifier(), {"alpha": loguniform(1e-3, 1e3)}, n_candidates=n,
        factor=3, min_resources="exhaust", cv=3, random_state=0,
    ).fit(X, y)  # fmt: skip
    assert s.n_candidates_ == [20, 7, 3] and len(s.cv_results_["params"]) == 30


def test_searches_have_their_own_streams_unless_paired():
    own = dict(suite.searches(30, 10, 5, 3, (20,), seed=2))
    assert own["gbdt"].random_state == 1002 and own["random"].random_state == 2
    assert own["halving"].n_candidates == 20 and own["gbdt"].estimator.memory_budget == 2**30
    paired = dict(suite.searches(30, 10, 5, 3, (20,), seed=2, paired=True))
    assert paired["gbdt"].random_state == paired["random"].random_state == 2


def test_plot_writes_a_png(tmp_path, read_png):
    path = suite.plot(str(tmp_path / "s.png"), RUNS, "title", 3)
    assert read_png(path).shape[:2] == (600, 960)  # 8 x 5 inches at 120 dpi


def test_tiny_run_on_digits_writes_json_and_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    parser = argparse.ArgumentParser()
    suite.add_arguments(parser)
    args = parser.parse_args(
        ["--seeds", "1", "--n-iter", "6", "--n-initial", "3", "--batch-size", "3", "--cv", "2",
         "--widths", "20", "50", "--paired", "--out", str(tmp_path)]
    )  # fmt: skip
    suite.run(args)
    assert "GBDTSearchCV >= random at equal fits" in capsys.readouterr().out
    payload = json.loads((tmp_path / "search_digits.json").read_text())
    assert (tmp_path / "search_digits.png").stat().st_size > 10_000
    runs = {r["search"]: r for r in payload["runs"]}
    assert set(runs) == {"gbdt", "random", "halving"}
    assert runs["gbdt"]["n_fits"] == runs["random"]["n_fits"] == 12
    assert runs["halving"]["n_fits"] == 12  # 4 + 2 configurations, 2 folds each
    curve = [b for _, b in runs["gbdt"]["curve"]]
    assert curve == sorted(curve) and curve[-1] == runs["gbdt"]["best_cv_score"]
    assert runs["gbdt"]["proposed_by"][:3] == ["initial"] * 3
    # paired: the same initial sample as random search, so the same first three scores
    assert runs["gbdt"]["curve"][:3] == runs["random"]["curve"][:3]
    assert payload["settings"]["paired"]
    assert all(0.5 < r["test_score"] <= 1 for r in runs.values())
