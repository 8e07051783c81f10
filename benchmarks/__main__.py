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
    sub = parser.add_subparsers(dest="suite", metavar="SUITE")
    modules = {}
    for name, module_name in SUITES.items():
        module = importlib.import_module(module_name)
        modules[name] = module
        p = sub.add_parser(name, help=_summary_line(module))
        module.add_arguments(p)
    args = parser.parse_args(argv)
    if args.suite is None:
        print(suite_list(modules))
        return 0
    modules[args.suite].run(args)
    return 0


def _summary_line(module):
    return (module.__doc__ or "").strip().splitlines()[0]


def suite_list(modules):
    """What ``python -m benchmarks`` prints with no suite: each suite and what it shows."""
    width = max(len(name) for name in modules)
    lines = ["usage: python -m benchmarks SUITE [options]   (SUITE --help for its options)", ""]
    lines += [f"  {name:{width}s}  {_summary_line(module)}" for name, module in modules.items()]
    lines += [
        "",
        "The main job is `python -m benchmarks showcase` (built-in data, about 3 minutes).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
