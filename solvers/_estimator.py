# SPDX-License-Identifier: BSD-3-Clause
"""Scaffolding every estimator of the library shares.

- :class:`ValidatedEstimatorMixin`: ``_parameter_constraints`` checked with the
  library's vocabulary (:mod:`solvers._validation`), stricter than
  scikit-learn's about bools and infinities;
- :func:`restore_on_error`: a failed fit leaves the previous model untouched;
- :func:`fit_context`: the two together around ``fit``/``partial_fit``, on top
  of scikit-learn's ``_fit_context`` (parameters validated before any state
  changes; nested estimators not re-validated).
"""

from __future__ import annotations

import contextlib
import functools
from typing import ClassVar

from sklearn.base import _fit_context

from solvers._validation import validate_params

__all__ = ["ValidatedEstimatorMixin", "fit_context", "restore_on_error"]


class ValidatedEstimatorMixin:
    """Validate ``_parameter_constraints`` with :func:`solvers._validation.validate_params`.

    Put it before :class:`sklearn.base.BaseEstimator` in the bases; scikit-learn's
    ``_fit_context`` calls ``_validate_params`` before ``fit`` runs.
    """

    _parameter_constraints: ClassVar[dict] = {}

    def _validate_params(self):
        validate_params(
            self._parameter_constraints, self.get_params(deep=False), type(self).__name__
        )


@contextlib.contextmanager
def restore_on_error(estimator):
    """Restore ``estimator.__dict__`` if the block raises: a failed fit keeps a previous fit.

    The attributes are restored shallowly: the fit must build new arrays
    rather than write into the previous fit's in place.
    """
    saved = dict(estimator.__dict__)
    try:
        yield
    except BaseException:
        estimator.__dict__.clear()
        estimator.__dict__.update(saved)
        raise


def fit_context(method=None, *, prefer_skip_nested_validation=True):
    """Decorate ``fit``: validate the parameters, then run it atomically.

    Usable bare (``@fit_context``) or with the scikit-learn option
    (``@fit_context(prefer_skip_nested_validation=False)`` for meta-estimators
    whose parameters are estimators).
    """

    def decorate(fit):
        validated = _fit_context(prefer_skip_nested_validation=prefer_skip_nested_validation)(fit)

        @functools.wraps(fit)
        def wrapper(estimator, *args, **kwargs):
            if fit.__name__ == "partial_fit":
                # scikit-learn validates only the first call; set_params may change them later
                estimator._validate_params()
            with restore_on_error(estimator):
                return validated(estimator, *args, **kwargs)

        return wrapper

    return decorate if method is None else decorate(method)
