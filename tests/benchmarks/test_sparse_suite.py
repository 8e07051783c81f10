# SPDX-License-Identifier: BSD-3-Clause
import argparse

import numpy as np
import pytest

from benchmarks import datasets, sparse_suite

torch = pytest.importorskip("torch")


def _args(*argv):
    parser = argparse.ArgumentParser()
    sparse_suite.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_plan_lists_dense_once_per_seed_and_the_splitting_stages():
    digits = datasets.Dataset("digits", *[np.zeros(1)] * 4)
    plan = sparse_suite.make_plan(
        _args("--methods", "dense,rigl", "--densities", "0.1,0.05", "--seeds", "2"), digits
    )
    assert plan.epochs == 40 and plan.stage_epochs == 13
    assert plan.tasks[:3] == [("dense", 1.0, 0, 40), ("rigl", 0.1, 0, 40), ("rigl", 0.05, 0, 40)]
    assert len(plan.tasks) == 6 and len(plan.split_tasks) == 2 * len(sparse_suite.SPLIT_SCHEMES)
    assert sparse_suite.make_plan(_args("--split-widths", "16"), digits).split_tasks == []
    with pytest.raises(SystemExit, match="unknown methods"):
        sparse_suite.make_plan(_args("--methods", "magic"), digits)


def test_format_rows_is_a_markdown_table_with_the_timing():
    rows = [
        {"method": "dense", "density": 1.0, "test_acc_mean": 0.98, "test_acc_seeds": [0.98],
         "gap_to_dense": 0.0},
        {"method": "set", "density": 0.1, "test_acc_mean": 0.97, "test_acc_seeds": [0.96, 0.98],
         "gap_to_dense": -0.01, "itop_rate": 0.5},
    ]  # fmt: skip
    table = sparse_suite.format_rows(rows, {"set": {"relative_to_dense": 1.05}})
    assert table.splitlines()[1] == "|---|---|---|---|---|---|---|"
    assert table.splitlines()[2] == "| dense | 1 | 98.00 % | 98.00 | +0.00 |  |  |"
    assert (
        table.splitlines()[3] == "| set | 0.1 | 97.00 % | 96.00 / 98.00 | -1.00 | 0.500 | 1.050 |"
    )


def test_splitting_baselines_grow_without_changing_the_function():
    from benchmarks.sparse_suite import _fresh_units, _mlp, _random_directions
    from solvers.torch import NeuronSplitting

    small, X = _mlp(20, 6, 0), torch.randn(50, 20)
    y = torch.randint(0, 10, (50,))
    wide = _fresh_units(small, 9, 1)
    assert wide[0].out_features == 9
    torch.testing.assert_close(wide(X), small(X))
    splitter = NeuronSplitting(small, seed=0)
    eig = splitter.score([(X, y)])
    splitter.eigen_ = _random_directions(eig, torch.Generator().manual_seed(0))
    assert all(float(e.lambda_min.max()) < 0 for e in splitter.eigen_.values())
    v = splitter.eigen_[0].v_min
    torch.testing.assert_close(v.norm(dim=1), torch.ones(6, dtype=v.dtype))
    assert float((v * eig[0].v_min).sum(1).abs().max()) < 0.99  # not the eigenvectors
    grown = splitter.split(3, eps=1e-3, warn=False)
    assert grown[0].out_features == 9
    assert float((grown(X) - small(X)).abs().max()) < 1e-4
