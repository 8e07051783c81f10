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
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
from scipy.optimize import OptimizeResult
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from eigenpro.kernels import make_kernel
from eigenpro.preconditioner import NystromPreconditioner, step_size_for_batch
from eigenpro.training_kernel import PackedKernel, make_training_kernel
from solvers.backend import (
    device_type,
    get_namespace_and_device,
    resolve_memory_budget,
    take_rows,
    to_namespace,
)

__all__ = ["eigenpro_solve"]

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


def default_subsample_size(n_samples, device=None, memory_budget=None):
    """Nyström subsample size: ``min(n, 2000)`` below 100k points, more above.

    2000 points make a dense eigendecomposition of about 1.5 s on two CPU
    cores; above 100k points 4000 (CPU) or 12000 (GPU) give the larger
    critical batch sizes that big data sets can use. With a memory budget the
    size is also capped so that the float64 ``s x s`` eigenproblem and its
    workspace (about four such matrices) fit in it.
    """
    if n_samples < 100_000:
        s = min(n_samples, 2000)
    else:
        s = min(n_samples, 12000 if device_type(device) == "cuda" else 4000)
    if memory_budget is not None:
        s = min(s, max(int(math.sqrt(memory_budget / 32.0)), 2))
    return s


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
    xp, device = get_namespace_and_device(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D; got shape {tuple(X.shape)}.")
    if not xp.isdtype(X.dtype, "real floating"):
        raise ValueError(f"X must have a floating dtype; got {X.dtype}.")
    n = X.shape[0]
    if n < 2:
        raise ValueError(f"EigenPro needs at least 2 samples; got n_samples={n}.")
    Y = to_namespace(Y, xp, device)
    vector_target = Y.ndim == 1
    Y2 = xp.astype(Y[:, None] if vector_target else Y, X.dtype)
    if Y2.shape[0] != n:
        raise ValueError(f"X has {n} samples but Y has {Y2.shape[0]}.")
    n_out = Y2.shape[1]
    _check_positive_int(n_epochs, "n_epochs")
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be a finite number >= 0; got {alpha!r}.")
    if step_size != "auto" and not (
        isinstance(step_size, (int, float)) and math.isfinite(step_size) and step_size > 0
    ):
        raise ValueError(f"step_size must be 'auto' or a positive number; got {step_size!r}.")
    if batch_size != "auto":
        _check_positive_int(batch_size, "batch_size")
    if subsample_size != "auto":
        _check_positive_int(subsample_size, "subsample_size")

    kern = make_kernel(kernel, bandwidth)
    if getattr(kern, "bandwidth", 0.0) is None:
        kern = kern.with_bandwidth(kern.default_bandwidth(X))
    rng = check_random_state(random_state)
    budget = resolve_memory_budget(memory_budget, xp, device)
    if subsample_size == "auto":
        s = default_subsample_size(n, device, budget)
    else:
        s = min(int(subsample_size), n)
    timings = {}

    # One random permutation: the Nyström subsample is the first s permuted
    # points, the held-out calibration set the next ones, and every batch a
    # contiguous block of the permuted data (visited in a new order each epoch).
    perm_host = rng.permutation(n)
    perm = xp.asarray(perm_host, dtype=xp.int64, device=device)
    inverse = xp.asarray(np.argsort(perm_host), dtype=xp.int64, device=device)
    Xp, Yp = take_rows(xp, X, perm), take_rows(xp, Y2, perm)

    # ---- preconditioner ------------------------------------------------ #
    t_mark = time.perf_counter()
    precond = NystromPreconditioner(n_components, damping).fit(
        kern(Xp[:s, :]), n_train=n, alpha=float(alpha), dtype=X.dtype
    )
    if n - s >= max(MIN_HELD_OUT, s // 10):  # calibrate lambda~_1 on other points
        X_h = Xp[s : s + min(s, n - s), :]
        precond.calibrate(kern(X_h), kern(X_h, Xp[:s, :]), n_train=n, alpha=float(alpha))
        del X_h
    timings["preconditioner"] = time.perf_counter() - t_mark
    beta, lam_tilde = precond.beta_, precond.preconditioned_eigenvalue_
    if batch_size == "auto":
        m = int(min(n, max(1, math.floor(precond.critical_batch_size_))))
    else:
        m = min(int(batch_size), n)
    if step_size != "auto":
        eta = float(step_size)
    elif m == n:  # full batches: no sampling noise, the gradient-descent step
        eta = max(step_size_for_batch(m, beta, lam_tilde), 1.0 / lam_tilde)
    else:
        eta = step_size_for_batch(m, beta, lam_tilde)

    def coordinate_step(batch):
        # eta / m for full batches; a smaller (last) batch gets the step the
        # rule gives its own size, so its per-point step is never larger.
        if batch == m or m == n:
            return eta / m
        return (
            eta
            / step_size_for_batch(m, beta, lam_tilde)
            * step_size_for_batch(batch, beta, lam_tilde)
            / batch
        )

    t_mark = time.perf_counter()
    if precompute_kernel != "auto":
        precompute_kernel = bool(precompute_kernel)
    K = make_training_kernel(
        kern, Xp, block_size=m, n_subsample=s, memory_budget=budget, precompute=precompute_kernel
    )
    timings["kernel_matrix"] = time.perf_counter() - t_mark
    stored = isinstance(K, PackedKernel)
    use_correction = precond.n_components_ > 0

    # ---- state (in permuted order) ------------------------------------- #
    if coef0 is None:
        coef = xp.zeros((n, n_out), dtype=X.dtype, device=device)
    else:
        coef0 = to_namespace(coef0, xp, device)
        coef0 = coef0[:, None] if coef0.ndim == 1 else coef0
        if tuple(coef0.shape) != (n, n_out):
            raise ValueError(f"coef0 must have shape {(n, n_out)}; got {tuple(coef0.shape)}.")
        coef = xp.astype(take_rows(xp, coef0, perm), X.dtype, copy=True)

    # Training MSE on the first blocks covering LOSS_SAMPLES permuted rows: a
    # fixed random subset, evaluated identically by both kernel paths.
    loss_rows = min(n, LOSS_SAMPLES)

    def train_mse(c):
        F = K.rows_matmul(loss_rows, c)
        R = F - Yp[: F.shape[0], :]
        if alpha:  # residual of the system solved, (K + alpha I) c = Y
            R = R + alpha * c[: F.shape[0], :]
        return float(xp.sum(R * R)) / (R.shape[0] * n_out)

    def original_order(c):
        c = take_rows(xp, c, inverse)
        return c[:, 0] if vector_target else c

    zero_mse = float(xp.sum(Y2 * Y2)) / (n * n_out)
    mse = train_mse(coef)
    mse0 = best_mse = mse
    last_coef = xp.asarray(coef, copy=True)  # of the last accepted epoch
    history = {"epoch": [0], "train_mse": [mse], "time": [time.perf_counter() - t_start]}
    callback_time = 0.0
    status, message = 0, "Completed all epochs."
    if verbose:
        print(
            f"[EigenPro] n={n} s={s} k={precond.n_components_} batch={m} step={eta:.4g} "
            f"kernel_stored={stored} setup={history['time'][0]:.2f}s train_mse={mse:.4e}",
            flush=True,
        )

    n_blocks = len(K.blocks)
    halvings = 0
    epoch = 0
    while epoch < n_epochs:
        epoch += 1
        diverged = False
        for r in _progress(rng.permutation(n_blocks), verbose, f"epoch {epoch}"):
            a, b = K.blocks[r]
            F, K_bs = K.row_block(int(r), coef)
            G = F - Yp[a:b, :]
            if alpha:
                G = G + alpha * coef[a:b, :]
            batch_mse = float(xp.sum(G * G)) / ((b - a) * n_out)
            if not math.isfinite(batch_mse) or batch_mse > DIVERGENCE_FACTOR * max(zero_mse, 1e-30):
                diverged = True
                break
            lr = coordinate_step(b - a)
            coef[a:b, :] = coef[a:b, :] - lr * G
            if use_correction:
                coef[:s, :] = coef[:s, :] + lr * precond.correction(K_bs.T @ G)
        if not diverged:
            mse = train_mse(coef)
            # The loss of EigenPro iteration decreases in expectation; a clear
            # rise over the best epoch is the slow form of divergence.
            # (Below 1e-6 of the zero model's error, rounding noise is no rise.)
            diverged = not math.isfinite(mse) or mse > RISE_FACTOR * best_mse + 1e-6 * zero_mse
        if diverged:
            halvings += 1
            if halvings > MAX_STEP_HALVINGS:
                raise RuntimeError(
                    "EigenPro diverged even after the step size was halved "
                    f"{MAX_STEP_HALVINGS} times; check the kernel (it must be positive "
                    "semi-definite) and the data for extreme values."
                )
            eta *= 0.5
            warnings.warn(
                f"EigenPro iteration diverged in epoch {epoch}; restarting the epoch with "
                f"step size {eta:.4g} (halved).",
                ConvergenceWarning,
                stacklevel=2,
            )
            coef = xp.asarray(last_coef, copy=True)
            epoch -= 1
            continue
        best_mse = min(best_mse, mse)
        last_coef = xp.asarray(coef, copy=True)
        elapsed = time.perf_counter() - t_start - callback_time
        history["epoch"].append(epoch)
        history["train_mse"].append(mse)
        history["time"].append(elapsed)
        if verbose:
            print(
                f"[EigenPro] epoch {epoch}/{n_epochs} train_mse={mse:.4e} time={elapsed:.2f}s",
                flush=True,
            )
        if callback is not None:
            t_cb = time.perf_counter()
            try:
                callback(
                    OptimizeResult(
                        x=original_order(coef),
                        fun=mse,
                        nit=epoch,
                        time=elapsed,
                        history=history,
                        kernel_bytes=K.nbytes,
                    )
                )
            except StopIteration:
                status, message = 99, "`callback` raised `StopIteration`."
                callback_time += time.perf_counter() - t_cb
                break
            callback_time += time.perf_counter() - t_cb
        if tol is not None and mse <= tol * mse0:
            message = f"Training MSE fell below tol * initial MSE after {epoch} epochs."
            break
    else:
        if tol is not None:
            status, message = (
                1,
                f"Training MSE did not fall below tol * initial within {n_epochs} epochs.",
            )
            warnings.warn(
                f"EigenPro did not reach tol={tol} in {n_epochs} epochs "
                f"(relative training MSE {mse / max(mse0, 1e-300):.3e}); increase n_epochs.",
                ConvergenceWarning,
                stacklevel=2,
            )

    return OptimizeResult(
        x=original_order(coef),
        fun=mse,
        nit=epoch,
        success=status in (0, 99),
        status=status,
        message=message,
        history=history,
        kernel=kern,
        bandwidth=getattr(kern, "bandwidth", None),
        batch_size=m,
        step_size=eta,
        preconditioner=precond,
        subsample=perm[:s],
        kernel_precomputed=stored,
        timings=timings,
    )


def _check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}.")


def _progress(iterable, verbose, desc):
    if verbose >= 2:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return iterable
        return tqdm(iterable, desc=desc, leave=False)
    return iterable
