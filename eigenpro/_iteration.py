# SPDX-License-Identifier: BSD-3-Clause
"""The phases of :func:`eigenpro.solver.eigenpro_solve`, each usable and testable alone.

As FALKON splits ``fit`` into ``init_pc``, ``init_kernel_matrix`` and
``run_solver``, an EigenPro run is:

1. :class:`SolverSettings`: the scalar arguments, validated once (the
   argument bundle every phase reads);
2. :func:`check_inputs` -> :class:`TrainingData`: ``X``, ``Y`` and ``coef0``
   checked, ``Y`` made 2-D in ``X``'s dtype;
3. :func:`make_plan` -> :class:`EigenProPlan`: one random permutation of the
   points, the Nyström preconditioner (:func:`fit_preconditioner`), batch and
   step size (:func:`batch_and_step`) and the training matrix;
4. per epoch, :func:`run_epoch` (one pass over the batches, ``True`` when a
   batch diverged) and :func:`train_mse`, checked by a
   :class:`DivergenceGuard` that accepts the epoch or restarts it with half
   the step;
5. :class:`eigenpro._epoch_log.EpochLog`: history, progress lines, callback
   and ``tol``.

At every epoch boundary the state of the run is an :class:`EigenProCheckpoint`
(coefficients, permutation, generator state, step size, guard and history),
from which a run resumes bit for bit.

One iteration on a batch ``B`` of ``m`` points (Ma & Belkin 2017, 2019):

    g   = K_B a + alpha a_B - Y_B                   (m x l residual)
    a_B -= (eta / m) g                              (SGD on the batch)
    a_S += (eta / m) V D V^T K_SB g                 (EigenPro correction)
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, fields, replace
from typing import Any, NamedTuple

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from eigenpro.kernels import KERNEL_CONSTRAINT, Kernel, make_kernel
from eigenpro.preconditioner import NystromPreconditioner, step_size_for_batch
from eigenpro.training_matrix import (
    PackedTrainingMatrix,
    TrainingMatrix,
    make_training_matrix,
)
from solvers._validation import Integral, Real, StrOptions, interval, validate_params
from solvers.backend import (
    device_type,
    get_namespace_and_device,
    resolve_memory_budget,
    take_rows,
    to_namespace,
    to_numpy,
)
from solvers.linalg import check_squares_summable

__all__ = [
    "DIVERGENCE_FACTOR",
    "LOSS_SAMPLES",
    "MAX_STEP_HALVINGS",
    "MIN_HELD_OUT",
    "RISE_FACTOR",
    "SOLVER_CONSTRAINTS",
    "DivergenceGuard",
    "EigenProCheckpoint",
    "EigenProPlan",
    "SolverSettings",
    "TrainingData",
    "batch_and_step",
    "check_inputs",
    "coordinate_step",
    "default_subsample_size",
    "fit_preconditioner",
    "initial_coefficients",
    "make_plan",
    "plan_settings",
    "resolve_kernel",
    "resolve_subsample_size",
    "resume_plan",
    "run_epoch",
    "train_mse",
]

#: Training loss is measured on a fixed random subset of at most this many
#: points (an unbiased estimate that costs ~n/LOSS_SAMPLES less than a pass).
LOSS_SAMPLES = 4096
#: A batch whose mean squared residual exceeds this multiple of the zero
#: model's is taken as divergence: the epoch is restarted with half the step.
DIVERGENCE_FACTOR = 100.0
#: An epoch whose training MSE exceeds this multiple of the best so far is
#: also taken as divergence.
RISE_FACTOR = 1.5
MAX_STEP_HALVINGS = 30
#: Fewest held-out points for calibrating the preconditioned eigenvalue; with
#: fewer, the subsample covers almost all the data and its estimate stands.
MIN_HELD_OUT = 50

_AUTO = StrOptions({"auto"})

#: Constraints on :func:`eigenpro.solver.eigenpro_solve`'s scalar arguments
#: (the estimators declare the same ones).
SOLVER_CONSTRAINTS = {
    "kernel": KERNEL_CONSTRAINT,
    "bandwidth": [interval(Real, 0.0, None, closed="neither"), None],
    "alpha": [interval(Real, 0.0, None, closed="left")],
    "n_epochs": [interval(Integral, 1, None, closed="left")],
    "subsample_size": [interval(Integral, 1, None, closed="left"), _AUTO],
    "n_components": [interval(Integral, 0, None, closed="left"), _AUTO],
    "batch_size": [interval(Integral, 1, None, closed="left"), _AUTO],
    "step_size": [interval(Real, 0.0, None, closed="neither"), _AUTO],
    "damping": [interval(Real, 0.0, 1.0, closed="right")],
    "memory_budget": [interval(Real, 0.0, None, closed="neither"), _AUTO, None],
    "precompute_kernel": ["boolean", _AUTO],
    "tol": [interval(Real, 0.0, None, closed="neither"), None],
    "random_state": ["random_state"],
    "callback": [callable, None],
    "verbose": ["verbose"],
}


@dataclass(frozen=True)
class SolverSettings:
    """The scalar arguments of :func:`eigenpro.solver.eigenpro_solve`, validated when built.

    The fields and their meaning are ``eigenpro_solve``'s keyword arguments;
    an invalid one raises :class:`solvers._validation.InvalidParameterError`
    naming it.
    """

    kernel: Any = "gaussian"
    bandwidth: float | None = None
    alpha: float = 0.0
    n_epochs: int = 10
    subsample_size: int | str = "auto"
    n_components: int | str = "auto"
    batch_size: int | str = "auto"
    step_size: float | str = "auto"
    damping: float = 0.95
    memory_budget: Any = "auto"
    precompute_kernel: bool | str = "auto"
    tol: float | None = None
    random_state: Any = None
    callback: Any = None
    verbose: int = 0

    def __post_init__(self):
        params = {f.name: getattr(self, f.name) for f in fields(self)}
        validate_params(SOLVER_CONSTRAINTS, params, "eigenpro_solve")


class TrainingData(NamedTuple):
    """The checked arrays of one run, in the caller's order and ``X``'s namespace."""

    X: Any
    #: Targets of shape (n, n_outputs), in ``X``'s dtype.
    Y: Any
    #: Starting coefficients of shape (n, n_outputs), or None.
    coef0: Any
    #: ``Y`` was 1-D (the solution is returned 1-D too).
    vector_target: bool

    @property
    def n_samples(self):
        return self.X.shape[0]

    @property
    def n_outputs(self):
        return self.Y.shape[1]


def check_inputs(X, Y, coef0=None, *, min_rows=2):
    """Check the arrays of a run and bring ``Y`` and ``coef0`` to ``X``'s namespace.

    ``min_rows``: the fewest rows ``X`` may hold (a rank's share of a sharded
    run may hold one; the run checks the total).

    Returns
    -------
    TrainingData

    Raises
    ------
    ValueError
        ``X`` is not a 2-D floating array of at least 2 rows, ``Y`` or
        ``coef0`` do not match it, or any of them holds NaN or infinity (which
        would otherwise surface as a divergence after every step halving), or
        finite values whose squared distances (``X``) or squared errors
        (``Y``) overflow.
    """
    xp, device = get_namespace_and_device(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D; got shape {tuple(X.shape)}.")
    if not xp.isdtype(X.dtype, "real floating"):
        raise ValueError(f"X must have a floating dtype; got {X.dtype}.")
    n = X.shape[0]
    if n < min_rows:
        raise ValueError(f"EigenPro needs at least 2 samples; got n_samples={n}.")
    Y = to_namespace(Y, xp, device)
    vector_target = Y.ndim == 1
    Y2 = xp.astype(Y[:, None] if vector_target else Y, X.dtype)
    if Y2.shape[0] != n:
        raise ValueError(f"X has {n} samples but Y has {Y2.shape[0]}.")
    if coef0 is not None:
        coef0 = to_namespace(coef0, xp, device)
        coef0 = coef0[:, None] if coef0.ndim == 1 else coef0
        shape = (n, Y2.shape[1])
        if tuple(coef0.shape) != shape:
            raise ValueError(f"coef0 must have shape {shape}; got {tuple(coef0.shape)}.")
    for name, array in (("X", X), ("Y", Y2), ("coef0", coef0)):
        if array is not None and not bool(xp.all(xp.isfinite(array))):
            raise ValueError(f"{name} holds NaN or infinity; EigenPro needs finite values.")
    # squared distances sum d squares; the training MSE n * n_outputs of them
    check_squares_summable(X, "X", 4 * X.shape[1], "scale the features")
    check_squares_summable(Y2, "Y", Y2.shape[0] * Y2.shape[1], "scale the targets")
    return TrainingData(X, Y2, coef0, vector_target)


def default_subsample_size(n_samples, device=None, memory_budget=None):
    """Nyström subsample size: ``min(n, 2000)`` below 100k points, more above.

    2000 points make a dense eigendecomposition of about 1.5 s on two CPU
    cores; above 100k points 4000 (CPU) or 12000 (GPU) give the larger
    critical batch sizes that big data sets can use. With a memory budget the
    size is also capped so that the float64 ``s x s`` eigenproblem fits in it:
    six such matrices (``K_ss``, the eigensolver's float64 copy, LAPACK's own
    copy, two of workspace and the eigenvectors), measured in
    ``tests/eigenpro/test_memory.py``.
    """
    if n_samples < 100_000:
        s = min(n_samples, 2000)
    else:
        s = min(n_samples, 12000 if device_type(device) == "cuda" else 4000)
    if memory_budget is not None:
        s = min(s, max(int(math.sqrt(memory_budget / 48.0)), 2))
    return s


@dataclass(frozen=True)
class EigenProPlan:
    """Everything the epochs need, decided before the first one.

    The arrays are in permuted order: the Nyström subsample is the first
    ``subsample_size`` points and every batch a contiguous block of rows.
    """

    kernel: Kernel
    #: Points and targets (n, n_outputs) in permuted order.
    X: Any
    Y: Any
    #: ``X = X_caller[permutation]``; ``inverse`` undoes it.
    permutation: Any
    inverse: Any
    subsample_size: int
    preconditioner: NystromPreconditioner
    batch_size: int
    step_size: float
    matrix: TrainingMatrix
    alpha: float
    #: Mean squared target, the training MSE of the zero model.
    zero_mse: float
    #: Seconds of the set-up steps: ``preconditioner``, ``kernel_matrix``.
    timings: dict

    @property
    def kernel_precomputed(self):
        return isinstance(self.matrix, PackedTrainingMatrix)

    def coordinate_step(self, batch):
        """Step per point, ``eta / m``, for a batch of ``batch`` points.

        A smaller (last) batch gets the step the rule gives its own size,
        ``eta * eta(batch) / eta(m)``, stable for that size and never more than
        a full batch's ``eta``; per point it may exceed ``eta / m`` (past the
        critical batch size the rule's step stops growing with ``m``). Full
        batches keep ``eta / m``.
        """
        return coordinate_step(
            self.preconditioner, self.batch_size, self.step_size, self.X.shape[0], batch
        )

    @property
    def n_samples(self):
        return self.X.shape[0]

    @property
    def subsample(self):
        """Indices (in the caller's order) of the Nyström subsample."""
        return self.permutation[: self.subsample_size]

    @property
    def stored_bytes(self):
        """Bytes of the stored training kernel matrix (0 when it is streamed)."""
        return self.matrix.nbytes

    def halved(self):
        """This plan with half the step size."""
        return replace(self, step_size=self.step_size * 0.5)

    def original_order(self, coef, vector_target=False):
        """Coefficients back in the caller's order (1-D for a vector target)."""
        xp, _ = get_namespace_and_device(coef)
        coef = take_rows(xp, coef, self.inverse)
        return coef[:, 0] if vector_target else coef


def coordinate_step(precond, batch_size, step_size, n_samples, batch):
    """Step per point for a batch of ``batch`` points: :meth:`EigenProPlan.coordinate_step`."""
    m, eta = batch_size, step_size
    if batch == m or m == n_samples:
        return eta / m
    beta = precond.beta_
    lam_tilde = precond.preconditioned_eigenvalue_
    return (
        eta / step_size_for_batch(m, beta, lam_tilde) * step_size_for_batch(batch, beta, lam_tilde)
    ) / batch


def fit_preconditioner(kernel, X, n_subsample, settings, n_train=None):
    """The Nyström preconditioner of the first ``n_subsample`` rows of (permuted) ``X``.

    Its ``lambda~_1`` is re-estimated on up to ``n_subsample`` further points
    when there are enough of them (:meth:`NystromPreconditioner.calibrate`).
    ``n_train`` (default: the rows of ``X``) is the size of the training set
    the rows were drawn from, for the ridge shift and the batch-size cap.
    """
    n = X.shape[0] if n_train is None else n_train
    s, alpha = n_subsample, float(settings.alpha)
    precond = NystromPreconditioner(settings.n_components, settings.damping).fit(
        kernel(X[:s, :]), n_train=n, alpha=alpha, dtype=X.dtype
    )
    rest = X.shape[0] - s
    if rest >= max(MIN_HELD_OUT, s // 10):  # calibrate lambda~_1 on other points
        X_h = X[s : s + min(s, rest), :]
        precond.calibrate(
            kernel(X_h), kernel(X_h, X[:s, :]), n_train=n, alpha=alpha, overwrite=True
        )
    return precond


def batch_and_step(precond, n_samples, settings):
    """Batch size ``m`` and step size ``eta``: the user's, or EigenPro 2.0's rule.

    ``"auto"`` batch: the critical batch size ``beta / lambda~_1`` (at most
    ``n``); ``"auto"`` step: :func:`step_size_for_batch`, and for full
    batches at least the gradient-descent step ``1 / lambda~_1``.
    """
    n = n_samples
    beta, lam_tilde = precond.beta_, precond.preconditioned_eigenvalue_
    if settings.batch_size == "auto":
        m = int(min(n, max(1, math.floor(precond.critical_batch_size_))))
    else:
        m = min(int(settings.batch_size), n)
    if settings.step_size != "auto":
        eta = float(settings.step_size)
    elif m == n:  # full batches: no sampling noise, the gradient-descent step
        eta = max(step_size_for_batch(m, beta, lam_tilde), 1.0 / lam_tilde)
    else:
        eta = step_size_for_batch(m, beta, lam_tilde)
    return m, eta


def resolve_kernel(settings, X):
    """The settings' kernel, its bandwidth from ``X`` when none is given."""
    kernel = make_kernel(settings.kernel, settings.bandwidth)
    if getattr(kernel, "bandwidth", 0.0) is None:
        kernel = kernel.with_bandwidth(kernel.default_bandwidth(X))
    return kernel


def resolve_subsample_size(settings, n_samples, device, memory_budget):
    """The Nyström subsample size: the user's (at most ``n``) or :func:`default_subsample_size`."""
    if settings.subsample_size == "auto":
        return default_subsample_size(n_samples, device, memory_budget)
    return min(int(settings.subsample_size), n_samples)


def make_plan(settings, data, rng, permutation=None):
    """Kernel, permutation, preconditioner, batch and step size, training matrix.

    Draws one permutation of the points from ``rng`` (or takes
    ``permutation``, a run's :attr:`EigenProCheckpoint.permutation`, without
    drawing); the Nyström subsample is its first ``s`` points, the held-out
    calibration set the next ones.
    """
    xp, device = get_namespace_and_device(data.X)
    n = data.n_samples
    kernel = resolve_kernel(settings, data.X)
    budget = resolve_memory_budget(settings.memory_budget, xp, device)
    s = resolve_subsample_size(settings, n, device, budget)

    perm_host = rng.permutation(n) if permutation is None else permutation
    perm = xp.asarray(perm_host, dtype=xp.int64, device=device)
    inverse = xp.asarray(perm_host.argsort(), dtype=xp.int64, device=device)
    Xp, Yp = take_rows(xp, data.X, perm), take_rows(xp, data.Y, perm)

    timings = {}
    t_mark = time.perf_counter()
    precond = fit_preconditioner(kernel, Xp, s, settings)
    timings["preconditioner"] = time.perf_counter() - t_mark
    m, eta = batch_and_step(precond, n, settings)

    t_mark = time.perf_counter()
    precompute = settings.precompute_kernel
    matrix = make_training_matrix(
        kernel,
        Xp,
        block_size=m,
        n_subsample=s,
        memory_budget=budget,
        precompute=precompute if precompute == "auto" else bool(precompute),
    )
    timings["kernel_matrix"] = time.perf_counter() - t_mark
    return EigenProPlan(
        kernel=kernel,
        X=Xp,
        Y=Yp,
        permutation=perm,
        inverse=inverse,
        subsample_size=s,
        preconditioner=precond,
        batch_size=m,
        step_size=eta,
        matrix=matrix,
        alpha=settings.alpha,
        zero_mse=float(xp.sum(data.Y * data.Y)) / (n * data.n_outputs),
        timings=timings,
    )


@dataclass(frozen=True, eq=False)
class EigenProCheckpoint:
    """The state of an EigenPro run at an epoch boundary: enough to resume it bit for bit.

    The callback of :func:`eigenpro.solver.eigenpro_solve` gets one after every
    accepted epoch (``intermediate_result.checkpoint``) and the result holds
    the last one (``result.checkpoint``). ``eigenpro_solve(...,
    resume=checkpoint)`` with the same data and arguments (``n_epochs``
    counts all epochs, those before the checkpoint included) then runs the
    remaining epochs exactly as the uninterrupted run would have, from the
    same permutation, preconditioner, step size and random stream: the same
    coefficients, history and final generator state, bit for bit (on the
    same machine and library versions). It pickles (``pickle``,
    ``joblib``, ``torch.save``) with the arrays of the run's namespace.

    Attributes
    ----------
    epoch : int
        Epochs accepted so far.
    coef : array of shape (n_samples,) or (n_samples, n_outputs)
        The coefficients after ``epoch`` epochs, in the caller's order and
        namespace (the callback's ``x`` itself: copy it before changing it).
    permutation : ndarray of int64, shape (n_samples,)
        The run's permutation of the points (its Nyström subsample and batches).
    rng_state : tuple
        ``RandomState.get_state()`` after the epoch's draws: the next epoch's
        batch order is the next draw.
    step_size : float
        The step size in use (the plan's, halved once per divergence restart).
    halvings : int
        Divergence restarts so far (at most ``MAX_STEP_HALVINGS``).
    best_mse, mse, mse0 : float
        The lowest, the latest and the initial training MSE (``tol`` is
        relative to ``mse0``; the divergence guard to ``best_mse``).
    history : dict of list
        ``history`` of the run up to ``epoch`` (a copy).
    settings : dict
        What the plan resolved (``bandwidth``, ``batch_size``,
        ``subsample_size``, ``n_components``, ``step_size`` before halvings,
        ``alpha``, ``n_outputs``): a resumed run must resolve the same.
    """

    epoch: int
    coef: Any
    permutation: Any
    rng_state: tuple
    step_size: float
    halvings: int
    best_mse: float
    mse: float
    mse0: float
    history: dict
    settings: dict


def plan_settings(plan, n_outputs):
    """What a plan resolved from the arguments: :attr:`EigenProCheckpoint.settings`."""
    return {
        "bandwidth": getattr(plan.kernel, "bandwidth", None),
        "batch_size": plan.batch_size,
        "subsample_size": plan.subsample_size,
        "n_components": plan.preconditioner.n_components_,
        "step_size": plan.step_size,
        "alpha": plan.alpha,
        "n_outputs": n_outputs,
    }


def check_checkpoint(checkpoint, data, n_epochs, coef0):
    """The permutation of a checkpoint to resume from, checked against the run's data.

    Raises
    ------
    ValueError
        ``coef0`` is given too, the checkpoint is past ``n_epochs``, or its
        permutation or coefficients do not fit ``X`` and ``Y``.
    """
    if coef0 is not None:
        raise ValueError(
            "Give coef0 or resume, not both: resume starts from the checkpoint's coefficients."
        )
    n, shape = data.n_samples, (data.n_samples, data.n_outputs)
    if checkpoint.epoch > n_epochs:
        raise ValueError(
            f"The 'resume' checkpoint is at epoch {checkpoint.epoch}, past n_epochs={n_epochs} "
            "(n_epochs counts all epochs, those before the checkpoint included)."
        )
    perm = np.asarray(to_numpy(checkpoint.permutation))
    if perm.shape != (n,) or not np.array_equal(np.sort(perm), np.arange(n)):
        raise ValueError(
            f"The 'resume' checkpoint's permutation does not fit X: it is not a permutation "
            f"of {n} points (the checkpoint is from another data set)."
        )
    coef = checkpoint.coef
    coef_shape = tuple(coef.shape) if coef.ndim == 2 else (coef.shape[0], 1)
    if coef_shape != shape:
        raise ValueError(
            f"The 'resume' checkpoint's coefficients have shape {tuple(coef.shape)}; "
            f"X and Y need {shape}."
        )
    return perm.astype(np.int64, copy=False)


def check_resumed_plan(plan, checkpoint, n_outputs):
    """Raise ``ValueError`` unless ``plan`` resolved what the checkpoint's run did."""
    now = plan_settings(plan, n_outputs)
    differ = {k: (v, now.get(k)) for k, v in checkpoint.settings.items() if now.get(k) != v}
    if differ:
        listed = ", ".join(f"{k}={was!r} then, {got!r} now" for k, (was, got) in differ.items())
        raise ValueError(
            f"The 'resume' checkpoint is from a run with other settings ({listed}); "
            "resume with the arguments of the interrupted run."
        )


def resume_plan(settings, X, Y, coef0, random_state, checkpoint):
    """Data, generator and plan of a run resumed from ``checkpoint``.

    The plan takes the checkpoint's permutation (so its preconditioner is
    the interrupted run's) and step size; the generator is ``random_state``
    when it is a ``RandomState``, else a new one, set to the checkpoint's
    state; the data's ``coef0`` are the checkpoint's coefficients.

    Raises
    ------
    ValueError
        The checkpoint does not fit (:func:`check_checkpoint`,
        :func:`check_resumed_plan`).
    """
    permutation = check_checkpoint(checkpoint, check_inputs(X, Y), settings.n_epochs, coef0)
    data = check_inputs(X, Y, checkpoint.coef)
    rng = random_state if isinstance(random_state, np.random.RandomState) else None
    rng = np.random.RandomState(0) if rng is None else rng
    rng.set_state(checkpoint.rng_state)
    plan = make_plan(settings, data, rng, permutation)
    check_resumed_plan(plan, checkpoint, data.n_outputs)
    return data, rng, replace(plan, step_size=checkpoint.step_size)


def initial_coefficients(plan, data):
    """``coef0`` in permuted order (a copy in ``X``'s dtype), or zeros."""
    xp, device = get_namespace_and_device(data.X)
    if data.coef0 is None:
        return xp.zeros((data.n_samples, data.n_outputs), dtype=data.X.dtype, device=device)
    return xp.astype(take_rows(xp, data.coef0, plan.permutation), data.X.dtype, copy=True)


def train_mse(plan, coef):
    """Training MSE of the system ``(K + alpha I) coef = Y``, on a fixed subset.

    The subset is the first blocks covering ``LOSS_SAMPLES`` permuted rows: a
    fixed random subset, evaluated identically by both training matrices.
    """
    xp, _ = get_namespace_and_device(coef)
    F = plan.matrix.leading_matmul(min(plan.X.shape[0], LOSS_SAMPLES), coef)
    R = F - plan.Y[: F.shape[0], :]
    if plan.alpha:  # residual of the system solved, (K + alpha I) c = Y
        R = R + plan.alpha * coef[: F.shape[0], :]
    return float(xp.sum(R * R)) / (R.shape[0] * coef.shape[1])


def run_epoch(plan, coef, order):
    """One pass over the batches in ``order``, updating ``coef`` in place.

    Returns
    -------
    bool
        Whether a batch diverged: a non-finite mean squared residual, or one
        above ``DIVERGENCE_FACTOR`` times the zero model's. The pass stops at
        that batch, leaving ``coef`` half updated (restart from a copy).
    """
    xp, _ = get_namespace_and_device(coef)
    matrix, precond, alpha = plan.matrix, plan.preconditioner, plan.alpha
    s, n_outputs = plan.subsample_size, coef.shape[1]
    limit = DIVERGENCE_FACTOR * max(plan.zero_mse, 1e-30)
    for r in order:
        a, b = matrix.blocks[r]
        F, K_bs = matrix.batch_matmul(int(r), coef)
        G = F - plan.Y[a:b, :]
        if alpha:
            G = G + alpha * coef[a:b, :]
        batch_mse = float(xp.sum(G * G)) / ((b - a) * n_outputs)
        if not math.isfinite(batch_mse) or batch_mse > limit:
            return True
        lr = plan.coordinate_step(b - a)
        coef[a:b, :] = coef[a:b, :] - lr * G
        if precond.n_components_ > 0:
            coef[:s, :] = coef[:s, :] + lr * precond.correction(K_bs.T @ G)
    return False


class DivergenceGuard:
    """Accept an epoch, or restart it from the last accepted one with half the step.

    An epoch diverged when :func:`run_epoch` says so (a batch blew up) or when
    its training MSE is not finite or rises above ``RISE_FACTOR`` times the
    best so far: the loss of EigenPro iteration decreases in expectation, so a
    clear rise is the slow form of divergence. (Below ``1e-6`` of the zero
    model's error, rounding noise is no rise.)

    Parameters
    ----------
    coef : array
        The starting coefficients (copied).
    mse : float
        Their training MSE.
    zero_mse : float
        The zero model's training MSE.
    """

    def __init__(self, coef, mse, zero_mse):
        self.xp, _ = get_namespace_and_device(coef)
        self.last_coef = self.xp.asarray(coef, copy=True)
        self.best_mse = mse
        self.zero_mse = zero_mse
        self.halvings = 0

    def rose(self, mse):
        """Whether an epoch ending at training MSE ``mse`` diverged."""
        return not math.isfinite(mse) or mse > RISE_FACTOR * self.best_mse + 1e-6 * self.zero_mse

    def accept(self, coef, mse):
        """Record an accepted epoch (its coefficients are copied)."""
        self.best_mse = min(self.best_mse, mse)
        self.last_coef = self.xp.asarray(coef, copy=True)

    def restart(self, plan, epoch, *, stacklevel=1):
        """The plan with half the step and a copy of the last accepted coefficients.

        Warns (``ConvergenceWarning``; ``stacklevel`` counts frames as
        :func:`warnings.warn` does, from the caller: 1 is the caller). Raises
        ``RuntimeError`` after ``MAX_STEP_HALVINGS`` halvings.
        """
        self.halvings += 1
        if self.halvings > MAX_STEP_HALVINGS:
            raise RuntimeError(
                "EigenPro diverged even after the step size was halved "
                f"{MAX_STEP_HALVINGS} times; check the kernel (it must be positive "
                "semi-definite) and the data for extreme values."
            )
        plan = plan.halved()
        warnings.warn(
            f"EigenPro iteration diverged in epoch {epoch}; restarting the epoch with "
            f"step size {plan.step_size:.4g} (halved).",
            ConvergenceWarning,
            stacklevel=stacklevel + 1,
        )
        return plan, self.xp.asarray(self.last_coef, copy=True)
