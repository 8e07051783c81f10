# SPDX-License-Identifier: BSD-3-Clause
"""EigenPro iteration: preconditioned mini-batch SGD for kernel least squares.

Functional entry point :func:`eigenpro_solve`, returning a
:class:`scipy.optimize.OptimizeResult` and accepting a scipy-style callback.
The estimators in :mod:`eigenpro.estimators` are thin wrappers around it.

The problem (Ma & Belkin 2017, 2019): find coefficients ``a`` (n x l) of
``f(x) = sum_j a_j k(x, x_j)`` with ``(K + alpha I) a = Y``; ``alpha = 0`` is
the interpolating ("ridgeless") solution EigenPro was designed for. One
iteration on a batch ``B`` of ``m`` points:

    g   = K_B a + alpha a_B - Y_B                   (m x l residual)
    a_B -= (eta / m) g                              (SGD on the batch)
    a_S += (eta / m) V D V^T K_SB g                 (EigenPro correction)

The points are permuted once at random; a batch is a contiguous block of the
permuted points, and each epoch visits all blocks in a new random order.

:func:`eigenpro_solve` is a short driver over named phases, each testable
alone (:mod:`eigenpro._iteration`): validated settings, checked inputs, the
plan (preconditioner, batch and step size, training matrix), epochs checked
by a divergence guard, and the per-epoch log (:mod:`eigenpro._epoch_log`).
"""

from __future__ import annotations

import time

from sklearn.utils import check_random_state

from eigenpro._epoch_log import EpochLog, progress_bar
from eigenpro._iteration import (  # noqa: F401 (constants importable from here as before)
    DIVERGENCE_FACTOR,
    LOSS_SAMPLES,
    MAX_STEP_HALVINGS,
    MIN_HELD_OUT,
    RISE_FACTOR,
    DivergenceGuard,
    SolverSettings,
    check_inputs,
    default_subsample_size,
    initial_coefficients,
    make_plan,
    run_epoch,
    train_mse,
)

__all__ = ["eigenpro_solve"]


def eigenpro_solve(
    kernel,
    X,
    Y,
    *,
    bandwidth=None,
    alpha=0.0,
    n_epochs=10,
    subsample_size="auto",
    n_components="auto",
    batch_size="auto",
    step_size="auto",
    damping=0.95,
    memory_budget="auto",
    precompute_kernel="auto",
    coef0=None,
    tol=None,
    random_state=None,
    callback=None,
    verbose=0,
):
    """Solve ``(K + alpha I) coef = Y`` by EigenPro iteration.

    Parameters
    ----------
    kernel : str, eigenpro.kernels.Kernel or callable
        The kernel (see :func:`eigenpro.kernels.make_kernel`).
    X : array of shape (n_samples, n_features)
        Training points (also the centers of the solution), floating dtype,
        any array-API namespace; the computation runs there.
    Y : array of shape (n_samples,) or (n_samples, n_outputs)
        Targets.
    bandwidth : float, default=None
        Kernel bandwidth; None uses the kernel's own or its data-driven default.
    alpha : float, default=0.0
        Ridge regularisation (scikit-learn ``KernelRidge`` convention).
    n_epochs : int, default=10
        Passes over the data.
    subsample_size : int or "auto", default="auto"
        Nyström subsample size ``s`` (see :func:`default_subsample_size`).
    n_components : int or "auto", default="auto"
        Eigendirections the preconditioner flattens (0 turns EigenPro into
        plain mini-batch SGD on the kernel system).
    batch_size : int or "auto", default="auto"
        ``"auto"``: the critical batch size ``beta / lambda~_1`` (at most n).
    step_size : float or "auto", default="auto"
        ``"auto"``: the EigenPro 2.0 rule :func:`step_size_for_batch`.
    damping : float, default=0.95
        Damping exponent of the preconditioner.
    memory_budget : "auto", float or int, default="auto"
        Bytes for kernel blocks (see :func:`solvers.backend.resolve_memory_budget`).
    precompute_kernel : bool or "auto", default="auto"
        Store the kernel matrix (its upper triangle, n^2/2 entries) when it
        fits the budget; later epochs then cost O(n^2 l) instead of O(n^2 d).
        Both paths give the same iterates.
    coef0 : array of shape (n_samples, n_outputs), default=None
        Starting coefficients (zeros when None).
    tol : float, default=None
        Stop once the training mean squared error falls below ``tol`` times
        its initial value; a ``ConvergenceWarning`` is raised if ``n_epochs``
        pass first. None: run all epochs, no warning.
    random_state : int, RandomState or None, default=None
        Seeds the subsample and the batches.
    callback : callable, default=None
        ``callback(intermediate_result)`` after every epoch, with an
        ``OptimizeResult`` holding ``x`` (coefficients), ``fun`` (training
        MSE), ``nit`` (epoch) and ``time``. Raising ``StopIteration`` ends the
        run cleanly. Its own running time is not counted in ``history["time"]``.
    verbose : int, default=0
        1 prints one line per epoch; 2 also shows a progress bar over batches
        (needs ``tqdm``).

    Returns
    -------
    OptimizeResult
        ``x`` (coefficients, shaped like ``Y``), ``fun`` (final training MSE),
        ``nit`` (epochs run), ``success``, ``status``, ``message``,
        ``history`` (dict of per-epoch lists ``epoch``, ``train_mse``,
        ``time``; epoch 0 is the starting point and ``time`` its set-up),
        ``bandwidth``, ``kernel``, ``batch_size``, ``step_size``,
        ``preconditioner`` (the fitted :class:`NystromPreconditioner`),
        ``subsample`` (indices), ``kernel_precomputed``, ``timings`` (seconds
        of the set-up steps: ``preconditioner``, ``kernel_matrix``). The
        training MSE is measured on a fixed random subset of about
        ``LOSS_SAMPLES`` (4096) training points when n is larger.
    """
    t_start = time.perf_counter()
    settings = SolverSettings(
        kernel=kernel,
        bandwidth=bandwidth,
        alpha=alpha,
        n_epochs=n_epochs,
        subsample_size=subsample_size,
        n_components=n_components,
        batch_size=batch_size,
        step_size=step_size,
        damping=damping,
        memory_budget=memory_budget,
        precompute_kernel=precompute_kernel,
        tol=tol,
        random_state=random_state,
        callback=callback,
        verbose=verbose,
    )
    data = check_inputs(X, Y, coef0)
    rng = check_random_state(random_state)
    plan = make_plan(settings, data, rng)
    coef = initial_coefficients(plan, data)
    mse = train_mse(plan, coef)
    guard = DivergenceGuard(coef, mse, plan.zero_mse)
    log = EpochLog(settings, plan, data.vector_target, t_start, mse)
    epoch = 0
    while epoch < settings.n_epochs:
        order = rng.permutation(len(plan.matrix.blocks))
        diverged = run_epoch(plan, coef, progress_bar(order, verbose, f"epoch {epoch + 1}"))
        mse = None if diverged else train_mse(plan, coef)
        if diverged or guard.rose(mse):
            plan, coef = guard.restart(plan, epoch + 1, stacklevel=2)
            continue
        epoch += 1
        guard.accept(coef, mse)
        if log.record(plan, epoch, mse, coef):
            break
    else:
        log.ran_out(stacklevel=2)
    return log.result(plan, coef)
