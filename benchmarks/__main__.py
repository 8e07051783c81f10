# SPDX-License-Identifier: BSD-3-Clause
"""Command line: ``python -m benchmarks SUITE [options]``."""

import argparse
import importlib
import os
import sys

os.environ.setdefault("SCIPY_ARRAY_API", "1")

from benchmarks import SUITES


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=(
            "Convergence benchmarks of convergent's solvers against the usual alternatives."
        ),
    )
    sub = parser.add_subparsers(dest="suite", required=True, metavar="SUITE")
    modules = {}
    for name, module_name in SUITES.items():
        module = importlib.import_module(module_name)
        modules[name] = module
        p = sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        module.add_arguments(p)
    args = parser.parse_args(argv)
    modules[args.suite].run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
