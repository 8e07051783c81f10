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

import numpy as np
from sklearn.utils import check_random_state

from eigenpro._epoch_log import EpochLog, progress_bar
from eigenpro._iteration import (  # noqa: F401 (constants importable from here as before)
    DIVERGENCE_FACTOR,
    LOSS_SAMPLES,
    MAX_STEP_HALVINGS,
    MIN_HELD_OUT,
    RISE_FACTOR,
    DivergenceGuard,
    EigenProCheckpoint,
    SolverSettings,
    check_inputs,
    default_subsample_size,
    initial_coefficients,
    make_plan,
    plan_settings,
    resume_plan,
    run_epoch,
    train_mse,
)
from solvers._validation import validate_params
from solvers.backend import to_numpy

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
    resume=None,
    process_group=None,
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
        Starting coefficients (zeros when None). A warm start: the new run
        draws its own permutation and batch orders; to continue a run
        exactly, use ``resume``.
    tol : float, default=None
        Stop once the training mean squared error falls below ``tol`` times
        its initial value; a ``ConvergenceWarning`` is raised if ``n_epochs``
        pass first. None: run all epochs, no warning.
    random_state : int, RandomState or None, default=None
        Seeds the subsample and the batches.
    callback : callable, default=None
        ``callback(intermediate_result)`` after every epoch, with an
        ``OptimizeResult`` holding ``x`` (coefficients), ``fun`` (training
        MSE), ``nit`` (epoch), ``time`` and ``checkpoint`` (an
        :class:`EigenProCheckpoint` to save and resume from). Raising
        ``StopIteration`` ends the run cleanly. Its own running time is not
        counted in ``history["time"]``.
    verbose : int, default=0
        1 prints one line per epoch; 2 also shows a progress bar over batches
        (needs ``tqdm``).
    resume : EigenProCheckpoint, default=None
        Continue an interrupted run from a checkpoint its callback received
        (or from its result's ``checkpoint``), called with the same data and
        arguments, ``n_epochs`` counting all epochs: the remaining epochs run
        from the checkpoint's coefficients, permutation, step size and
        generator state, so the result (coefficients, ``history``, final
        generator state) is the uninterrupted run's, bit for bit. The
        generator is ``random_state`` when it is a ``RandomState`` (set to the
        checkpoint's state), else a new one; ``coef0`` must be None. A
        checkpoint whose permutation, coefficients or resolved settings
        (bandwidth, batch and step size, ...) do not fit raises ``ValueError``.

    process_group : None, "world" or torch.distributed.ProcessGroup, default=None
        Fit on the rows of all ranks of the group: every rank passes its own
        rows of ``X``, ``Y`` (and ``coef0``), with the same other arguments,
        and gets its own rows' coefficients (see
        :func:`eigenpro.sharded.sharded_eigenpro_solve`). The kernel matrix
        is then never stored.

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
        of the set-up steps: ``preconditioner``, ``kernel_matrix``),
        ``checkpoint`` (the run's :class:`EigenProCheckpoint` at its last
        epoch: resume from it with a larger ``n_epochs`` to train on). The
        training MSE is measured on a fixed random subset of about
        ``LOSS_SAMPLES`` (4096) training points when n is larger.

    Examples
    --------
    Stop a run after two of four epochs, keeping the callback's checkpoint
    (it pickles), and resume: the result is the uninterrupted run's.

    >>> import numpy as np
    >>> from eigenpro.solver import eigenpro_solve
    >>> X = np.random.default_rng(0).uniform(size=(300, 3))
    >>> y = np.sin(4 * X[:, 0])
    >>> kw = dict(bandwidth=0.5, n_epochs=4, batch_size=50, random_state=0)
    >>> saved = []
    >>> def stop_after_two(result):
    ...     saved.append(result.checkpoint)
    ...     if result.nit == 2:
    ...         raise StopIteration
    >>> part = eigenpro_solve("gaussian", X, y, callback=stop_after_two, **kw)
    >>> resumed = eigenpro_solve("gaussian", X, y, resume=saved[-1], **kw)
    >>> full = eigenpro_solve("gaussian", X, y, **kw)
    >>> part.nit, resumed.nit, bool(np.array_equal(resumed.x, full.x))
    (2, 4, True)
    """
    if process_group is not None:
        from eigenpro.sharded import sharded_eigenpro_solve

        return sharded_eigenpro_solve(
            kernel, X, Y, process_group=process_group, bandwidth=bandwidth, alpha=alpha,
            n_epochs=n_epochs, subsample_size=subsample_size, n_components=n_components,
            batch_size=batch_size, step_size=step_size, damping=damping,
            memory_budget=memory_budget, coef0=coef0, tol=tol, random_state=random_state,
            callback=callback, verbose=verbose, resume=resume,
        )  # fmt: skip
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
    validate_params({"resume": [EigenProCheckpoint, None]}, {"resume": resume}, "eigenpro_solve")
    if resume is None:
        data = check_inputs(X, Y, coef0)
        rng = check_random_state(random_state)
        plan = make_plan(settings, data, rng)
        started = plan_settings(plan, data.n_outputs)
    else:
        data, rng, plan = resume_plan(settings, X, Y, coef0, random_state, resume)
        started = resume.settings
    coef = initial_coefficients(plan, data)
    mse = train_mse(plan, coef)
    guard = DivergenceGuard(coef, mse, plan.zero_mse)
    log = EpochLog(settings, plan, data.vector_target, t_start, mse, resume)
    if resume is not None:
        guard.best_mse, guard.halvings = resume.best_mse, resume.halvings
    permutation = np.array(to_numpy(plan.permutation))
    permutation.flags.writeable = False

    def checkpoint(x):
        return EigenProCheckpoint(
            epoch=log.epoch,
            coef=x,
            permutation=permutation,
            rng_state=rng.get_state(),
            step_size=plan.step_size,
            halvings=guard.halvings,
            best_mse=guard.best_mse,
            mse=log.mse,
            mse0=log.mse0,
            history={k: list(v) for k, v in log.history.items()},
            settings=dict(started),
        )

    if resume is not None and log.reached_tol():  # the interrupted run stopped here
        return log.result(plan, coef, checkpoint)
    epoch = log.epoch
    while epoch < settings.n_epochs:
        order = rng.permutation(len(plan.matrix.blocks))
        diverged = run_epoch(plan, coef, progress_bar(order, verbose, f"epoch {epoch + 1}"))
        mse = None if diverged else train_mse(plan, coef)
        if diverged or guard.rose(mse):
            plan, coef = guard.restart(plan, epoch + 1, stacklevel=2)
            continue
        epoch += 1
        guard.accept(coef, mse)
        if log.record(plan, epoch, mse, coef, checkpoint):
            break
    else:
        log.ran_out(stacklevel=2)
    return log.result(plan, coef, checkpoint)
