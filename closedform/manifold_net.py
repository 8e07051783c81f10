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
"""

from __future__ import annotations

import time
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from closedform.activations import get_activation
from closedform.backward import BACKWARD_MODES
from closedform.margins import (
    MarginClassifierMixin,
    encode_labels,
    fit_temperature,
    one_vs_rest_codes,
    restore_on_error,
)
from closedform.network import INITS, backward_sweep, forward, init_network
from closedform.svm_head import AUTO_ALPHAS, HEADS, fit_svm_head
from solvers.backend import (
    check_same_namespace,
    get_namespace_and_device,
    resolve_memory_budget,
    rows_per_block,
    take_rows,
    to_namespace,
    to_numpy,
)
from solvers.linalg import cho_solve, cholesky, generalized_procrustes, stiefel_quadratic
from solvers.ridge import GramStatistics, ridge_gcv
from solvers.step_size import check_int, check_positive

__all__ = ["ManifoldNetClassifier", "ManifoldNetRegressor"]

DTYPES = (None, "float32", "float64")


class _BaseManifoldNet(BaseEstimator):
    """The outer loop shared by the classifier and the regressor."""

    _head_loss = "squared"

    # -- validation ----------------------------------------------------------------------
    def _check_params(self):
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, Integral) and not isinstance(sizes, bool):
            sizes = (sizes,)
        try:
            sizes = tuple(sizes)
        except TypeError:
            raise ValueError(
                f"hidden_layer_sizes must be a sequence of positive ints; got {sizes!r}."
            ) from None
        if not sizes:
            raise ValueError("hidden_layer_sizes must name at least one hidden layer.")
        for size in sizes:
            check_int("hidden_layer_sizes entries", size)
        self._activation = get_activation(self.activation)
        if self._head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}; got {self._head!r}.")
        if not (isinstance(self.alpha, str) and self.alpha == "auto"):
            check_positive("alpha", self.alpha, strict=False)
        check_positive("alpha_hidden", self.alpha_hidden)
        if self.backward not in BACKWARD_MODES:
            raise ValueError(f"backward must be one of {BACKWARD_MODES}; got {self.backward!r}.")
        check_positive("mu", self.mu)
        check_positive("squash_eps", self.squash_eps, upper=0.5)
        check_int("max_iter", self.max_iter)
        check_int("head_max_iter", self._head_max_iter)
        check_positive("tol", self.tol, strict=False)
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}; got {self.init!r}.")
        check_positive("init_scale", self.init_scale)
        check_positive("validation_fraction", self.validation_fraction, upper=1.0)
        check_int("n_iter_no_change", self.n_iter_no_change)
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}; got {self.dtype!r}.")
        check_int("verbose", self.verbose, minimum=0)
        if self.callback is not None and not callable(self.callback):
            raise ValueError(f"callback must be callable or None; got {self.callback!r}.")
        return sizes

    def _prepare(self, X, y, reset):
        """Validate; returns X (compute dtype), targets (n, k) float64, weights, namespace."""
        X, y = validate_data(
            self,
            X,
            y,
            reset=reset,
            dtype="numeric",
            y_numeric=self._head_loss == "squared",
            multi_output=self._head_loss == "squared",
        )
        xp, device = get_namespace_and_device(X)
        if self.dtype is not None:
            X = xp.astype(X, getattr(xp, self.dtype))
        elif X.dtype != xp.float32:
            X = xp.astype(X, xp.float64)
        return X, y, xp, device

    # -- the outer loop --------------------------------------------------------------------
    def _fit_network(self, X, Y, weights, xp, device, sizes, rng, validation):
        """Run the outer loop; ``Y`` (n, k) float64 targets; ``weights`` normalised or None."""
        activation = self._activation
        widths = (X.shape[1], *sizes)
        if self._head != "ridge" and widths[-1] < Y.shape[1]:
            constraint = "W^T G W = I" if self._head == "stiefel" else "W^T W = I"
            raise ValueError(
                f"head={self._head!r} constrains {constraint}, which needs the last hidden layer "
                f"to be at least as wide as the outputs (n_classes, or 1 for two classes); got "
                f"{widths[-1]} units for {Y.shape[1]} outputs. Use head='ridge' or a wider layer."
            )
        budget = resolve_memory_budget(self.memory_budget, xp, device)
        block = rows_per_block(max(widths), 8, budget, n_buffers=3, min_rows=64, max_rows=8192)
        start = time.perf_counter()
        layers, hidden = init_network(
            rng, X, sizes, activation, init=self.init, init_scale=self.init_scale, weights=weights
        )
        head = self._fit_head(hidden[-1], Y, weights, block, None)
        curve = [head["objective_curve"][-1]]
        history = []
        best = (layers, head)
        best_score = no_change = None
        if validation is not None:
            best_score, no_change = self._validation_score(validation, layers, head), 0
        self._report(0, curve[-1], best_score, start, history)
        n_iter, first_factor, stopped = 1, None, None
        for it in range(1, self.max_iter):
            if self.tol > 0 and len(curve) > 1 and curve[-2] - curve[-1] <= self.tol * curve[-2]:
                stopped = "converged"
                break
            new_layers, first_factor = backward_sweep(
                X, hidden, layers, head["W"], head["b"], head["targets"], activation,
                backward=self.backward, mu=self.mu, squash_eps=self.squash_eps,
                alpha_hidden=self.alpha_hidden, weights=weights, block_rows=block,
                first_factor=first_factor,
            )  # fmt: skip
            new_hidden = forward(X, new_layers, activation)
            new_head = self._fit_head(new_hidden[-1], Y, weights, block, head["targets"])
            J = new_head["objective_curve"][-1]
            if not J <= curve[-1]:
                stopped = f"sweep {it} raised the objective ({J:.6g} > {curve[-1]:.6g})"
                break
            layers, hidden, head = new_layers, new_hidden, new_head
            curve.append(J)
            n_iter = it + 1
            score = None
            if validation is not None:
                score = self._validation_score(validation, layers, head)
                if score > best_score:
                    best, best_score, no_change = (layers, head), score, 0
                else:
                    no_change += 1
            else:
                best = (layers, head)
            try:
                self._report(it, J, score, start, history)
            except StopIteration:
                stopped = "callback"
                break
            if validation is not None and no_change >= self.n_iter_no_change:
                stopped = "no validation improvement"
                break
        if self.verbose and stopped:
            print(f"[{type(self).__name__}] stopped: {stopped}")
        layers, head = best
        self.coefs_ = [W for W, _ in layers] + [head["W"]]
        self.intercepts_ = [b for _, b in layers] + [head["b"]]
        self.n_iter_ = n_iter
        self.objective_curve_ = curve
        self.history_ = history
        self.alpha_ = head["alpha"]
        self.best_validation_score_ = best_score
        return head

    def _fit_head(self, H, Y, weights, block, targets):
        return fit_svm_head(
            H, Y, weights, head=self._head, alpha=self.alpha, max_iter=self._head_max_iter,
            tol=self.tol, adaptive_weights=self._adaptive_weights, keep_ratio=self._keep_ratio,
            loss=self._head_loss, targets=targets, block_rows=block,
        )  # fmt: skip

    def _validation_score(self, validation, layers, head):
        X_val, y_val = validation
        F = self._outputs(X_val, layers, head["W"], head["b"])
        return self._score_outputs(F, y_val)

    def _report(self, iteration, objective, score, start, history):
        info = {
            "iteration": iteration,
            "objective": objective,
            "validation_score": score,
            "seconds": time.perf_counter() - start,
        }
        history.append(info)
        if self.verbose:
            val = "" if score is None else f", validation score {score:.4f}"
            print(
                f"[{type(self).__name__}] iteration {iteration}: objective {objective:.6g}"
                f"{val} ({info['seconds']:.1f} s)"
            )
        if self.callback is not None:
            self.callback(info)

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

    # -- streaming ---------------------------------------------------------------------------
    def _partial_fit_head(self, X, Y, weights, xp, device, sizes):
        """Accumulate the last hidden layer's statistics and re-solve the decision layer."""
        fitted = hasattr(self, "coefs_")
        if not fitted:
            rng = check_random_state(self.random_state)
            widths = (X.shape[1], *sizes)
            if self._head != "ridge" and widths[-1] < Y.shape[1]:
                raise ValueError(
                    f"head={self._head!r} needs the last hidden layer to be at least as wide "
                    f"as the outputs; got {widths[-1]} units for {Y.shape[1]} outputs."
                )
            layers, _ = init_network(
                rng, X, sizes, self._activation, init=self.init, init_scale=self.init_scale,
                weights=None if weights is None else weights / xp.sum(weights),
            )  # fmt: skip
        else:  # after fit: keep its hidden layers, stream the decision layer's statistics afresh
            layers = list(zip(self.coefs_[:-1], self.intercepts_[:-1], strict=True))
            if X.dtype != layers[0][0].dtype:
                X = xp.astype(X, layers[0][0].dtype)
        stream = getattr(self, "_stream", None) or GramStatistics()
        budget = resolve_memory_budget(self.memory_budget, xp, device)
        block = rows_per_block(max(sizes), 8, budget, n_buffers=3, min_rows=64, max_rows=8192)
        H = forward(X, layers, self._activation)[-1]
        stream.update(H, Y, weights, block_rows=block)
        if stream.weight_sum <= 0.0:
            raise ValueError("partial_fit has seen no sample with positive weight yet.")
        W, b, J, alpha = _solve_from_statistics(
            stream, self._head, self.alpha, self.coefs_[-1] if fitted else None
        )
        self._stream = stream
        self.coefs_ = [Wl for Wl, _ in layers] + [W]
        self.intercepts_ = [bl for _, bl in layers] + [b]
        self.alpha_ = alpha
        self.n_iter_ = 1
        self.objective_curve_ = [J]
        return H, W, b


def _solve_from_statistics(stats, head, alpha, W_prev):
    """The one-pass decision layer (targets = codes) from streamed statistics.

    Returns ``W``, ``b``, the objective ``J`` and the relative penalty used.
    """
    xp, device = get_namespace_and_device(stats.scatter)
    s = stats.weight_sum
    cov = stats.covariance()
    p = cov.shape[0]
    scale = float(xp.sum(xp.linalg.diagonal(cov))) / p
    scale = scale if scale > 0.0 else 1.0
    C = stats.cross / s
    if isinstance(alpha, str):
        scores, _ = ridge_gcv(
            stats.scatter, stats.cross, stats.target_scatter, stats.n_samples,
            [s * a * scale for a in AUTO_ALPHAS],
        )  # fmt: skip
        alpha = AUTO_ALPHAS[min(range(len(scores)), key=scores.__getitem__)]
    gamma = alpha * scale
    G = cov + gamma * xp.eye(p, dtype=xp.float64, device=device)
    L = cholesky(G)
    if head == "ridge":
        W = cho_solve(L, C)
    elif head == "stiefel":
        W = generalized_procrustes(L, C)
    else:
        W = stiefel_quadratic(G, C, W_prev, tol=1e-12)[0]
    b = stats.target_mean - stats.mean @ W
    # sum_i w_i ||W^T (h_i - h) - (t_i - t)||^2 / s + gamma ||W||^2
    J = (
        float(xp.sum(W * (cov @ W)))
        - 2.0 * float(xp.sum(W * C))
        + float(xp.sum(stats.target_scatter)) / s
        + gamma * float(xp.sum(W * W))
    )
    return W, b, J, alpha


def _normalised(weights):
    return None if weights is None else weights / weights.sum()


_PARAMS_DOC = """
    hidden_layer_sizes : tuple of int, default={sizes}
        Widths of the hidden layers.
    activation : {{"sigmoid", "tanh", "softplus", "leaky_relu", "identity"}}, default="sigmoid"
        Invertible hidden activation (``"relu"`` is rejected: a target of 0
        has no unique pre-image).
    alpha : float or "auto", default=1e-5
        Ridge penalty of the decision layer relative to the features' scale
        (``gamma = alpha * trace(cov) / width``); ``"auto"`` chooses it by
        generalised cross-validation from one eigendecomposition.
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
        Bytes (or a fraction of the free memory) for the row blocks of the
        Gram accumulation and of prediction.
    random_state : int, RandomState instance or None, default=None
        Seeds the hidden layers and the validation split.
    verbose : int, default=0
        Print the objective (and validation score) after every iteration.
    callback : callable, default=None
        ``callback(info)`` after every outer iteration, with ``info`` a dict
        (``iteration``, ``objective``, ``validation_score``, ``seconds``);
        raise ``StopIteration`` to stop.
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
    MNIST measured by ``python -m benchmarks closedform``;
    :meth:`paper_preset` gives the paper's architecture and schedule.

    Parameters
    ----------"""
        + _PARAMS_DOC.format(sizes="(3000,)", max_iter="1")
        + """    head : {"ridge", "stiefel", "gpi"}, default="ridge"
        The decision layer's (W, b) step (:class:`closedform.StiefelSVC`):
        unconstrained (the L2-SVM optimum), ``W^T G W = I`` (the paper), or
        ``W^T W = I``.
    head_max_iter : int, default=10
        Retargeting iterations of the decision layer per fit.
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

    _head_loss = "squared_hinge"

    def __init__(
        self,
        hidden_layer_sizes=(3000,),
        *,
        activation="sigmoid",
        head="ridge",
        alpha=1e-5,
        alpha_hidden=1e-6,
        backward="proximal",
        mu=1.0,
        squash_eps=1e-3,
        max_iter=1,
        head_max_iter=10,
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

    @property
    def _head(self):
        return self.head

    @property
    def _head_max_iter(self):
        return self.head_max_iter

    @property
    def _adaptive_weights(self):
        return self.adaptive_weights

    @property
    def _keep_ratio(self):
        return self.keep_ratio

    def _check_params(self):
        sizes = super()._check_params()
        if not isinstance(self.adaptive_weights, (bool, np.bool_)):
            raise ValueError(f"adaptive_weights must be a bool; got {self.adaptive_weights!r}.")
        check_positive("keep_ratio", self.keep_ratio, upper=1.0, upper_open=False)
        return sizes

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
        with restore_on_error(self):  # a failed fit leaves a previous fit intact
            return self._fit(X, y, sample_weight)

    def _fit(self, X, y, sample_weight):
        sizes = self._check_params()
        self.__dict__.pop("_stream", None)
        self.__dict__.pop("coefs_", None)
        X, y, xp, device = self._prepare(X, y, reset=True)
        classes, indices, codes, w_host = encode_labels(y, sample_weight)
        rng = check_random_state(self.random_state)
        train = np.arange(X.shape[0])
        validation = None
        if self.early_stopping:
            train, val = train_test_split(
                train, test_size=self.validation_fraction, stratify=indices,
                random_state=rng.randint(np.iinfo(np.int32).max),
            )  # fmt: skip
            val_idx = to_namespace(val, xp, device)
            validation = (take_rows(xp, X, val_idx), indices[val])
        train_idx = to_namespace(train, xp, device)
        X_train = X if validation is None else take_rows(xp, X, train_idx)
        Y = to_namespace(codes[train], xp, device)
        weights = None
        if w_host is not None:
            weights = to_namespace(_normalised(w_host[train]), xp, device)
        self._set_classes(classes, xp, device)
        head = self._fit_network(X_train, Y, weights, xp, device, sizes, rng, validation)
        w_train = None if w_host is None else w_host[train]
        self.temperature_ = fit_temperature(to_numpy(head["outputs"]), indices[train], w_train)
        self.sample_weight_ = head["weights"]
        return self

    def _score_outputs(self, F, indices):
        F = to_numpy(F)
        winners = (F[:, 0] > 0).astype(np.int64) if F.shape[1] == 1 else F.argmax(axis=1)
        return float(np.mean(winners == indices))

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
        first = not hasattr(self, "coefs_")
        saved = dict(self.__dict__)
        try:
            sizes = self._check_params()
            X, y, xp, device = self._prepare(X, y, reset=first)
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
            indices = np.searchsorted(self.classes_, y_host)
            codes = one_vs_rest_codes(indices, self.classes_.shape[0])
            w = None
            if sample_weight is not None:
                w_host = _check_sample_weight(to_numpy(sample_weight), y_host, dtype=np.float64)
                if not np.all(w_host >= 0):
                    raise ValueError("sample_weight must be non-negative.")
                w = to_namespace(w_host, xp, device)
            H, W, b = self._partial_fit_head(
                X, to_namespace(codes, xp, device), w, xp, device, sizes
            )
            F = xp.astype(H @ xp.astype(W, H.dtype), xp.float64) + b
            self.temperature_ = fit_temperature(to_numpy(F), indices)
            self.sample_weight_ = None
            return self
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.array_api_support = True
        tags.input_tags.sparse = False
        tags.classifier_tags.multi_class = True
        return tags


class ManifoldNetRegressor(RegressorMixin, _BaseManifoldNet):
    __doc__ = (
        """Manifold neural network regressor trained by closed-form layerwise solves.

    The layerwise scheme of :class:`ManifoldNetClassifier` with a ridge
    decision layer (squared loss on the targets, which may be 2-D).

    Parameters
    ----------"""
        + _PARAMS_DOC.format(sizes="(2000,)", max_iter="1")
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

    _head = "ridge"
    _head_max_iter = 1
    _adaptive_weights = False
    _keep_ratio = 1.0

    def __init__(
        self,
        hidden_layer_sizes=(2000,),
        *,
        activation="sigmoid",
        alpha=1e-5,
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
        with restore_on_error(self):  # a failed fit leaves a previous fit intact
            return self._fit(X, y, sample_weight)

    def _targets(self, y, xp, device):
        Y = xp.astype(to_namespace(y, xp, device), xp.float64)
        return Y[:, None] if Y.ndim == 1 else Y

    def _fit(self, X, y, sample_weight):
        sizes = self._check_params()
        self.__dict__.pop("_stream", None)
        self.__dict__.pop("coefs_", None)
        X, y, xp, device = self._prepare(X, y, reset=True)
        self._y_ndim = y.ndim
        Y = self._targets(y, xp, device)
        w_host = None
        if sample_weight is not None:
            w_host = _check_sample_weight(to_numpy(sample_weight), to_numpy(y), dtype=np.float64)
            if not np.all(w_host >= 0) or not np.sum(w_host) > 0:
                raise ValueError("sample_weight must be non-negative with a positive sum.")
        rng = check_random_state(self.random_state)
        train = np.arange(X.shape[0])
        validation = None
        if self.early_stopping:
            train, val = train_test_split(
                train, test_size=self.validation_fraction,
                random_state=rng.randint(np.iinfo(np.int32).max),
            )  # fmt: skip
            val_idx = to_namespace(val, xp, device)
            validation = (take_rows(xp, X, val_idx), take_rows(xp, Y, val_idx))
            train_idx = to_namespace(train, xp, device)
            X, Y = take_rows(xp, X, train_idx), take_rows(xp, Y, train_idx)
        weights = None
        if w_host is not None:
            weights = to_namespace(_normalised(w_host[train]), xp, device)
        self._fit_network(X, Y, weights, xp, device, sizes, rng, validation)
        return self

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
        first = not hasattr(self, "coefs_")
        saved = dict(self.__dict__)
        try:
            sizes = self._check_params()
            X, y, xp, device = self._prepare(X, y, reset=first)
            if first:
                self._y_ndim = y.ndim
            Y = self._targets(y, xp, device)
            if not first and Y.shape[1] != self.coefs_[-1].shape[1]:
                raise ValueError(
                    f"y has {Y.shape[1]} targets; earlier batches had {self.coefs_[-1].shape[1]}."
                )
            w = None
            if sample_weight is not None:
                w_host = _check_sample_weight(
                    to_numpy(sample_weight), to_numpy(y), dtype=np.float64
                )
                if not np.all(w_host >= 0):
                    raise ValueError("sample_weight must be non-negative.")
                w = to_namespace(w_host, xp, device)
            self._partial_fit_head(X, Y, w, xp, device, sizes)
            return self
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.array_api_support = True
        tags.input_tags.sparse = False
        tags.target_tags.multi_output = True
        return tags
