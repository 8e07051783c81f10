# SPDX-License-Identifier: BSD-3-Clause
""":class:`StiefelSVC`: the adaptive squared-hinge SVM decision layer as an estimator."""

from __future__ import annotations

from numbers import Integral, Real
from typing import ClassVar

from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from closedform._base import (
    AT_LEAST_ONE,
    MEMORY_BUDGET,
    NON_NEGATIVE,
    check_gram_range,
    validate_across,
)
from closedform.margins import MarginClassifierMixin, encode_labels, fit_temperature
from closedform.svm_head import HEADS, HeadSettings, check_head_width, fit_svm_head
from solvers._estimator import ValidatedEstimatorMixin, fit_context
from solvers._validation import StrOptions, interval
from solvers.backend import (
    check_same_namespace,
    floating_dtype,
    get_namespace_and_device,
    resolve_memory_budget,
    rows_per_block,
    to_namespace,
    to_numpy,
)
from solvers.distributed import ProcessGroupParamMixin, process_group_constraint

__all__ = ["StiefelSVC"]


class StiefelSVC(
    ProcessGroupParamMixin,
    MarginClassifierMixin,
    ClassifierMixin,
    ValidatedEstimatorMixin,
    BaseEstimator,
):
    """One-vs-rest squared-hinge SVM fitted by closed-form steps.

    The decision layer of the manifold neural network (Zhang, Jiao, Zhang, Li,
    TPAMI 2023), usable on any features: alternately (1) solve the outputs'
    weights ``W`` and intercepts ``b`` for fixed targets ``Z`` in closed form
    and (2) move each target to ``z = y max(1, y f)`` (epsilon-dragging), so
    that the squared residual equals the squared hinge ``max(0, 1 - y f)^2``;
    optionally (3) reweight samples on the simplex to down-weight the highest
    losses. See :mod:`closedform.svm_head` for the equations.

    Parameters
    ----------
    head : {"ridge", "stiefel", "gpi"}, default="ridge"
        The (W, b) step. ``"ridge"``: no constraint; the fit then converges
        to the one-vs-rest L2-SVM optimum (a convex problem), which is why it
        is the default: on standardised tabular data it matches ``LinearSVC``
        (``python -m benchmarks defaults``). With fixed sample weights this
        head runs the least-squares fit, then preconditioned conjugate
        gradients with exact line searches (:mod:`closedform.squared_hinge`)
        instead of further retargeting steps, which converge slowly. ``"stiefel"`` (the
        paper): ``W^T G W = I`` with ``G`` the weighted feature covariance plus
        ``gamma I`` (exact, one SVD of a ``p x c`` matrix; needs ``n_features
        >= n_outputs``); it fixes the outputs' scale, which costs accuracy on
        few features (iris: 0.79 against 0.94). With three or more classes its
        first step is not unique: centred one-vs-rest codes have rank ``c - 1``,
        so one direction of ``W`` is any orthonormal completion, chosen by the
        SVD routine; NumPy and torch may pick different ones (the later
        retargeted steps are full rank). ``"gpi"``: ``W^T W = I`` by
        generalised power iteration.
    alpha : float or "auto", default="auto"
        Ridge penalty relative to the features' scale:
        ``gamma = alpha * trace(G_0) / n_features``. ``"auto"`` picks it from
        1e-8 ... 10 by the exact leave-one-out error of the least-squares fit
        to the codes (:func:`closedform.svm_head.loo_alpha`), as
        ``RidgeClassifierCV`` does; the fitted value is ``alpha_``.
    max_iter : int, default=100
        Iterations, each costing two passes over the data and one solve with a
        Cholesky factor shared by all of them (when the sample weights are
        fixed): retargeting steps, or for ``head="ridge"`` the least-squares
        fit then ``max_iter - 1`` conjugate-gradient iterations. Retargeting
        converges linearly (10 iterations left about a point of accuracy on
        the table on digits); the conjugate gradients reach the optimum in a
        few tens.
    tol : float, default=1e-6
        Stop when the objective decreases by less than ``tol`` times itself.
    adaptive_weights : bool, default=False
        Reweight samples by the simplex closed form (Nie et al. 2014).
    keep_ratio : float in (0, 1], default=1.0
        Fraction of samples the adaptive weights keep (``k = round(rho n) - 1``
        positive weights; the paper's follow-up uses ``1 - noise rate``).
    gpi_max_iter : int, default=100
        Power iterations per (W, b) step with ``head="gpi"``.
    memory_budget : "auto", float or int, default="auto"
        Bytes (> 1), a fraction of the free memory (in (0, 1]) or ``"auto"``
        (75 %) for the row blocks of the Gram, cross-moment, leave-one-out and
        prediction passes. Not counted: the inputs (a float64 ``X`` is not
        copied) and the ``p x p`` Gram matrix, its factor and
        eigendecomposition. Measured in ``tests/closedform/test_memory.py``.
    verbose : int, default=0
        Print the objective after every iteration when > 0.
    callback : callable, default=None
        ``callback(info)`` after every iteration (``info``: ``iteration``,
        ``objective``); raise ``StopIteration`` to stop.
    process_group : None, "world" or ProcessGroup, default=None
        Fit on rows spread over the ranks of a ``torch.distributed`` process
        group (gloo on CPU, NCCL on GPU): each rank passes its own rows and
        every rank ends with the model one process fits on all rows
        concatenated in rank order (equal to rounding, about 1e-12 in
        float64). The Gram matrix, cross-moments, gradients, objective,
        leave-one-out scores and held-out accuracies are summed across the
        ranks; the exact line searches, adaptive weights and temperature
        gather ``n c`` floats. ``"world"`` is the default group. A bad input
        on one rank raises on every rank; a rank that dies or stalls makes
        the others raise ``RuntimeError`` after the group's timeout.
        ``sample_weight_`` holds this rank's rows' weights. A ``ProcessGroup``
        object is shared by ``clone`` and dropped (None) by pickling.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    coef_ : array of shape (1, n_features) or (n_classes, n_features)
        One row per output (one output for two classes), in the namespace of
        the training data, float64.
    intercept_ : array of shape (1,) or (n_classes,)
    sample_weight_ : array of shape (n_samples,)
        The final sample weights (on the simplex).
    objective_curve_ : list of float
        The objective after each iteration (non-increasing with fixed weights).
    n_iter_ : int
    alpha_ : float
        The relative penalty used (the chosen one for ``alpha="auto"``).
    temperature_ : float
        Scale of the margins in :meth:`predict_proba`, fitted on the training
        data by maximum likelihood.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined when ``X`` has string feature names.

    See Also
    --------
    sklearn.svm.LinearSVC : The squared-hinge SVM by coordinate descent.

    References
    ----------
    .. [1] R. Zhang, Z. Jiao, H. Zhang, X. Li, "Manifold Neural Network With
       Non-Gradient Optimization", IEEE TPAMI 45(3), 2023.
    .. [2] S. Xiang et al., "Discriminative least squares regression for
       multiclass classification and feature selection", IEEE TNNLS 2012.
    .. [3] F. Nie, X. Wang, H. Huang, "Clustering and projected clustering with
       adaptive neighbors", KDD 2014.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from closedform import StiefelSVC
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = StiefelSVC(head="ridge").fit(X[:1500] / 16, y[:1500])
    >>> bool(clf.score(X[1500:] / 16, y[1500:]) > 0.85)
    True
    >>> clf.objective_curve_ == sorted(clf.objective_curve_, reverse=True)
    True
    """

    _parameter_constraints: ClassVar[dict] = {
        "head": [StrOptions(set(HEADS))],
        "alpha": [StrOptions({"auto"}), NON_NEGATIVE],
        "max_iter": [AT_LEAST_ONE],
        "tol": [NON_NEGATIVE],
        "adaptive_weights": ["boolean"],
        "keep_ratio": [interval(Real, 0.0, 1.0, closed="right")],
        "gpi_max_iter": [AT_LEAST_ONE],
        "memory_budget": MEMORY_BUDGET,
        "verbose": [interval(Integral, 0, None, closed="left")],
        "callback": [callable, None],
        "process_group": process_group_constraint(),
    }

    def __init__(
        self,
        head="ridge",
        *,
        alpha="auto",
        max_iter=100,
        tol=1e-6,
        adaptive_weights=False,
        keep_ratio=1.0,
        gpi_max_iter=100,
        memory_budget="auto",
        verbose=0,
        callback=None,
        process_group=None,
    ):
        self.head = head
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol
        self.adaptive_weights = adaptive_weights
        self.keep_ratio = keep_ratio
        self.gpi_max_iter = gpi_max_iter
        self.memory_budget = memory_budget
        self.verbose = verbose
        self.callback = callback
        self.process_group = process_group

    @fit_context
    def fit(self, X, y, sample_weight=None):
        """Fit the decision layer.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features (NumPy, or CuPy/torch with ``array_api_dispatch``).
        y : array-like of shape (n_samples,)
            Class labels (at least two classes).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        comm = self._communicator()
        X, y = validate_across(comm, "StiefelSVC.fit", X, lambda: self._validate(X, y))
        xp, device = get_namespace_and_device(X)
        classes, indices, Y, w_host = encode_labels(y, sample_weight, comm)
        weights = None if w_host is None else to_namespace(w_host, xp, device)
        check_head_width(self.head, X.shape[1], Y.shape[1])
        Y = to_namespace(Y, xp, device)
        budget = resolve_memory_budget(self.memory_budget, xp, device)
        block = rows_per_block(X.shape[1], 8, budget, n_buffers=2, min_rows=64)
        settings = HeadSettings(
            head=self.head,
            alpha=self.alpha,
            max_iter=self.max_iter,
            tol=self.tol,
            adaptive_weights=self.adaptive_weights,
            keep_ratio=self.keep_ratio,
            gpi_max_iter=self.gpi_max_iter,
        )
        fit = fit_svm_head(
            X, Y, weights, settings, block_rows=block, callback=self._progress, comm=comm
        )
        self.temperature_ = fit_temperature(to_numpy(fit.outputs), indices, w_host, comm=comm)
        self._set_classes(classes, xp, device)
        self.coef_ = fit.W.T
        self.intercept_ = fit.b
        self.sample_weight_ = fit.weights
        self.objective_curve_ = fit.objective_curve
        self.n_iter_ = fit.n_iter
        self.alpha_ = fit.alpha
        return self

    def _validate(self, X, y):
        """The validated ``X`` (floating, not copied when it is already) and ``y``."""
        X, y = validate_data(self, X, y, dtype="numeric")
        xp, device = get_namespace_and_device(X)
        X = xp.astype(X, floating_dtype(xp, X, device), copy=False)  # only read
        check_gram_range(X)
        return X, y

    def _progress(self, info):
        if self.verbose:
            print(f"[StiefelSVC] iteration {info['iteration']}: objective {info['objective']:.6g}")
        if self.callback is not None:
            self.callback(info)

    def _decision(self, X, method):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype="numeric")
        check_same_namespace(self, method, X, self.coef_)
        xp, _ = get_namespace_and_device(X)
        return xp.astype(X, self.coef_.dtype) @ self.coef_.T + self.intercept_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.array_api_support = True
        tags.input_tags.sparse = False
        tags.classifier_tags.multi_class = True
        return tags
