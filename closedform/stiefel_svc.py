# SPDX-License-Identifier: BSD-3-Clause
""":class:`StiefelSVC`: the adaptive squared-hinge SVM decision layer as an estimator."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from closedform.margins import (
    MarginClassifierMixin,
    encode_labels,
    fit_temperature,
    restore_on_error,
)
from closedform.svm_head import HEADS, fit_svm_head
from solvers.backend import (
    check_same_namespace,
    floating_dtype,
    get_namespace_and_device,
    resolve_memory_budget,
    rows_per_block,
    to_namespace,
    to_numpy,
)
from solvers.step_size import check_int, check_positive

__all__ = ["StiefelSVC"]


class StiefelSVC(MarginClassifierMixin, ClassifierMixin, BaseEstimator):
    """One-vs-rest squared-hinge SVM fitted by closed-form retargeting steps.

    The decision layer of the manifold neural network (Zhang, Jiao, Zhang, Li,
    TPAMI 2023), usable on any features: alternately (1) solve the outputs'
    weights ``W`` and intercepts ``b`` for fixed targets ``Z`` in closed form
    and (2) move each target to ``z = y max(1, y f)`` (epsilon-dragging), so
    that the squared residual equals the squared hinge ``max(0, 1 - y f)^2``;
    optionally (3) reweight samples on the simplex to down-weight the highest
    losses. See :mod:`closedform.svm_head` for the equations.

    Parameters
    ----------
    head : {"stiefel", "gpi", "ridge"}, default="stiefel"
        The (W, b) step. ``"stiefel"``: ``W^T G W = I`` with ``G`` the
        weighted feature covariance plus ``gamma I`` (exact, one SVD of a
        ``p x c`` matrix; needs ``n_features >= n_outputs``). With three or
        more classes the first step is not unique: centred one-vs-rest codes
        have rank ``c - 1``, so one direction of ``W`` is any orthonormal
        completion, chosen by the SVD routine; NumPy and torch may pick
        different ones (the later retargeted steps are full rank). ``"gpi"``:
        ``W^T W = I`` by generalised power iteration. ``"ridge"``: no
        constraint; the fit is then the L2-SVM optimum.
    alpha : float, default=1e-5
        Ridge penalty relative to the features' scale:
        ``gamma = alpha * trace(G_0) / n_features``.
    max_iter : int, default=10
        Retargeting iterations (one (W, b) solve each, sharing one Cholesky
        factor when the sample weights are fixed).
    tol : float, default=1e-4
        Stop when the objective decreases by less than ``tol`` times itself.
    adaptive_weights : bool, default=False
        Reweight samples by the simplex closed form (Nie et al. 2014).
    keep_ratio : float in (0, 1], default=1.0
        Fraction of samples the adaptive weights keep (``k = round(rho n) - 1``
        positive weights; the paper's follow-up uses ``1 - noise rate``).
    gpi_max_iter : int, default=100
        Power iterations per (W, b) step with ``head="gpi"``.
    memory_budget : "auto", float or int, default="auto"
        Bytes (or a fraction of the free memory) for the float64 blocks of
        the Gram accumulation.
    verbose : int, default=0
        Print the objective after every iteration when > 0.
    callback : callable, default=None
        ``callback(info)`` after every iteration (``info``: ``iteration``,
        ``objective``); raise ``StopIteration`` to stop.

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

    def __init__(
        self,
        head="stiefel",
        *,
        alpha=1e-5,
        max_iter=10,
        tol=1e-4,
        adaptive_weights=False,
        keep_ratio=1.0,
        gpi_max_iter=100,
        memory_budget="auto",
        verbose=0,
        callback=None,
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

    def _check_params(self):
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}; got {self.head!r}.")
        check_positive("alpha", self.alpha, strict=False)
        check_int("max_iter", self.max_iter)
        check_positive("tol", self.tol, strict=False)
        if not isinstance(self.adaptive_weights, (bool, np.bool_)):
            raise ValueError(f"adaptive_weights must be a bool; got {self.adaptive_weights!r}.")
        check_positive("keep_ratio", self.keep_ratio, upper=1.0, upper_open=False)
        check_int("gpi_max_iter", self.gpi_max_iter)
        check_int("verbose", self.verbose, minimum=0)
        if self.callback is not None and not callable(self.callback):
            raise ValueError(f"callback must be callable or None; got {self.callback!r}.")

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
        with restore_on_error(self):  # a failed fit leaves a previous fit intact
            return self._fit(X, y, sample_weight)

    def _fit(self, X, y, sample_weight):
        self._check_params()
        X, y = validate_data(self, X, y, dtype="numeric")
        xp, device = get_namespace_and_device(X)
        X = xp.astype(X, floating_dtype(xp, X, device))
        classes, indices, Y, w_host = encode_labels(y, sample_weight)
        weights = None if w_host is None else to_namespace(w_host, xp, device)
        n_outputs = Y.shape[1]
        if self.head != "ridge" and X.shape[1] < n_outputs:
            constraint = "W^T G W = I" if self.head == "stiefel" else "W^T W = I"
            raise ValueError(
                f"head={self.head!r} constrains {constraint}, which needs at least as many "
                f"features as outputs (n_classes, or 1 for two classes); got {X.shape[1]} "
                f"features for {n_outputs} outputs. Use head='ridge' or more features."
            )
        Y = to_namespace(Y, xp, device)

        budget = resolve_memory_budget(self.memory_budget, xp, device)
        block = rows_per_block(X.shape[1], 8, budget, n_buffers=2, min_rows=64)
        out = fit_svm_head(
            X,
            Y,
            weights,
            head=self.head,
            alpha=self.alpha,
            max_iter=self.max_iter,
            tol=self.tol,
            adaptive_weights=self.adaptive_weights,
            keep_ratio=self.keep_ratio,
            gpi_max_iter=self.gpi_max_iter,
            block_rows=block,
            callback=self._progress,
        )
        self.temperature_ = fit_temperature(to_numpy(out["outputs"]), indices, w_host)
        self._set_classes(classes, xp, device)
        self.coef_ = out["W"].T
        self.intercept_ = out["b"]
        self.sample_weight_ = out["weights"]
        self.objective_curve_ = out["objective_curve"]
        self.n_iter_ = out["n_iter"]
        return self

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
