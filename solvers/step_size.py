# SPDX-License-Identifier: BSD-3-Clause
"""Moved: the step-size rules are :mod:`solvers.linesearch.rules`, the first trial
:class:`solvers.linesearch.config.SearchConfig`, the ``check_*`` helpers
:mod:`solvers._validation`. This module re-exports them for old imports."""

from solvers._validation import check_int, check_open_unit, check_positive
from solvers.linesearch.config import plan_step
from solvers.linesearch.rules import *  # noqa: F403
from solvers.linesearch.rules import (
    RESETS,
    Armijo,
    FixedStep,
    Goldstein,
    Polyak,
    SearchOutcome,
    StepRule,
    check_reset,
    initial_step,
    make_step_rule,
    noise_tolerance,
)

__all__ = [
    "RESETS",
    "Armijo",
    "FixedStep",
    "Goldstein",
    "Polyak",
    "SearchOutcome",
    "StepRule",
    "check_int",
    "check_open_unit",
    "check_positive",
    "check_reset",
    "initial_step",
    "make_step_rule",
    "noise_tolerance",
    "plan_step",
]
