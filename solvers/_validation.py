# SPDX-License-Identifier: BSD-3-Clause
"""One validation vocabulary for the whole library.

Every hyperparameter is described by scikit-learn's constraint objects
(:class:`~sklearn.utils._param_validation.Interval`, ``StrOptions``,
``Options``, ``HasMethods``, ``"boolean"``, ``callable``, ``None``...), the
vocabulary of ``_parameter_constraints`` in scikit-learn's estimators:

- estimators declare ``_parameter_constraints`` and decorate ``fit`` with
  :func:`solvers._estimator.fit_context` (validation before any state change,
  the previous fit restored on failure);
- optimizers, controllers and functions call :func:`validate_params` with a
  constraint dict, or one of the ``check_*`` shortcuts for a single value.

All of them raise :class:`InvalidParameterError` (a subclass of both
``ValueError`` and ``TypeError``) with a message that names the parameter, its
owner, the allowed values and the value received.

Two deviations from scikit-learn's checker, both stricter:

- ``True``/``False`` never satisfy a numeric :class:`Interval` (in Python
  ``bool`` is an ``int``; ``lr=True`` is a bug, not a step size of 1);
- an unbounded interval never admits ``inf`` (pass ``math.inf`` as the bound,
  closed, to allow it).

scikit-learn is pinned below 1.11 in ``pyproject.toml``, which bounds the risk
of using its private ``_param_validation`` module.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import (
    HasMethods,
    Hidden,
    Interval,
    InvalidParameterError,
    Options,
    StrOptions,
    make_constraint,
    validate_parameter_constraints,
)

__all__ = [
    "HasMethods",
    "Hidden",
    "Integral",
    "Interval",
    "InvalidParameterError",
    "Options",
    "Real",
    "StrOptions",
    "check_int",
    "check_open_unit",
    "check_options",
    "check_positive",
    "describe",
    "interval",
    "validate_params",
]


def interval(kind, low, high=None, *, closed):
    """An :class:`Interval`; an unbounded side (``None``) excludes infinity.

    ``kind`` is ``Real`` or ``Integral``; ``closed`` is scikit-learn's
    ``"left" | "right" | "both" | "neither"``.
    """
    if high is None and closed in ("right", "both"):
        closed = "left" if closed == "both" else "neither"
    if low is None and closed in ("left", "both"):
        closed = "right" if closed == "both" else "neither"
    return Interval(kind, low, high, closed=closed)


def describe(constraints):
    """The allowed values of a constraint list, in words (as scikit-learn says them)."""
    words = [str(make_constraint(c)) for c in constraints if not isinstance(c, Hidden)]
    if not words:
        return "a valid value"
    if len(words) == 1:
        return words[0]
    return f"{', '.join(words[:-1])} or {words[-1]}"


def _rejects_bool(constraints, value):
    """``value`` is a bool that only a numeric interval would have accepted."""
    if not isinstance(value, (bool, np.bool_)):
        return False
    for c in constraints:
        made = make_constraint(c)
        if not isinstance(made, Interval) and made.is_satisfied_by(value):
            return False
    return True


def validate_params(constraints, params, owner):
    """Check ``params`` (name -> value) against ``constraints`` (name -> list).

    Parameters
    ----------
    constraints : dict
        Maps each parameter name to a list of constraints (or to
        ``"no_validation"``). Names absent from it are not checked.
    params : dict
        Maps parameter names to the values received.
    owner : str
        The class or function the parameters belong to, for the message.

    Raises
    ------
    InvalidParameterError
        The first parameter that satisfies none of its constraints.
    """
    for name, value in params.items():
        allowed = constraints.get(name, "no_validation")
        if allowed != "no_validation" and _rejects_bool(allowed, value):
            raise InvalidParameterError(_message(name, owner, allowed, value))
    validate_parameter_constraints(constraints, params, caller_name=owner)


def _message(name, owner, allowed, value):
    """scikit-learn's wording, for every entry point of the vocabulary."""
    where = f" of {owner}" if owner else ""
    return f"The {name!r} parameter{where} must be {describe(allowed)}. Got {value!r} instead."


def _check_one(name, value, constraint, owner):
    try:
        validate_params({name: [constraint]}, {name: value}, owner or "")
    except InvalidParameterError:
        raise InvalidParameterError(_message(name, owner, [constraint], value)) from None


def check_positive(name, value, *, strict=True, upper=None, upper_open=True, owner=None):
    """A finite real in ``(0, upper)`` (``[0, ...`` when not ``strict``); returned as float."""
    if upper is None:
        upper_open = True
    closed = {
        (True, True): "neither",
        (True, False): "right",
        (False, True): "left",
        (False, False): "both",
    }[(bool(strict), bool(upper_open))]
    _check_one(name, value, interval(Real, 0.0, upper, closed=closed), owner)
    return float(value)


def check_open_unit(name, value, *, upper=1.0, owner=None):
    """A real in the open interval ``(0, upper)``; returned as float."""
    _check_one(name, value, interval(Real, 0.0, upper, closed="neither"), owner)
    return float(value)


def check_int(name, value, *, minimum=1, owner=None):
    """An integer ``>= minimum`` (not a bool); returned as int."""
    _check_one(name, value, interval(Integral, minimum, None, closed="left"), owner)
    return int(value)


def check_options(name, value, options, *, owner=None):
    """One of the strings ``options``; returned unchanged."""
    _check_one(name, value, StrOptions(set(options)), owner)
    return value
