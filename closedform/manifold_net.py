# SPDX-License-Identifier: BSD-3-Clause
"""Manifold neural networks trained without gradients, as scikit-learn estimators.

:class:`ManifoldNetClassifier` (a squared-hinge SVM decision layer) and
:class:`ManifoldNetRegressor` (a ridge decision layer) share the outer loop
of the project's notes (section 3.7):

1. draw the hidden layers at random (``N(0, (s / sqrt(d))^2)``, bias
   ``N(0, 1)``) and compute their outputs;
2. fit the decision layer on the current features (:func:`closedform.svm_head.fit_svm_head`);
3. up to ``max_iter - 1`` times: one backward sweep (:func:`closedform.network.backward_sweep`),
   a forward pass, and the decision layer refitted on the new features,
   warm-started from its previous targets. A sweep is kept only if it lowers
   the decision layer's objective, so ``objective_curve_`` is non-increasing;
   the first sweep that does not ends the fit. With ``early_stopping`` the
   weights with the best validation score are kept.

The loop and prediction are in :mod:`closedform._base`, ``partial_fit``'s
streamed statistics in :mod:`closedform._streaming`; this module holds the
two estimators, which differ in their decision layer (``_head_settings``),
their targets and their score.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state

from closedform._base import DTYPES as DTYPES
from closedform._base import (
    _BaseManifoldNet,
    check_weights,
    select_rows,
    training_weights,
)
from closedform.margins import (
    MarginClassifierMixin,
    encode_labels,
    fit_temperature,
    one_vs_rest_codes,
)
from closedform.svm_head import HEADS, HeadSettings
from solvers._estimator import fit_context
from solvers._validation import Integral, Real, StrOptions, interval
from solvers.backend import get_namespace_and_device, to_namespace, to_numpy

__all__ = ["ManifoldNetClassifier", "ManifoldNetRegressor"]


_PARAMS_DOC = """
    hidden_layer_sizes : "auto" or tuple of int, default="auto"
        Widths of the hidden layers. ``"auto"``: one layer of ``min(n_samples,
        {sizes})`` units ({sizes} for ``partial_fit``, which cannot know
        ``n_samples``); with ``alpha="auto"`` more random units than samples
        add cost, not accuracy (``python -m benchmarks defaults``).
    activation : {{"sigmoid", "tanh", "softplus", "leaky_relu", "identity"}}, default="sigmoid"
        Invertible hidden activation (``"relu"`` is rejected: a target of 0
        has no unique pre-image).
    alpha : float or "auto", default="auto"
        Ridge penalty of the decision layer relative to the features' scale
        (``gamma = alpha * trace(cov) / width``). ``"auto"`` (the default)
        chooses it from 1e-8 ... 10 by the exact leave-one-out error of the
        least-squares fit to the targets, from one eigendecomposition
        (:func:`closedform.svm_head.loo_alpha`; ``partial_fit``, which keeps
        only statistics, by generalised cross-validation). A fixed tiny
        penalty over-fits a few hundred samples with thousands of units; on
        MNIST 60k ``"auto"`` picks about ``1e-5``.
    alpha_hidden : float, default=1e-6
        Relative ridge penalty of the hidden layers' fits.
    backward : {{"proximal", "pinv", "adjoint"}}, default="proximal"
        How a sweep pulls targets back through a layer: ``"proximal"`` moves
        the current outputs toward the target in the row space of the layer
        above; ``"pinv"`` is the paper's low-rank (pseudo-inverse)
        approximation, which collapses the hidden targets to rank ``c`` below
        the decision layer; ``"adjoint"`` is the authors' code.
    mu : float, default=1.0
        Relative proximal weight (``mu * ||W||_F^2 / width``).
    squash_eps : float in (0, 0.5), default=1e-3
        Hidden targets are clipped this far inside the activation's range
        (relative to its width) before the activation is inverted.
    max_iter : int, default={max_iter}
        Outer iterations: the decision layer is fitted ``max_iter`` times,
        with a backward sweep through the hidden layers before every refit
        (``max_iter - 1`` sweeps). 1 keeps the drawn hidden layers (an extreme
        learning machine with this decision layer).
    tol : float, default=1e-4
        Stop when the objective decreases by less than ``tol`` times itself.
    init : {{"samples", "gaussian"}}, default="samples"
        How the hidden layers are drawn (:func:`closedform.network.init_network`):
        each unit points at a random training row of its input (centred,
        ``init_scale`` over the typical distance to the mean), or hpelm's
        ``N(0, (init_scale / sqrt(fan_in))^2)``. Biases are ``N(0, 1)``.
        ``partial_fit`` draws ``"samples"`` units from its first batch.
    init_scale : float, default=3.0
        Scale of the hidden weights (see ``init``). Scale inputs to [0, 1]
        or standardise them for ``"gaussian"``.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data and keep the
        weights with the best validation score (never the test set).
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=2
        Sweeps without a validation improvement before stopping.
    dtype : {{None, "float32", "float64"}}, default=None
        Precision of the hidden features (statistics and solves are always
        float64). None follows the input: float32 ``X`` computes in float32
        (about twice as fast on CPU, the benchmark's setting), anything else
        in float64.
    memory_budget : "auto", float or int, default="auto"
        Bytes (> 1), a fraction of the free memory (in (0, 1]) or ``"auto"``
        (75 %) for the row blocks of the Gram, cross-moment and prediction
        passes. Not counted: the inputs and one floating copy of ``X``, the
        ``p x p`` Gram matrices and their factors, and the ``n x width``
        activations and targets of the hidden layers, which the layerwise
        solves hold whole. Measured in ``tests/closedform/test_memory.py``.
    random_state : int, RandomState instance or None, default=None
        Seeds the hidden layers and the validation split.
    verbose : int, default=0
        Print the objective (and validation score) after every iteration.
    callback : callable, default=None
        ``callback(info)`` after every outer iteration, with ``info`` a dict
        (``iteration``, ``objective``, ``validation_score``, ``seconds``);
        raise ``StopIteration`` to stop.
    process_group : None, "world" or ProcessGroup, default=None
        Fit on rows spread over the ranks of a ``torch.distributed`` process
        group (gloo on CPU, NCCL on GPU): each rank passes its own rows to
        ``fit``/``partial_fit`` and every rank ends with the model one process
        fits on all rows concatenated in rank order (the same draws, sums and
        choices; equal to rounding, about 1e-12 in float64). Every sum over
        samples is summed across the ranks (Gram statistics, means, the
        decision layer's passes, the penalty's leave-one-out scores, the
        held-out iteration count); the exact line searches, adaptive weights
        and temperature gather ``n c`` floats. ``"world"`` is the default
        group. A bad input on one rank (another feature count or dtype, zero
        rows, NaN) raises on every rank; a rank that dies or stalls makes the
        others raise ``RuntimeError`` after the group's timeout.
        ``early_stopping=True`` raises ``NotImplementedError`` with a group.
        A ``ProcessGroup`` object is shared by ``clone`` and dropped (None) by
        pickling; ``"world"`` survives both.
"""

_ATTRS_DOC = """
    coefs_ : list of arrays
        Weight matrices, hidden layers first (in ``dtype``), the decision
        layer last (float64); in the namespace of the training data.
    intercepts_ : list of arrays
    n_iter_ : int
        Outer iterations kept (1 + the sweeps kept).
    objective_curve_ : list of float
        The decision layer's training objective after each kept outer
        iteration (non-increasing). After ``partial_fit``: the least-squares
        objective of the data streamed so far.
    history_ : list of dict
        Per-iteration ``iteration``, ``objective``, ``validation_score``,
        ``seconds``.
    alpha_ : float
        The decision layer's relative penalty (the chosen one for ``"auto"``).
    best_validation_score_ : float or None
        With ``early_stopping``, the score of the kept weights.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined when ``X`` has string feature names.
"""


class ManifoldNetClassifier(MarginClassifierMixin, ClassifierMixin, _BaseManifoldNet):
    __doc__ = (
        """Manifold neural network classifier trained by closed-form layerwise solves.

    The network of Zhang, Jiao, Zhang & Li, "Manifold Neural Network With
    Non-Gradient Optimization" (TPAMI 2023), as reconstructed in the
    project's notes: invertible hidden layers fitted by ridge regression to
    targets pulled back from the layer above, and an adaptive squared-hinge
    SVM decision layer (one-vs-rest, ``+-1`` codes) refitted on the current
    features; see :mod:`closedform.manifold_net` for the loop. No gradients,
    no learning rate. The defaults are the best accuracy for the time on
    MNIST measured by ``python -m benchmarks closedform``, with the penalty
    and the width chosen from the data (``alpha="auto"``,
    ``hidden_layer_sizes="auto"``), so that they also hold on a few hundred
    tabular rows (``python -m benchmarks defaults``);
    :meth:`paper_preset` gives the paper's architecture and schedule.

    Parameters
    ----------"""
        + _PARAMS_DOC.format(sizes="3000", max_iter="1")
        + """    head : {"ridge", "stiefel", "gpi"}, default="ridge"
        The decision layer's (W, b) step (:class:`closedform.StiefelSVC`):
        unconstrained (the L2-SVM optimum), ``W^T G W = I`` (the paper), or
        ``W^T W = I``.
    head_max_iter : int or "auto", default="auto"
        Iterations of the decision layer per fit: with ``head="ridge"`` the
        least-squares fit, then conjugate-gradient iterations towards the
        squared-hinge optimum (:mod:`closedform.squared_hinge`); with the
        other heads, retargeting alternations. ``"auto"`` picks the count
        (1 to 10) with the best accuracy on 10 % of the rows held out
        (:func:`closedform.svm_head.validation_iterations`; 10 with the other
        heads and with adaptive weights): the converged SVM wins with many
        rows per unit (MNIST), least squares with few (digits with 500
        units), and is the choice when too few rows remain to hold any out.
        Chosen on the first fit of the decision layer and kept by the
        backward sweeps.
    adaptive_weights : bool, default=False
        Reweight samples by the simplex closed form (down-weights the highest
        losses; for label noise).
    keep_ratio : float in (0, 1], default=1.0
        Fraction of samples the adaptive weights keep.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)"""
        + _ATTRS_DOC
        + """    sample_weight_ : array of shape (n_samples,)
        The decision layer's final sample weights (training rows, on the simplex).
    temperature_ : float
        Scale of the margins in :meth:`predict_proba`.

    See Also
    --------
    closedform.StiefelSVC : The decision layer alone, on any features.
    sklearn.neural_network.MLPClassifier : The gradient-trained alternative.

    Notes
    -----
    ``partial_fit`` streams mini-batches through the sufficient statistics
    of the last hidden layer (its mean, Gram matrix and cross-moments with
    the codes) and re-solves the decision layer after every batch: the hidden
    layers stay random and the decision layer is the one-pass least-squares
    fit to the codes (the retargeting iterations need repeated passes). It
    equals ``fit`` with ``max_iter=1, head_max_iter=1`` (for ``init="samples"``
    the units are drawn from the first batch). After ``fit``, ``partial_fit``
    keeps the fitted hidden layers and refits the decision layer on the
    batches it streams.

    References
    ----------
    .. [1] R. Zhang, Z. Jiao, H. Zhang, X. Li, "Manifold Neural Network With
       Non-Gradient Optimization", IEEE TPAMI 45(3), 2023.
    .. [2] G. Taylor et al., "Training neural networks without gradients: a
       scalable ADMM approach", ICML 2016 (the proximal target).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from closedform import ManifoldNetClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = ManifoldNetClassifier((500,), random_state=0).fit(X[:1500] / 16, y[:1500])
    >>> bool(clf.score(X[1500:] / 16, y[1500:]) > 0.9)
    True
    """
    )

    _parameter_constraints: ClassVar[dict] = {
        **_BaseManifoldNet._parameter_constraints,
        "head": [StrOptions(set(HEADS))],
        "head_max_iter": [interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "adaptive_weights": ["boolean"],
        "keep_ratio": [interval(Real, 0.0, 1.0, closed="right")],
    }

    def __init__(
        self,
        hidden_layer_sizes="auto",
        *,
        activation="sigmoid",
        head="ridge",
        alpha="auto",
        alpha_hidden=1e-6,
        backward="proximal",
        mu=1.0,
        squash_eps=1e-3,
        max_iter=1,
        head_max_iter="auto",
        tol=1e-4,
        adaptive_weights=False,
        keep_ratio=1.0,
        init="samples",
        init_scale=3.0,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=2,
        dtype=None,
        memory_budget="auto",
        random_state=None,
        verbose=0,
        callback=None,
        process_group=None,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.head = head
        self.alpha = alpha
        self.alpha_hidden = alpha_hidden
        self.backward = backward
        self.mu = mu
        self.squash_eps = squash_eps
        self.max_iter = max_iter
        self.head_max_iter = head_max_iter
        self.tol = tol
        self.adaptive_weights = adaptive_weights
        self.keep_ratio = keep_ratio
        self.init = init
        self.init_scale = init_scale
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.dtype = dtype
        self.memory_budget = memory_budget
        self.random_state = random_state
        self.verbose = verbose
        self.callback = callback
        self.process_group = process_group

    @classmethod
    def paper_preset(cls, **overrides):
        """The paper's architecture and schedule (the authors' ``train.py``).

        Two hidden layers of 64 and 32 sigmoid units, the flexible-Stiefel
        decision layer with adaptive weights (``k = n - 1``), the code's
        adjoint back-projection, 4 retargeting iterations and 50 sweeps. The
        code's defects are not reproduced (the project's notes, section 2.5):
        codes are ``+-1``, the penalty is relative (the code's absolute 0.3
        is here ``alpha=0.3`` times the features' scale), targets are clipped
        and inverted per unit (not a softmax over samples), activations are
        not normalised per sample (which would make them non-invertible),
        and no test-set selection. Sweeps that raise the objective still end
        the fit.

        Parameters
        ----------
        **overrides
            Any constructor parameter.

        Returns
        -------
        ManifoldNetClassifier
        """
        params = {
            "hidden_layer_sizes": (64, 32),
            "head": "stiefel",
            "alpha": 0.3,
            "alpha_hidden": 0.3,
            "backward": "adjoint",
            "squash_eps": 1e-4,
            "max_iter": 50,
            "head_max_iter": 4,
            "tol": 0.0,
            "adaptive_weights": True,
            "keep_ratio": 1.0,
            "init": "gaussian",
            "init_scale": 1.0,
        }
        params.update(overrides)
        return cls(**params)

    def _head_settings(self):
        """The decision layer the parameters describe: a squared-hinge SVM."""
        return HeadSettings(
            head=self.head,
            alpha=self.alpha,
            max_iter=self.head_max_iter,
            tol=self.tol,
            adaptive_weights=self.adaptive_weights,
            keep_ratio=self.keep_ratio,
            loss="squared_hinge",
        )

    @fit_context
    def fit(self, X, y, sample_weight=None):
        """Fit the network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs scaled to about unit range ([0, 1] pixels, or standardised).
        y : array-like of shape (n_samples,)
            Class labels (at least two classes).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights (in the hidden and the decision layers' fits).

        Returns
        -------
        self : object
            Fitted estimator.
        """
        comm = self._communicator()
        self._architecture()  # a bad architecture is refused before the data are read
        X, y = self._prepare_across(comm, X, y, reset=True, method="fit")
        xp, device = get_namespace_and_device(X)
        classes, indices, codes, w_host = encode_labels(y, sample_weight, comm)
        rng = check_random_state(self.random_state)
        train, val = self._hold_out(X.shape[0], rng, stratify=indices)
        sizes = self._architecture(comm.all_reduce_sum(len(train), "Counting the rows"))
        validation = None if val is None else (select_rows(X, val), indices[val])
        X_train = X if val is None else select_rows(X, train)
        Y = to_namespace(codes[train], xp, device)
        self._set_classes(classes, xp, device)
        head = self._fit_network(
            X_train, Y, training_weights(w_host, train, X), sizes, rng, validation, comm
        )
        w_train = None if w_host is None else w_host[train]
        self.temperature_ = fit_temperature(
            to_numpy(head.outputs), indices[train], w_train, comm=comm
        )
        self.sample_weight_ = head.weights
        return self

    def _score_outputs(self, F, indices):
        F = to_numpy(F)
        winners = (F[:, 0] > 0).astype(np.int64) if F.shape[1] == 1 else F.argmax(axis=1)
        return float(np.mean(winners == indices))

    @fit_context
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Add a mini-batch to the streamed statistics and re-solve the decision layer.

        See the class Notes: the hidden layers stay at their random draw and
        the decision layer is the least-squares fit to the codes, so that any
        partition of the data into batches gives the model ``fit`` gives with
        ``max_iter=1, head_max_iter=1``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        classes : array-like of shape (n_classes,), default=None
            All the classes; required on the first call.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : object
        """
        comm = self._communicator()
        first = not hasattr(self, "coefs_")
        sizes = self._architecture()
        X, y = self._prepare_across(comm, X, y, reset=first, method="partial_fit")
        xp, device = get_namespace_and_device(X)
        with comm.raise_together("ManifoldNetClassifier.partial_fit: checking the labels"):
            if first:
                if classes is None:
                    raise ValueError("classes must be passed on the first call to partial_fit.")
                all_classes = np.unique(to_numpy(classes))
                if all_classes.shape[0] < 2:
                    raise ValueError("classes must name at least 2 classes.")
                self._set_classes(all_classes, xp, device)
            elif classes is not None and not np.array_equal(
                np.unique(to_numpy(classes)), self.classes_
            ):
                raise ValueError(f"classes {classes!r} differ from the fitted classes_.")
            y_host = to_numpy(y)
            unseen = np.setdiff1d(np.unique(y_host), self.classes_)
            if unseen.size:
                raise ValueError(f"y has labels not in classes: {unseen.tolist()!r}.")
            w = None
            if sample_weight is not None:
                w = check_weights(
                    sample_weight, y_host, positive_sum=False, allow_all_zero=comm.distributed
                )
                w = to_namespace(w, xp, device)
        if first:
            comm.agree("ManifoldNetClassifier.partial_fit", classes=self.classes_.tolist())
        indices = np.searchsorted(self.classes_, y_host)
        codes = to_namespace(one_vs_rest_codes(indices, self.classes_.shape[0]), xp, device)
        H, W, b = self._partial_fit_head(X, codes, w, sizes, comm)
        F = xp.astype(H @ xp.astype(W, H.dtype), xp.float64) + b
        self.temperature_ = fit_temperature(to_numpy(F), indices, comm=comm)
        self.sample_weight_ = None
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        return tags


class ManifoldNetRegressor(RegressorMixin, _BaseManifoldNet):
    __doc__ = (
        """Manifold neural network regressor trained by closed-form layerwise solves.

    The layerwise scheme of :class:`ManifoldNetClassifier` with a ridge
    decision layer (squared loss on the targets, which may be 2-D).

    Parameters
    ----------"""
        + _PARAMS_DOC.format(sizes="2000", max_iter="1")
        + """
    Attributes
    ----------"""
        + _ATTRS_DOC
        + """
    See Also
    --------
    sklearn.neural_network.MLPRegressor : The gradient-trained alternative.

    Notes
    -----
    ``partial_fit`` streams batches through the last hidden layer's
    sufficient statistics (random hidden layers, ridge decision layer): it
    equals ``fit`` (``max_iter=1``; for ``init="samples"`` the units are
    drawn from the first batch).

    Examples
    --------
    >>> import numpy as np
    >>> from closedform import ManifoldNetRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-1, 1, size=(2000, 2))
    >>> y = np.sin(3 * X[:, 0]) * X[:, 1]
    >>> reg = ManifoldNetRegressor((300,), random_state=0).fit(X[:1500], y[:1500])
    >>> bool(reg.score(X[1500:], y[1500:]) > 0.99)
    True
    """
    )

    _parameter_constraints: ClassVar[dict] = _BaseManifoldNet._parameter_constraints
    _auto_width: ClassVar[int] = 2000

    def __init__(
        self,
        hidden_layer_sizes="auto",
        *,
        activation="sigmoid",
        alpha="auto",
        alpha_hidden=1e-6,
        backward="proximal",
        mu=1.0,
        squash_eps=1e-3,
        max_iter=1,
        tol=1e-4,
        init="samples",
        init_scale=3.0,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=2,
        dtype=None,
        memory_budget="auto",
        random_state=None,
        verbose=0,
        callback=None,
        process_group=None,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.alpha = alpha
        self.alpha_hidden = alpha_hidden
        self.backward = backward
        self.mu = mu
        self.squash_eps = squash_eps
        self.max_iter = max_iter
        self.tol = tol
        self.init = init
        self.init_scale = init_scale
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.dtype = dtype
        self.memory_budget = memory_budget
        self.random_state = random_state
        self.verbose = verbose
        self.callback = callback
        self.process_group = process_group

    def _head_settings(self):
        """The regressor's decision layer: one ridge solve onto the targets."""
        return HeadSettings(
            head="ridge", alpha=self.alpha, max_iter=1, tol=self.tol, loss="squared"
        )

    @fit_context
    def fit(self, X, y, sample_weight=None):
        """Fit the network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : object
            Fitted estimator.
        """
        comm = self._communicator()
        self._architecture()  # a bad architecture is refused before the data are read
        X, y = self._prepare_across(comm, X, y, reset=True, method="fit")
        self._y_ndim = y.ndim
        Y = _as_targets(y, X)
        w_host = self._targets_and_weights(comm, "fit", Y, y, sample_weight)
        rng = check_random_state(self.random_state)
        train, val = self._hold_out(X.shape[0], rng)
        sizes = self._architecture(comm.all_reduce_sum(len(train), "Counting the rows"))
        validation = None
        if val is not None:
            validation = (select_rows(X, val), select_rows(Y, val))
            X, Y = select_rows(X, train), select_rows(Y, train)
        self._fit_network(X, Y, training_weights(w_host, train, X), sizes, rng, validation, comm)
        return self

    def _targets_and_weights(self, comm, method, Y, y, sample_weight):
        """Agree on the targets' shape across ranks; the validated host weights or None."""
        what = f"ManifoldNetRegressor.{method}"
        comm.agree(what, n_targets=int(Y.shape[1]), y_ndim=int(y.ndim))
        if sample_weight is None:
            return None
        positive_sum = method == "fit" and not comm.distributed
        with comm.raise_together(f"{what}: checking sample_weight"):
            w_host = check_weights(
                sample_weight, y, positive_sum=positive_sum, allow_all_zero=comm.distributed
            )
        if method == "fit" and comm.distributed:
            total = comm.all_reduce_sum(float(np.sum(w_host)), "Summing the sample weights")
            if not total > 0:
                raise ValueError("sample_weight must be non-negative with a positive sum.")
        return w_host

    def _score_outputs(self, F, Y):
        xp, _ = get_namespace_and_device(F)
        resid = float(xp.sum((F - Y) ** 2))
        total = float(xp.sum((Y - xp.mean(Y, axis=0)) ** 2))
        return 1.0 - resid / total if total > 0 else 0.0

    def predict(self, X):
        """Predict targets.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_pred : array of shape (n_samples,) or (n_samples, n_targets)
            In the namespace of ``X``.
        """
        F = self._decision(X, "predict")
        return F[:, 0] if self._y_ndim == 1 else F

    @fit_context
    def partial_fit(self, X, y, sample_weight=None):
        """Add a mini-batch to the streamed statistics and re-solve the ridge decision layer.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : object
        """
        comm = self._communicator()
        first = not hasattr(self, "coefs_")
        sizes = self._architecture()
        X, y = self._prepare_across(comm, X, y, reset=first, method="partial_fit")
        if first:
            self._y_ndim = y.ndim
        Y = _as_targets(y, X)
        w = self._targets_and_weights(comm, "partial_fit", Y, y, sample_weight)
        if not first and Y.shape[1] != self.coefs_[-1].shape[1]:
            raise ValueError(
                f"y has {Y.shape[1]} targets; earlier batches had {self.coefs_[-1].shape[1]}."
            )
        if w is not None:
            xp, device = get_namespace_and_device(X)
            w = to_namespace(w, xp, device)
        self._partial_fit_head(X, Y, w, sizes, comm)
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


def _as_targets(y, like):
    """The regression targets as a 2-D float64 array in the namespace of ``like``."""
    xp, device = get_namespace_and_device(like)
    Y = xp.astype(to_namespace(y, xp, device), xp.float64)
    return Y[:, None] if Y.ndim == 1 else Y
