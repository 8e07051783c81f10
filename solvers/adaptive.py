# SPDX-License-Identifier: BSD-3-Clause
"""Moved to :mod:`solvers.linesearch.preconditioners`; this module re-exports it."""

from solvers._validation import check_positive  # imported here by the previous version
from solvers.linesearch.preconditioners import *  # noqa: F403
from solvers.linesearch.preconditioners import (
    MOMENTA,
    PRECONDITIONERS,
    AdaGrad,
    AMSGrad,
    EMAMomentum,
    HeavyBall,
    Identity,
    NoMomentum,
    default_momentum,
    make_momentum,
    make_preconditioner,
)

__all__ = [
    "MOMENTA",
    "PRECONDITIONERS",
    "AMSGrad",
    "AdaGrad",
    "EMAMomentum",
    "HeavyBall",
    "Identity",
    "NoMomentum",
    "default_momentum",
    "make_momentum",
    "make_preconditioner",
]
