# SPDX-License-Identifier: BSD-3-Clause
"""Convergence benchmarks: ``python -m benchmarks SUITE [options]``.

Layout (after benchopt): a *dataset* (:mod:`benchmarks.datasets`), an
*objective* evaluated by a callback after every epoch, and *solvers*, each
producing a :class:`benchmarks.report.Curve` of (epoch, seconds, metrics)
points. A suite is a module with ``add_arguments(parser)`` and
``run(args) -> dict``, registered in :data:`SUITES`; later suites plug into the
same command and reuse the reporting (JSON, table, PNG).
"""

#: suite name -> module implementing ``add_arguments`` and ``run``
SUITES = {
    "showcase": "benchmarks.showcase_suite",
    "eigenpro": "benchmarks.eigenpro_suite",
    "optimizers": "benchmarks.optimizers_suite",
    "closedform": "benchmarks.closedform_suite",
    "sparse": "benchmarks.sparse_suite",
    "defaults": "benchmarks.defaults_suite",
    "torch-defaults": "benchmarks.torch_defaults_suite",
    "growth": "benchmarks.growth_suite",
    "ensemble": "benchmarks.ensemble_suite",
    "proximal": "benchmarks.proximal_suite",
    "search": "benchmarks.search_suite",
    "million": "benchmarks.million_suite",
    "centers": "benchmarks.centers_suite",
}
