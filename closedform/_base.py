# SPDX-License-Identifier: BSD-3-Clause
"""What the manifold networks share: parameters, the outer loop and prediction.

:class:`_BaseManifoldNet` runs the outer loop of :mod:`closedform.manifold_net`
(draw the hidden layers, fit the decision layer, then backward sweeps that
are kept while they lower its objective); :class:`_Progress` records it and
keeps the weights to return. The two estimators differ only in their decision
layer (:meth:`_BaseManifoldNet._head_settings`), their targets and their score.
"""

from __future__ import annotations

import time
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import (
    _check_sample_weight,
    _num_samples,
    check_is_fitted,
    validate_data,
)

from closedform._streaming import _StreamingMixin
from closedform.activations import ACTIVATIONS, Activation, get_activation
from closedform.backward import BACKWARD_MODES
from closedform.network import INITS, SweepSettings, backward_sweep, forward, init_network
from closedform.svm_head import check_head_width, fit_svm_head
from solvers._estimator import ValidatedEstimatorMixin
from solvers._validation import Hidden, StrOptions, check_int, interval
from solvers.backend import (
    check_same_namespace,
    get_namespace_and_device,
    resolve_memory_budget,
    rows_per_block,
    take_rows,
    to_namespace,
    to_numpy,
)
from solvers.distributed import ProcessGroupParamMixin, process_group_constraint
from solvers.linalg import check_squares_summable

__all__ = [
    "check_gram_range",
    "check_weights",
    "select_rows",
    "split_validation",
    "training_weights",
    "validate_across",
]

DTYPES = (None, "float32", "float64")

POSITIVE = interval(Real, 0.0, None, closed="neither")
NON_NEGATIVE = interval(Real, 0.0, None, closed="left")
AT_LEAST_ONE = interval(Integral, 1, None, closed="left")
MEMORY_BUDGET = [StrOptions({"auto"}), None, POSITIVE]


def split_validation(n_samples, fraction, rng, stratify=None):
    """Training and validation row indices (host) for early stopping.

    ``fraction`` of the rows are held out (stratified by ``stratify`` when
    given), with a seed drawn from ``rng`` (a ``numpy.random.RandomState``).
    """
    return train_test_split(
        np.arange(n_samples),
        test_size=fraction,
        stratify=stratify,
        random_state=rng.randint(np.iinfo(np.int32).max),
    )


def select_rows(A, rows):
    """The rows of ``A`` at the host indices ``rows``, in ``A``'s namespace."""
    xp, device = get_namespace_and_device(A)
    return take_rows(xp, A, to_namespace(rows, xp, device))


def check_gram_range(X):
    """Raise a ValueError naming ``X`` when its Gram matrix (``n`` products) would overflow."""
    check_squares_summable(X, "X", X.shape[0], "standardise them, or pixels to [0, 1]")


def check_weights(sample_weight, y, *, positive_sum, allow_all_zero=False):
    """Validated host float64 sample weights: non-negative (with a positive sum if asked).

    ``allow_all_zero``: one rank's share of the rows may weigh nothing (the
    sum over all ranks is checked by the caller).
    """
    weights = _check_sample_weight(
        to_numpy(sample_weight), to_numpy(y), dtype=np.float64,
        allow_all_zero_weights=allow_all_zero,
    )  # fmt: skip
    if positive_sum and (not np.all(weights >= 0) or not np.sum(weights) > 0):
        raise ValueError("sample_weight must be non-negative with a positive sum.")
    if not np.all(weights >= 0):
        raise ValueError("sample_weight must be non-negative.")
    return weights


def validate_across(comm, what, X, prepare):
    """``prepare()`` (the input's validation, returning ``X, y``) on every rank of ``comm``.

    Across ranks: the row counts are compared first (zero rows on any rank
    raise on every rank), an error in ``prepare`` on one rank is raised on
    every rank (:meth:`solvers.distributed.Communicator.raise_together`), and
    the validated feature counts and dtypes must agree. One process: just
    ``prepare()``.
    """
    if not comm.distributed:
        return prepare()
    with comm.raise_together(f"{what}: reading X"):
        n_rows = _num_samples(X)
    comm.check_nonempty(n_rows, "X", f"{what}: comparing the row counts")
    with comm.raise_together(f"{what}: validating the input"):
        X, y = prepare()
    comm.agree(what, n_features=int(X.shape[1]), dtype=str(X.dtype))
    return X, y


def training_weights(weights, train, like):
    """The host weights of the ``train`` rows, as given, in the namespace of ``like``."""
    if weights is None:
        return None
    xp, device = get_namespace_and_device(like)
    return to_namespace(weights[train], xp, device)


class _Progress:
    """The outer loop's record: objective curve, history and the weights to keep.

    Without validation data the last accepted weights are kept; with it the
    ones with the best validation score, and ``n_iter_no_change`` accepted
    sweeps without an improvement stop the fit.
    """

    def __init__(self, estimator, validation):
        self.estimator = estimator
        self.validation = validation
        self.start = time.perf_counter()
        self.curve, self.history = [], []
        self.best = self.best_score = None
        self.no_change = 0
        self.n_iter = 0

    def converged(self, tol):
        """``"converged"`` when the last step lowered the objective by at most ``tol`` times it."""
        curve = self.curve
        if tol > 0 and len(curve) > 1 and curve[-2] - curve[-1] <= tol * curve[-2]:
            return "converged"
        return None

    def accept(self, iteration, layers, head):
        """Record an accepted outer iteration; returns why to stop, or None."""
        estimator = self.estimator
        self.curve.append(head.objective_curve[-1])
        self.n_iter = iteration + 1
        score = None
        if self.validation is None:
            self.best = (layers, head)
        else:
            X_val, target = self.validation
            outputs = estimator._outputs(X_val, layers, head.W, head.b)
            score = estimator._score_outputs(outputs, target)
            if self.best is None or score > self.best_score:
                self.best, self.best_score, self.no_change = (layers, head), score, 0
            else:
                self.no_change += 1
        try:
            self._report(iteration, score)
        except StopIteration:
            return "callback"
        if self.validation is not None and self.no_change >= estimator.n_iter_no_change:
            return "no validation improvement"
        return None

    def _report(self, iteration, score):
        estimator, objective = self.estimator, self.curve[-1]
        info = {
            "iteration": iteration,
            "objective": objective,
            "validation_score": score,
            "seconds": time.perf_counter() - self.start,
        }
        self.history.append(info)
        if estimator.verbose:
            val = "" if score is None else f", validation score {score:.4f}"
            print(
                f"[{type(estimator).__name__}] iteration {iteration}: objective {objective:.6g}"
                f"{val} ({info['seconds']:.1f} s)"
            )
        if estimator.callback is not None:
            estimator.callback(info)


class _BaseManifoldNet(
    ProcessGroupParamMixin, _StreamingMixin, ValidatedEstimatorMixin, BaseEstimator
):
    """The outer loop shared by the classifier and the regressor."""

    _parameter_constraints: ClassVar[dict] = {
        "hidden_layer_sizes": [StrOptions({"auto"}), "array-like", AT_LEAST_ONE],
        # "relu" passes here so that get_activation can say why it is refused
        "activation": [
            StrOptions(set(ACTIVATIONS)),
            Hidden(StrOptions({"relu"})),
            Hidden(Activation),
        ],
        "alpha": [StrOptions({"auto"}), NON_NEGATIVE],
        "alpha_hidden": [POSITIVE],
        "backward": [StrOptions(set(BACKWARD_MODES))],
        "mu": [POSITIVE],
        "squash_eps": [interval(Real, 0.0, 0.5, closed="neither")],
        "max_iter": [AT_LEAST_ONE],
        "tol": [NON_NEGATIVE],
        "init": [StrOptions(set(INITS))],
        "init_scale": [POSITIVE],
        "early_stopping": ["boolean"],
        "validation_fraction": [interval(Real, 0.0, 1.0, closed="neither")],
        "n_iter_no_change": [AT_LEAST_ONE],
        "dtype": [StrOptions({d for d in DTYPES if d}), None],
        "memory_budget": MEMORY_BUDGET,
        "random_state": ["random_state"],
        "verbose": [interval(Integral, 0, None, closed="left")],
        "callback": [callable, None],
        "process_group": process_group_constraint(),
    }

    def _head_settings(self):
        """The decision layer's :class:`closedform.svm_head.HeadSettings` for this fit."""
        raise NotImplementedError

    # -- fit ---------------------------------------------------------------------------------
    #: the widest hidden layer ``hidden_layer_sizes="auto"`` draws
    _auto_width: ClassVar[int] = 3000

    def _architecture(self, n_samples=None):
        """The hidden widths as a tuple; sets ``_activation`` (used by prediction too).

        ``"auto"`` is one layer of ``min(n_samples, _auto_width)`` units: with
        the penalty chosen by leave-one-out, more random units than samples
        add cost, not accuracy (``n_samples`` is None when streaming).
        """
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, str):
            sizes = (self._auto_width if n_samples is None else min(n_samples, self._auto_width),)
        sizes = (sizes,) if isinstance(sizes, Integral) else tuple(sizes)
        if not sizes:
            raise ValueError("hidden_layer_sizes must name at least one hidden layer.")
        for size in sizes:
            check_int("hidden_layer_sizes entries", size)
        self._activation = get_activation(self.activation)
        return sizes

    def _prepare_across(self, comm, X, y, reset, method):
        """:meth:`_prepare` on every rank of ``comm`` (:func:`validate_across`)."""
        what = f"{type(self).__name__}.{method}"
        if comm.distributed and self.early_stopping and method == "fit":
            raise NotImplementedError(
                f"{what}: early_stopping=True with a process_group is not implemented (the "
                "validation split draws from all rows at once); hold out validation rows "
                "yourself and fit with early_stopping=False."
            )
        return validate_across(comm, what, X, lambda: self._prepare(X, y, reset))

    def _prepare(self, X, y, reset):
        """Validate; returns X (in the compute dtype) and y. ``reset`` forgets a previous fit."""
        if reset:
            self.__dict__.pop("_stream", None)
            self.__dict__.pop("coefs_", None)
        squared = self._head_settings().loss == "squared"
        X, y = validate_data(
            self, X, y, reset=reset, dtype="numeric", y_numeric=squared, multi_output=squared
        )
        xp, _ = get_namespace_and_device(X)
        if self.dtype is not None:
            X = xp.astype(X, getattr(xp, self.dtype))
        elif X.dtype != xp.float32:
            X = xp.astype(X, xp.float64)
        check_gram_range(X)
        return X, y

    def _hold_out(self, n_samples, rng, stratify=None):
        """Training and validation rows: all rows and None without early stopping."""
        if not self.early_stopping:
            return np.arange(n_samples), None
        return split_validation(n_samples, self.validation_fraction, rng, stratify)

    def _fit_network(self, X, Y, counts, sizes, rng, validation, comm):
        """Run the outer loop; ``Y`` (n, k) float64 targets; ``counts`` sample weights or None.

        The hidden layers see the weights normalised; the decision layer sees
        them as given (they count repetitions in its choice of ``alpha``).

        Sets the fitted attributes and returns the kept decision layer's
        :class:`closedform.svm_head.HeadFit`. With ``comm`` spanning a process
        group, the rows are this rank's and every sum over rows is summed
        over the ranks (in the hidden layers' draw and fits and in the
        decision layer).
        """
        head_settings = self._head_settings()
        check_head_width(head_settings.head, sizes[-1], Y.shape[1], "units in the last layer")
        xp, device = get_namespace_and_device(X)
        weights = None
        if counts is not None:
            weights = counts / comm.all_reduce_sum(xp.sum(counts), "Summing the sample weights")
        budget = resolve_memory_budget(self.memory_budget, xp, device)
        block = rows_per_block(
            max(X.shape[1], *sizes), 8, budget, n_buffers=3, min_rows=64, max_rows=8192
        )
        sweep = SweepSettings(
            self._activation, self.backward, self.mu, self.squash_eps, self.alpha_hidden, block
        )
        progress = _Progress(self, validation)
        layers, hidden = init_network(
            rng, X, sizes, self._activation, init=self.init, init_scale=self.init_scale,
            weights=weights, comm=comm,
        )  # fmt: skip
        head = fit_svm_head(hidden[-1], Y, counts, head_settings, block_rows=block, comm=comm)
        # the sweeps keep the first fit's penalty and iteration count ("auto" chooses them once):
        # their objectives are compared with the same gamma, and a sweep costs no second choice
        chosen = head.n_iter if head_settings.max_iter == "auto" else head_settings.max_iter
        head_settings = head_settings._replace(alpha=head.alpha, max_iter=chosen)
        stopped, first_factor = progress.accept(0, layers, head), None
        for it in range(1, self.max_iter):
            stopped = stopped or progress.converged(self.tol)
            if stopped:
                break
            new_layers, first_factor = backward_sweep(
                X, hidden, layers, head.W, head.b, head.targets, sweep,
                weights=weights, first_factor=first_factor, comm=comm,
            )  # fmt: skip
            new_hidden = forward(X, new_layers, self._activation)
            new_head = fit_svm_head(
                new_hidden[-1], Y, counts, head_settings, targets=head.targets, block_rows=block,
                comm=comm,
            )  # fmt: skip
            J, last = new_head.objective_curve[-1], progress.curve[-1]
            if not J <= last:
                stopped = f"sweep {it} raised the objective ({J:.6g} > {last:.6g})"
                break
            layers, hidden, head = new_layers, new_hidden, new_head
            stopped = progress.accept(it, layers, head)
        if self.verbose and stopped:
            print(f"[{type(self).__name__}] stopped: {stopped}")
        return self._keep(progress)

    def _keep(self, progress):
        layers, head = progress.best
        self.coefs_ = [W for W, _ in layers] + [head.W]
        self.intercepts_ = [b for _, b in layers] + [head.b]
        self.n_iter_ = progress.n_iter
        self.objective_curve_ = progress.curve
        self.history_ = progress.history
        self.alpha_ = head.alpha
        self.best_validation_score_ = progress.best_score
        return head

    # -- prediction --------------------------------------------------------------------------
    def _outputs(self, X, layers, W, b):
        """Decision-layer outputs (n, k) float64, computed in row blocks."""
        xp, device = get_namespace_and_device(X)
        widest = max(int(Wl.shape[1]) for Wl, _ in layers)
        budget = resolve_memory_budget(self.memory_budget, xp, device)
        block = rows_per_block(widest, 8, budget, n_buffers=2, min_rows=64, max_rows=16384)
        parts = []
        for start in range(0, X.shape[0], block):
            stop = min(start + block, X.shape[0])
            H = forward(X[start:stop, :], layers, self._activation)[-1]
            parts.append(xp.astype(H @ xp.astype(W, H.dtype), xp.float64) + b)
        return parts[0] if len(parts) == 1 else xp.concat(parts, axis=0)

    def _decision(self, X, method):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype="numeric")
        check_same_namespace(self, method, X, self.coefs_[0])
        xp, _ = get_namespace_and_device(X)
        X = xp.astype(X, self.coefs_[0].dtype)
        layers = list(zip(self.coefs_[:-1], self.intercepts_[:-1], strict=True))
        return self._outputs(X, layers, self.coefs_[-1], self.intercepts_[-1])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.array_api_support = True
        tags.input_tags.sparse = False
        return tags
