# SPDX-License-Identifier: BSD-3-Clause
"""Placeholder (issue 20): being written."""


def add_arguments(parser):
    """No options yet."""


def run(args):
    """Not written yet."""
    raise SystemExit("this suite is being written (issue 20)")
