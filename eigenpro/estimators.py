# SPDX-License-Identifier: BSD-3-Clause
"""scikit-learn estimators: :class:`EigenProRegressor`, :class:`EigenProClassifier`."""

from __future__ import annotations

import copy
import time
from typing import Any, ClassVar, NamedTuple

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MultiOutputMixin, RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from eigenpro._iteration import SOLVER_CONSTRAINTS, check_inputs
from eigenpro.decoupled import decoupled_solve
from eigenpro.kernels import make_kernel
from eigenpro.model_selection import choose_kernel
from eigenpro.operator import KernelOperator
from eigenpro.sharded import Shard, gather_rows
from eigenpro.solver import eigenpro_solve
from solvers._estimator import ValidatedEstimatorMixin, fit_context
from solvers._validation import Integral, Interval, StrOptions
from solvers.backend import (
    check_same_namespace,
    floating_dtype,
    get_namespace_and_device,
    resolve_device,
    resolve_memory_budget,
    to_namespace,
    to_numpy,
)
from solvers.distributed import ProcessGroupParamMixin, process_group_constraint

__all__ = ["EigenProClassifier", "EigenProRegressor"]


_PARAMS_DOC = """
    kernel : {"gaussian", "rbf", "laplacian", "laplace", "cauchy", "matern32", \
"matern52"}, Kernel or callable, default="gaussian"
        The kernel. A :class:`eigenpro.kernels.Kernel` instance is used as
        given; a callable ``f(X, Z)`` must return the kernel matrix in the
        inputs' array namespace and be positive semi-definite.
    bandwidth : float or "auto", default="auto"
        Length scale ``s`` of the kernel (Gaussian: ``exp(-|x-z|^2/(2 s^2))``,
        Laplacian: ``exp(-|x-z|/s)``). ``"auto"`` tries multiples 0.5 ... 2.8
        of a rule of thumb, a multiple of the root-mean-square distance
        between samples ``r = sqrt(2 sum_j Var X_j)`` (``r / 2`` for Gaussian,
        Cauchy and Matérn kernels, ``r`` for the Laplacian: 5.1 and 10.3 on
        MNIST pixels in [0, 1], where the EigenPro papers use 5 and 10), and
        keeps the one with the lowest leave-one-out error of kernel ridge
        regression on a subsample of 500 rows
        (:mod:`eigenpro.model_selection`); the rule alone is too narrow for a
        few standardised features.
    alpha : float or "auto", default="auto"
        Ridge regularisation: the solver targets ``(K + alpha I) coef = Y``
        (scikit-learn ``KernelRidge`` convention). ``"auto"`` picks it (with
        the bandwidth) by that leave-one-out error from 1e-3 ... 100 times the
        mean ``k(x, x)``; on noisy data the interpolating solution (0,
        EigenPro's own setting, regularised by the number of epochs)
        over-fits. The value used is ``alpha_``.
    n_epochs : int, default=10
        Passes over the training data.
    subsample_size : int or "auto", default="auto"
        Size ``s`` of the Nyström subsample that estimates the top of the
        kernel's spectrum. ``"auto"``: ``min(n, 2000)`` below 100k samples,
        4000 (CPU) or 12000 (GPU) above.
    n_components : int or "auto", default="auto"
        Number of top eigendirections the preconditioner flattens. ``"auto"``:
        the most (up to ``s / 4``) whose critical batch size stays below ``n``.
        0 gives plain mini-batch SGD on the kernel system.
    batch_size : int or "auto", default="auto"
        ``"auto"``: the critical batch size ``beta / lambda~_1`` of the
        preconditioned kernel, with ``lambda~_1`` checked on held-out points.
    step_size : float or "auto", default="auto"
        ``"auto"``: ``m / beta`` up to the critical batch size ``m``,
        ``0.99 * 2m / (beta + (m - 1) lambda~_1)`` beyond (EigenPro 2.0). If an
        epoch diverges it is restarted with half the step and a
        ``ConvergenceWarning``.
    tol : float, default=None
        Stop early once the training mean squared error falls below ``tol``
        times its initial value; warn (``ConvergenceWarning``) if ``n_epochs``
        pass first. None runs all epochs.
    memory_budget : "auto", float or int, default="auto"
        Memory for what grows with the kernel matrix: bytes (> 1), a fraction
        of the memory available on the compute device (in (0, 1]), or
        ``"auto"`` (75 % of it). It bounds the training-matrix chunks (or the
        stored upper triangle), the Nyström subsample's ``s x s``
        eigenproblem with the eigensolver's copies and workspace, the held-out
        calibration matrix, the leave-one-out subsample of
        ``bandwidth="auto"``/``alpha="auto"``, and the prediction and
        validation blocks ``K(X_block, centres)``. Not counted: the data and
        what grows with them alone (the inputs, the permuted and mean-shifted
        copies of ``X``, targets, coefficients, outputs). Measured in
        ``tests/eigenpro/test_memory.py``.
    precompute_kernel : bool or "auto", default="auto"
        Store the training kernel matrix (its upper triangle, ``n^2 / 2``
        entries) when it fits in the budget; later epochs then cost O(n^2 l)
        instead of O(n^2 d). Same iterates either way.
    device : str, default=None
        Where to compute. None: where ``X`` lives (NumPy on the CPU unless
        ``sklearn.set_config(array_api_dispatch=True)`` lets torch or CuPy
        inputs through). ``"cuda"``, ``"cuda:1"``, ``"torch:cpu"``,
        ``"cupy"``...: move the data there; fitted arrays then live on that
        device and predictions come back in the input's array type.
    random_state : int, RandomState instance or None, default=None
        Seeds the Nyström subsample and the batches.
    verbose : int, default=0
        1: one line per epoch; 2: also a progress bar over batches (tqdm).
    callback : callable, default=None
        Called after every epoch as ``callback(intermediate_result)`` with a
        ``scipy.optimize.OptimizeResult`` (``x``: coefficients, ``fun``:
        training MSE, ``nit``: epoch, ``time``, ``history``). Raise
        ``StopIteration`` to stop training.
    warm_start : bool, default=False
        Start from the previous ``coef_`` instead of zero: on the same
        training data for ``n_centers="all"``; on the previous ``centers_``
        (with any data of the same targets) otherwise, continuing from the
        previous iterate.
    n_centers : int or "all", default="all"
        Centres of the model. ``"all"``: every training point (EigenPro 2,
        ``O(n^2)`` per epoch). An int ``p``: ``p`` training rows drawn at
        random (seeded by ``random_state``), fitted by EigenPro 3 iteration
        (:func:`eigenpro.decoupled.decoupled_solve`): the least-squares
        problem over all ``n`` points of a model on ``p`` centres, ``O(n p d)``
        per epoch and ``O(p^2)`` memory; the solution ``Nystroem + Ridge``
        computes for those centres. Must not exceed the number of samples.
    centers : array-like of shape (n_centers, n_features), default=None
        Centres given explicitly (EigenPro 3 as for an int ``n_centers``,
        which must then stay ``"all"``).
    process_group : None, "world" or ProcessGroup, default=None
        Fit on rows spread over the ranks of a ``torch.distributed`` process
        group (gloo on CPU, NCCL on GPU): every rank calls ``fit`` with its
        own rows and the same parameters, keeps its rows' share of the model
        (:mod:`eigenpro.sharded`: per step the batch's rows and outputs
        travel, ``m (d + 2 l)`` floats per rank), and the model is the one a
        single process fits on the rows concatenated in rank order (to
        rounding), except that ``bandwidth="auto"``/``alpha="auto"`` choose
        on a strided sample of 2000 rows of all ranks. ``predict``,
        ``decision_function`` and ``score`` are then collective (every rank
        passes the same ``X`` and gets the full prediction);
        :meth:`gathered` returns the whole model as an ordinary estimator.
        Labels and target means are those of all ranks; a bad input on one
        rank raises on all. Only with ``n_centers="all"``. A sharded fit
        also sets ``communication_``: this rank's ``bytes_sent``, the
        ``seconds`` its steps spent in collectives, the ``steps`` and the
        ``step_bytes`` they sent.
"""

_ATTRS_DOC = """
    coef_ : array of shape (n_centers, n_outputs)
        Coefficients of ``f(x) = sum_j coef_[j] k(x, centers_[j])``.
    centers_ : array of shape (n_centers, n_features)
        The centres: the training points for ``n_centers="all"``.
    kernel_ : Kernel
        The kernel with its fitted bandwidth.
    bandwidth_ : float or None
        Bandwidth used.
    alpha_ : float
        Ridge penalty used (the chosen one for ``alpha="auto"``).
    batch_size_ : int
        Mini-batch size used.
    step_size_ : float
        Step size used (after any halving).
    subsample_size_ : int
        Nyström subsample size.
    n_components_ : int
        Eigendirections flattened by the preconditioner.
    beta_ : float
        ``max k(x, x)`` on the subsample (plus ``alpha``).
    top_eigenvalue_ : float
        Largest eigenvalue of the normalized kernel operator.
    preconditioned_eigenvalue_ : float
        Largest eigenvalue after preconditioning.
    n_iter_ : int
        Epochs run by the last ``fit``.
    history_ : dict of lists
        Per epoch (epoch 0 = start): ``epoch``, ``train_mse``, ``time``
        (seconds since ``fit`` started, excluding callbacks and validation)
        and, with validation data, ``val_score``.
    timings_ : dict
        Seconds of the set-up steps of the last ``fit``: ``model_selection``
        (the leave-one-out choice of ``bandwidth``/``alpha`` when ``"auto"``),
        ``preconditioner`` (subsample eigendecomposition and calibration) and
        ``kernel_matrix`` (computing the stored kernel matrix, when it is stored).
    n_features_in_ : int
        Number of features seen during ``fit``.
"""


class EncodedTargets(NamedTuple):
    """Targets as the solver takes them, and what the estimator keeps of them."""

    #: Shape (n_samples, n_outputs), in the compute namespace and X's dtype.
    Y: Any
    #: Stored as ``_target_info``: ``"1d"``, ``("2d", n_outputs)`` or
    #: ``("classes", labels)``; a warm start needs the same.
    info: Any
    #: The classifier's labels (NumPy), or None.
    classes: Any = None
    #: The labels in the compute namespace when they are numeric, or None.
    classes_compute: Any = None
    #: The regressor's target means (n_outputs,), subtracted from ``Y``, or None.
    offset: Any = None


class _BaseEigenPro(ProcessGroupParamMixin, ValidatedEstimatorMixin, BaseEstimator):
    """Shared fit/predict machinery of the EigenPro estimators."""

    _parameter_constraints: ClassVar[dict] = {
        **{name: c for name, c in SOLVER_CONSTRAINTS.items() if name != "damping"},
        "bandwidth": [*SOLVER_CONSTRAINTS["bandwidth"], StrOptions({"auto"})],
        "alpha": [*SOLVER_CONSTRAINTS["alpha"], StrOptions({"auto"})],
        # a string or a torch.device, checked by solvers.backend.resolve_device
        "device": "no_validation",
        "warm_start": ["boolean"],
        "n_centers": [Interval(Integral, 1, None, closed="left"), StrOptions({"all"})],
        "centers": ["array-like", None],
        "process_group": process_group_constraint(),
    }

    def __init__(
        self,
        kernel="gaussian",
        *,
        bandwidth="auto",
        alpha="auto",
        n_epochs=10,
        subsample_size="auto",
        n_components="auto",
        batch_size="auto",
        step_size="auto",
        tol=None,
        memory_budget="auto",
        precompute_kernel="auto",
        device=None,
        random_state=None,
        verbose=0,
        callback=None,
        warm_start=False,
        n_centers="all",
        centers=None,
        process_group=None,
    ):
        self.kernel = kernel
        self.bandwidth = bandwidth
        self.alpha = alpha
        self.n_epochs = n_epochs
        self.subsample_size = subsample_size
        self.n_components = n_components
        self.batch_size = batch_size
        self.step_size = step_size
        self.tol = tol
        self.memory_budget = memory_budget
        self.precompute_kernel = precompute_kernel
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.callback = callback
        self.warm_start = warm_start
        self.n_centers = n_centers
        self.centers = centers
        self.process_group = process_group

    def __setstate__(self, state):
        # pickles from before issue 15 have no centres parameters: every row was a centre
        state.setdefault("n_centers", "all")
        state.setdefault("centers", None)
        super().__setstate__(state)

    def _compute_namespace(self, X):
        """Namespace/device to compute in: the ``device`` option's, else X's."""
        if self.device is not None:
            return resolve_device(self.device)
        return get_namespace_and_device(X)

    def _fit(self, X, y, X_val, y_val):
        """Fit; ``fit`` wraps it in :func:`solvers._estimator.fit_context`."""
        is_classifier = isinstance(self, ClassifierMixin)
        comm = self._communicator()
        name = f"{type(self).__name__}.fit"
        if comm.distributed and (self.n_centers != "all" or self.centers is not None):
            raise NotImplementedError(
                f"{name}: a process_group with n_centers or centers (EigenPro 3) is not "
                "implemented; with a process_group every training row is a centre."
            )
        with comm.raise_together(f"{name}: checking this rank's X and y"):
            X, y = validate_data(
                self,
                X,
                y,
                dtype="numeric",
                multi_output=not is_classifier,
                y_numeric=not is_classifier,
            )
            xp, device = self._compute_namespace(X)
            X = _as_float(to_namespace(X, xp, device))
        comm.agree(name, n_features=int(X.shape[1]), dtype=str(X.dtype))
        counts = comm.check_nonempty(X.shape[0])
        targets = self._encode_targets(y, xp, device, X.dtype, comm)
        kernel = make_kernel(self.kernel, None if self.bandwidth == "auto" else self.bandwidth)
        alpha = self.alpha
        search_bandwidth = getattr(kernel, "bandwidth", 0.0) is None
        started = time.perf_counter()
        if search_bandwidth or alpha == "auto":
            X_choice, Y_choice = _choice_rows(comm, counts, X, targets.Y)
            check_inputs(X_choice, Y_choice)  # the choice works on them first
            choice = choose_kernel(
                kernel, X_choice, Y_choice, search_bandwidth=search_bandwidth, alpha=alpha,
                max_bytes=resolve_memory_budget(self.memory_budget, xp, device),
            )  # fmt: skip
            kernel, alpha = choice.kernel, choice.alpha
        selection_seconds = time.perf_counter() - started
        fingerprint = _fingerprint(X)
        centers = self._check_centers(X, xp, device)
        if centers is None:
            with comm.raise_together(f"{name}: checking the warm start"):
                coef0 = self._warm_start_coef(targets, fingerprint, xp, device)
        else:
            centers, coef0 = self._warm_start_centers(centers, targets, xp, device)

        history_val = []
        callback = self.callback
        if X_val is not None or y_val is not None:
            if X_val is None or y_val is None:
                raise ValueError("Pass both X_val and y_val, or neither.")
            callback = self._validation_callback(kernel, X, X_val, y_val, history_val, targets)

        common = dict(
            alpha=float(alpha),
            n_epochs=int(self.n_epochs),
            subsample_size=self.subsample_size,
            n_components=self.n_components,
            batch_size=self.batch_size,
            step_size=self.step_size,
            memory_budget=self.memory_budget,
            coef0=coef0,
            tol=self.tol,
            random_state=self.random_state,
            callback=callback,
            verbose=int(self.verbose),
        )
        if centers is None:
            result = eigenpro_solve(
                kernel, X, targets.Y, precompute_kernel=self.precompute_kernel,
                process_group=self.process_group, **common,
            )  # fmt: skip
        elif isinstance(centers, str):  # drawn from the rows
            result = decoupled_solve(kernel, X, targets.Y, n_centers=int(self.n_centers), **common)
        else:
            result = decoupled_solve(kernel, X, targets.Y, centers=centers, **common)
        history = {key: list(values) for key, values in result.history.items()}
        # seconds since fit started: the choice of bandwidth and alpha came first
        history["time"] = [t + selection_seconds for t in history["time"]]
        if history_val:
            history["val_score"] = [None, *history_val]
        self._store_fit(result, X, targets, fingerprint, history)
        if targets.offset is not None:
            self.intercept_ = targets.offset
        self.timings_["model_selection"] = selection_seconds
        self.alpha_ = float(alpha)
        #: ranks the model is spread over (this rank holds its rows' share)
        self._n_ranks = comm.world_size
        if comm.distributed:
            self.communication_ = dict(result.communication)
        elif hasattr(self, "communication_"):  # from an earlier sharded fit
            del self.communication_
        return self

    def _warm_start_coef(self, targets, fingerprint, xp, device):
        """The previous ``coef_`` (2-D) for a warm start, or None; checks the data is the same."""
        if not (self.warm_start and hasattr(self, "coef_")):
            return None
        coef0 = to_namespace(self.coef_, xp, device)
        coef0 = coef0[:, None] if coef0.ndim == 1 else coef0
        if (
            tuple(coef0.shape) != tuple(targets.Y.shape)
            or targets.info != self._target_info
            or not _same_fingerprint(fingerprint, self._fingerprint)
        ):
            raise ValueError(
                "warm_start=True continues training on the same data: X must be that of the "
                "previous fit (same samples, same order), with targets of the same shape."
            )
        return coef0

    def _check_centers(self, X, xp, device):
        """None (every row a centre), "drawn" (``n_centers`` rows) or the given centres."""
        if self.centers is None and self.n_centers == "all":
            return None
        if self.centers is not None and self.n_centers != "all":
            raise ValueError(
                f"Give centers or n_centers, not both (got n_centers={self.n_centers!r} and "
                f"centers of shape {np.shape(self.centers)})."
            )
        if self.centers is None:
            if self.n_centers > X.shape[0]:
                raise ValueError(
                    f"n_centers={self.n_centers} exceeds the number of samples ({X.shape[0]}); "
                    "the centres are drawn from the training rows."
                )
            return "drawn"
        Z = check_array(self.centers, dtype="numeric", input_name="centers")
        if Z.shape[1] != X.shape[1]:
            raise ValueError(f"centers has {Z.shape[1]} features, but X has {X.shape[1]} features.")
        return xp.astype(to_namespace(Z, xp, device), X.dtype)

    def _warm_start_centers(self, centers, targets, xp, device):
        """Centres and starting coefficients: the previous fit's for a warm start."""
        if not (self.warm_start and hasattr(self, "coef_")):
            return centers, None
        coef0 = to_namespace(self.coef_, xp, device)
        coef0 = coef0[:, None] if coef0.ndim == 1 else coef0
        previous = to_namespace(self.centers_, xp, device)
        if targets.info != self._target_info or coef0.shape[1] != targets.Y.shape[1]:
            raise ValueError(
                "warm_start=True continues from the previous fit: the targets must have the "
                "same shape (and classes) as before."
            )
        count = self.n_centers if isinstance(centers, str) else centers.shape[0]
        if count != previous.shape[0] or (
            not isinstance(centers, str) and tuple(centers.shape) != tuple(previous.shape)
        ):
            raise ValueError(
                f"warm_start=True continues on the previous {previous.shape[0]} centres; "
                f"this fit asks for {count}."
            )
        return xp.astype(previous, targets.Y.dtype), coef0

    def _store_fit(self, result, X, targets, fingerprint, history):
        """Write the fitted state (the attribute names old pickles hold)."""
        precond = result.preconditioner
        self._target_info = targets.info
        self._fingerprint = fingerprint
        self.coef_ = result.x[:, 0] if targets.info == "1d" else result.x
        self.centers_ = result.get("centers", X)
        self.kernel_ = result.kernel
        self.bandwidth_ = result.bandwidth
        self.batch_size_ = result.batch_size
        self.step_size_ = result.step_size
        self.subsample_size_ = precond.subsample_size_
        self.n_components_ = precond.n_components_
        self.beta_ = precond.beta_
        self.top_eigenvalue_ = precond.top_eigenvalue_
        self.preconditioned_eigenvalue_ = precond.preconditioned_eigenvalue_
        self.n_iter_ = result.nit
        self.history_ = history
        self.timings_ = dict(result.timings)
        if targets.classes is not None:
            self.classes_ = targets.classes
            self._classes_compute = targets.classes_compute

    def _validation_callback(self, kernel, X, X_val, y_val, history_val, targets):
        xp, device = get_namespace_and_device(X)
        X_val = check_array(X_val, dtype="numeric")
        if X_val.shape[1] != X.shape[1]:
            raise ValueError(
                f"X_val has {X_val.shape[1]} features, but X has {X.shape[1]} features."
            )
        if len(y_val) != X_val.shape[0]:
            raise ValueError(f"X_val has {X_val.shape[0]} samples but y_val has {len(y_val)}.")
        X_val = xp.astype(to_namespace(X_val, xp, device), X.dtype)
        user_callback = self.callback
        state = {}

        def callback(result):
            if "operator" not in state:  # created after the training matrix exists
                # what the stored training matrix left of the user's budget, and
                # at most what is still available now
                budget = min(
                    resolve_memory_budget(self.memory_budget, xp, device) - result.kernel_bytes,
                    resolve_memory_budget("auto", xp, device),
                )
                budget = max(budget, 2**26)
                centers = result.get("centers")
                centers = X if centers is None else centers
                state["operator"] = KernelOperator(kernel, X_val, centers, memory_budget=budget)
            F = state["operator"].matmul(result.x[:, None] if result.x.ndim == 1 else result.x)
            F = self._communicator().all_reduce_sum(F, "Summing the validation outputs")
            score = self._score_outputs(F, y_val, targets)
            history_val.append(score)
            result["val_score"] = score
            if user_callback is not None:
                user_callback(result)

        return callback

    def _predict_outputs(self, X, method):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype="numeric")
        in_xp, in_device = get_namespace_and_device(X)
        if self.device is None:
            check_same_namespace(self, method, X, self.coef_)
        xp, device = get_namespace_and_device(self.coef_)
        Xc = xp.astype(to_namespace(X, xp, device), self.centers_.dtype)  # numeric -> float
        coef = self.coef_[:, None] if self.coef_.ndim == 1 else self.coef_
        budget = resolve_memory_budget(self.memory_budget, xp, device)
        F = KernelOperator(
            self.kernel_, Xc, self.centers_, memory_budget=budget, precompute=False
        ).matmul(coef)
        F = self._sum_over_ranks(F, X, method)
        offset = getattr(self, "intercept_", None)  # absent from pickles before issue 20
        if offset is not None:
            F = F + offset
        return F, (in_xp, in_device)

    def _sum_over_ranks(self, F, X, method):
        """The outputs of all ranks' shares of the model (a collective for a sharded fit)."""
        n_ranks = getattr(self, "_n_ranks", 1)
        if n_ranks == 1:
            return F
        try:
            comm = self._communicator()
        except ValueError:  # "world" outside an initialised process group
            comm = None
        if comm is None or comm.world_size != n_ranks:
            raise ValueError(
                f"This model was fitted over {n_ranks} ranks and holds one rank's "
                f"share of its centres; call {method} on every rank of a process group of "
                f"{n_ranks} ranks (process_group), or gather it first with gathered()."
            )
        comm.agree(f"{type(self).__name__}.{method}", n_rows=int(X.shape[0]))
        return comm.all_reduce_sum(F, f"{type(self).__name__}.{method}: summing the outputs")

    def gathered(self):
        """The whole model as an ordinary single-process estimator (collective for a sharded fit).

        Every rank of the process group calls it; each gets a copy whose
        ``centers_`` and ``coef_`` are all ranks' in rank order and whose
        ``process_group`` is None: it predicts alone, pickles and loads
        anywhere, and equals one process's fit on the concatenated rows.

        Returns
        -------
        estimator
            A new fitted estimator of the same class.
        """
        check_is_fitted(self)
        gathered = copy.copy(self)
        gathered.process_group = None
        gathered._n_ranks = 1
        if getattr(self, "_n_ranks", 1) > 1:
            comm = self._communicator()
            what = f"{type(self).__name__}.gathered"
            gathered.centers_ = comm.all_gather_rows(self.centers_, what)
            gathered.coef_ = comm.all_gather_rows(self.coef_, what)
            gathered._fingerprint = _fingerprint(gathered.centers_)
        return gathered

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.array_api_support = True
        tags.input_tags.sparse = False
        return tags


class EigenProRegressor(MultiOutputMixin, RegressorMixin, _BaseEigenPro):
    """Kernel regression trained by EigenPro iteration.

    Preconditioned mini-batch SGD on the kernel least-squares system
    ``(K + alpha I) coef = Y - intercept_`` (Ma & Belkin 2017, 2019), the
    targets centred on their mean (``intercept_``; predictions far from the
    data fall to it instead of to 0): the top eigendirections
    of the kernel operator, estimated on a Nyström subsample, are flattened so
    that large batches and steps converge in a few epochs. Batch size and step
    size are derived from the spectrum; nothing needs tuning but the kernel
    and its bandwidth.

    Parameters
    ----------%(params)s
    Attributes
    ----------%(attrs)s
    intercept_ : array of shape (n_outputs,)
        The training targets' mean, added to every prediction.

    See Also
    --------
    EigenProClassifier : Classification by one-hot regression.
    sklearn.kernel_ridge.KernelRidge : Exact solve, O(n^3) time and O(n^2) memory.

    References
    ----------
    .. [1] S. Ma and M. Belkin, "Diving into the shallows: a computational
       perspective on large-scale shallow learning", NeurIPS 2017.
    .. [2] S. Ma and M. Belkin, "Kernel machines that adapt to GPUs for
       effective large batch training", SysML 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from eigenpro import EigenProRegressor
    >>> rng = np.random.RandomState(0)
    >>> X = rng.uniform(size=(300, 3))
    >>> y = np.sin(4 * X[:, 0]) + X[:, 1]
    >>> reg = EigenProRegressor(bandwidth=0.5, n_epochs=20, random_state=0).fit(X, y)
    >>> bool(reg.score(X, y) > 0.99)
    True
    """

    @fit_context
    def fit(self, X, y, X_val=None, y_val=None):
        """Fit the kernel regression.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.
        X_val, y_val : array-like, default=None
            Optional validation data, scored (R^2) after every epoch into
            ``history_["val_score"]``; never used for training.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        return self._fit(X, y, X_val, y_val)

    def predict(self, X):
        """Predict with the kernel expansion ``sum_j coef_[j] k(x, centers_[j])``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_pred : array of shape (n_samples,) or (n_samples, n_outputs)
            In the array namespace and on the device of ``X``.
        """
        F, (xp, device) = self._predict_outputs(X, "predict")
        if self._target_info == "1d":
            F = F[:, 0]
        return to_namespace(F, xp, device)

    def _encode_targets(self, y, xp, device, dtype, comm):
        # centred: far from the data the kernel expansion falls to the mean, not to 0
        y = to_namespace(y, xp, device)
        info = "1d" if y.ndim == 1 else ("2d", int(y.shape[1]))
        comm.agree(f"{type(self).__name__}.fit", targets=list(info) if info != "1d" else info)
        Y = xp.astype(y[:, None] if y.ndim == 1 else y, dtype)
        if comm.distributed:  # the mean of all ranks' targets
            total = comm.all_reduce_sum(xp.sum(Y, axis=0), "Summing the targets")
            offset = total / float(comm.all_reduce_sum(int(Y.shape[0]), "Counting the targets"))
        else:
            offset = xp.mean(Y, axis=0)
        return EncodedTargets(Y - offset, info, offset=offset)

    def _score_outputs(self, F, y_val, targets):
        y_true = to_numpy(y_val).astype(np.float64)
        pred = to_numpy(F + targets.offset).astype(np.float64)
        pred = pred[:, 0] if y_true.ndim == 1 else pred
        return float(r2_score(y_true, pred))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class EigenProClassifier(ClassifierMixin, _BaseEigenPro):
    """Kernel classifier trained by EigenPro iteration (one-hot regression).

    Each class gets a one-hot target column; the kernel regression onto them
    is solved by EigenPro iteration (see :class:`EigenProRegressor`) and the
    predicted class is the column with the largest output.

    Parameters
    ----------%(params)s
    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.%(attrs)s
    See Also
    --------
    EigenProRegressor : The underlying kernel regression.

    References
    ----------
    .. [1] S. Ma and M. Belkin, "Diving into the shallows: a computational
       perspective on large-scale shallow learning", NeurIPS 2017.
    .. [2] S. Ma and M. Belkin, "Kernel machines that adapt to GPUs for
       effective large batch training", SysML 2019.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from eigenpro import EigenProClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = EigenProClassifier(n_epochs=3, random_state=0).fit(X[:1500] / 16, y[:1500])
    >>> bool(clf.score(X[1500:] / 16, y[1500:]) > 0.9)
    True
    """

    @fit_context
    def fit(self, X, y, X_val=None, y_val=None):
        """Fit the classifier.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,)
            Class labels (at least two classes).
        X_val, y_val : array-like, default=None
            Optional validation data, scored (accuracy) after every epoch into
            ``history_["val_score"]``; never used for training.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        return self._fit(X, y, X_val, y_val)

    def decision_function(self, X):
        """Kernel-regression outputs per class.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : array of shape (n_samples, n_classes), or (n_samples,) for two
            classes (positive for ``classes_[1]``). In the namespace of ``X``.
        """
        F, (xp, device) = self._predict_outputs(X, "decision_function")
        if F.shape[1] == 2:
            F = F[:, 1] - F[:, 0]
        return to_namespace(F, xp, device)

    def predict(self, X):
        """Predict class labels (the class with the largest output).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_pred : array of shape (n_samples,)
            In the namespace of ``X`` for numeric labels, NumPy otherwise.
        """
        F, (xp, device) = self._predict_outputs(X, "predict")
        cxp, _ = get_namespace_and_device(F)
        winners = cxp.argmax(F, axis=1)
        if self._classes_compute is not None:
            labels = cxp.take(self._classes_compute, winners, axis=0)
            return to_namespace(labels, xp, device)
        return self.classes_[to_numpy(winners)]

    def _encode_targets(self, y, xp, device, dtype, comm):
        y_host = to_numpy(y)
        with comm.raise_together(f"{type(self).__name__}.fit: checking the labels"):
            check_classification_targets(y_host)
        classes = np.unique(y_host)
        if comm.distributed:  # the union of all ranks' labels
            seen = comm.all_gather_json(classes.tolist(), "Gathering the ranks' labels")
            classes = np.unique(np.concatenate([np.asarray(v, dtype=classes.dtype) for v in seen]))
        codes = np.searchsorted(classes, y_host)
        if classes.shape[0] < 2:
            raise ValueError(
                f"The classifier needs samples of at least 2 classes; got 1 class ({classes[0]!r})."
            )
        numeric = classes.dtype.kind in "biuf"
        Y = np.zeros((codes.shape[0], classes.shape[0]), dtype=np.float64)
        Y[np.arange(codes.shape[0]), codes] = 1.0
        Y = xp.astype(to_namespace(Y, xp, device), dtype)
        return EncodedTargets(
            Y,
            ("classes", tuple(classes.tolist())),
            classes=classes,
            classes_compute=to_namespace(classes, xp, device) if numeric else None,
        )

    def _score_outputs(self, F, y_val, targets):
        winners = to_numpy(F).argmax(axis=1)
        return float(np.mean(targets.classes[winners] == to_numpy(y_val)))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        return tags


for _cls in (EigenProRegressor, EigenProClassifier):
    _cls.__doc__ = _cls.__doc__ % {"params": _PARAMS_DOC, "attrs": _ATTRS_DOC}


def _fingerprint(X):
    """A cheap summary of the training data, to recognise it for warm starts."""
    xp, _ = get_namespace_and_device(X)
    w = xp.astype(xp.arange(1, X.shape[0] + 1, device=get_namespace_and_device(X)[1]), X.dtype)
    return (tuple(X.shape), float(xp.sum(X)), float(xp.sum(w @ X)))


def _same_fingerprint(a, b):
    # sums may differ in the last bits between (threaded, GPU) reductions
    return a[0] == b[0] and all(
        abs(x - y) <= 1e-6 * max(abs(x), abs(y), 1.0) for x, y in zip(a[1:], b[1:], strict=True)
    )


def _as_float(X):
    """``X`` itself when it is float32/float64, else converted to float64."""
    xp, device = get_namespace_and_device(X)
    dtype = floating_dtype(xp, X, device)
    return X if dtype == X.dtype else xp.astype(X, dtype)


#: Rows the choice of ``bandwidth``/``alpha`` sees of a sharded fit (strided through all ranks').
CHOICE_ROWS = 2000


def _choice_rows(comm, counts, X, Y):
    """``X, Y`` for the choice of bandwidth and penalty: all of them in one process; a strided
    sample of at most ``CHOICE_ROWS`` rows of all ranks, on every rank alike, over several."""
    if not comm.distributed:
        return X, Y
    n = sum(counts)
    rows = np.arange(0, n, -(-n // CHOICE_ROWS))
    shard = Shard(X, Y, None, False, tuple(counts), comm.rank)
    return gather_rows(comm, shard, X, rows), gather_rows(comm, shard, Y, rows)
