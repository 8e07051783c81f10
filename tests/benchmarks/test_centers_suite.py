# SPDX-License-Identifier: BSD-3-Clause
"""benchmarks.centers_suite: EigenPro 3 against Nystroem + Ridge at equal centres."""

import argparse
import json

from benchmarks import centers_suite
from benchmarks.report import Curve


def _args(**kw):
    parser = argparse.ArgumentParser()
    centers_suite.add_arguments(parser)
    args = parser.parse_args([])
    for k, v in kw.items():
        setattr(args, k, v)
    return args


def test_summary_says_whether_the_target_holds():
    curves = []
    for name, acc, seconds in [("eigenpro_10", 0.9, 4.0), ("nystroem_10", 0.89, 9.0),
                               ("eigenpro_20", 0.9, 5.0), ("nystroem_20", 0.91, 20.0)]:  # fmt: skip
        c = Curve(name)
        c.add(epoch=None, seconds=seconds, test_acc=acc)
        curves.append(c)
    lines = centers_suite._summary(curves, [10, 20, 30])
    assert len(lines) == 2  # no Nystroem at p = 30
    assert lines[0].endswith("yes") and "2.25 x" in lines[0]
    assert lines[1].endswith("no")  # Nystroem is more accurate at p = 20


def test_smoke_on_a_few_digits(tmp_path, shrink_digits):
    shrink_digits(centers_suite, 300)
    payload = centers_suite.run(
        _args(centers="40,80", nystroem_max=40, epochs=2, out=str(tmp_path))
    )
    names = [c.solver for c in payload["curves"]]
    assert names == ["eigenpro_40", "nystroem_40", "eigenpro_80", "eigenpro_all"]
    ours = payload["curves"][0]
    assert ours.params["n_centers"] == 40 and len(ours.points) == 3  # epoch 0 and two more
    assert 0.5 < ours.last("test_acc") <= 1.0
    saved = json.loads((tmp_path / "centers_digits_n300.json").read_text())
    assert saved["summary"][0].startswith("p=40: EigenPro")
    assert (tmp_path / "centers_digits_n300.png").exists()
