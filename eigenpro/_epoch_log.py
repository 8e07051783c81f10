# SPDX-License-Identifier: BSD-3-Clause
"""What an EigenPro run reports per epoch: history, progress lines, callback, ``tol``.

:class:`EpochLog` keeps the ``history`` of :func:`eigenpro.solver.eigenpro_solve`'s
result (per-epoch lists ``epoch``, ``train_mse``, ``time``; epoch 0 is the
starting point and its time the set-up), calls the user's callback with a
:class:`scipy.optimize.OptimizeResult` (its own running time is not counted;
its ``checkpoint`` resumes the run, :class:`eigenpro._iteration.EigenProCheckpoint`),
and decides the run's ``status``: 0 (all epochs, or ``tol`` reached), 1 (``tol``
not reached, with a ``ConvergenceWarning``) or 99 (the callback raised
``StopIteration``).
"""

from __future__ import annotations

import time
import warnings

from scipy.optimize import OptimizeResult
from sklearn.exceptions import ConvergenceWarning

__all__ = ["EpochLog", "progress_bar"]


class EpochLog:
    """History, progress lines, callback and stopping rule of one run.

    Parameters
    ----------
    settings : eigenpro._iteration.SolverSettings
        Reads ``n_epochs``, ``tol``, ``callback`` and ``verbose``.
    plan : eigenpro._iteration.EigenProPlan
        The plan at the start (for the progress line).
    vector_target : bool
        Pass 1-D coefficients to the callback.
    t_start : float
        ``time.perf_counter()`` when the run started.
    mse0 : float
        Training MSE of the starting coefficients.
    checkpoint : eigenpro._iteration.EigenProCheckpoint, optional
        A resumed run's: its epoch, initial MSE and history are continued
        (times after it count from its last one).
    """

    def __init__(self, settings, plan, vector_target, t_start, mse0, checkpoint=None):
        self.settings, self.vector_target = settings, vector_target
        self.t_start = t_start
        self.mse0 = self.mse = mse0
        self.epoch = 0
        self.callback_time = self.time_offset = 0.0
        self.status, self.message = 0, "Completed all epochs."
        self.history = {"epoch": [0], "train_mse": [mse0], "time": [time.perf_counter() - t_start]}
        if checkpoint is not None:  # continue the interrupted run's counts, history and clock
            self.epoch, self.mse, self.mse0 = checkpoint.epoch, checkpoint.mse, checkpoint.mse0
            self.history = {k: list(v) for k, v in checkpoint.history.items()}
            self.time_offset = self.history["time"][-1]
        if settings.verbose:
            precond = plan.preconditioner
            print(
                f"[EigenPro] n={plan.n_samples} s={plan.subsample_size} "
                f"k={precond.n_components_} batch={plan.batch_size} step={plan.step_size:.4g} "
                f"kernel_stored={plan.kernel_precomputed} setup={self.history['time'][0]:.2f}s "
                f"train_mse={mse0:.4e}",
                flush=True,
            )

    def record(self, plan, epoch, mse, coef, checkpoint=None):
        """Log an accepted epoch; ``True`` when the run should stop (callback or ``tol``).

        ``checkpoint(x)`` makes the :class:`~eigenpro._iteration.EigenProCheckpoint`
        given to the callback (``x``: the coefficients in the caller's order).
        """
        settings = self.settings
        self.epoch, self.mse = epoch, mse
        elapsed = time.perf_counter() - self.t_start - self.callback_time + self.time_offset
        self.history["epoch"].append(epoch)
        self.history["train_mse"].append(mse)
        self.history["time"].append(elapsed)
        if settings.verbose:
            print(
                f"[EigenPro] epoch {epoch}/{settings.n_epochs} train_mse={mse:.4e} "
                f"time={elapsed:.2f}s",
                flush=True,
            )
        if settings.callback is not None and self._call_back(plan, coef, elapsed, checkpoint):
            return True
        return self.reached_tol()

    def reached_tol(self):
        """Whether the latest training MSE is below ``tol`` times the initial one."""
        tol = self.settings.tol
        if tol is not None and self.mse <= tol * self.mse0:
            self.message = f"Training MSE fell below tol * initial MSE after {self.epoch} epochs."
            return True
        return False

    def _call_back(self, plan, coef, elapsed, checkpoint):
        t_cb = time.perf_counter()
        try:
            x = plan.original_order(coef, self.vector_target)
            self.settings.callback(
                OptimizeResult(
                    x=x,
                    fun=self.mse,
                    nit=self.epoch,
                    time=elapsed,
                    history=self.history,
                    kernel_bytes=plan.stored_bytes,
                    centers=getattr(plan, "centers", None),
                    checkpoint=None if checkpoint is None else checkpoint(x),
                )
            )
        except StopIteration:
            self.status, self.message = 99, "`callback` raised `StopIteration`."
            return True
        finally:
            self.callback_time += time.perf_counter() - t_cb
        return False

    def ran_out(self, *, stacklevel=1):
        """All epochs ran without reaching ``tol``: status 1 and a ``ConvergenceWarning``.

        Nothing happens when ``tol`` is None. ``stacklevel`` counts frames as
        :func:`warnings.warn` does, from the caller (1 is the caller).
        """
        tol, n_epochs = self.settings.tol, self.settings.n_epochs
        if tol is None:
            return
        self.status = 1
        self.message = f"Training MSE did not fall below tol * initial within {n_epochs} epochs."
        warnings.warn(
            f"EigenPro did not reach tol={tol} in {n_epochs} epochs "
            f"(relative training MSE {self.mse / max(self.mse0, 1e-300):.3e}); "
            "increase n_epochs.",
            ConvergenceWarning,
            stacklevel=stacklevel + 1,
        )

    def result(self, plan, coef, checkpoint=None):
        """The run's :class:`scipy.optimize.OptimizeResult` (see ``eigenpro_solve``)."""
        x = plan.original_order(coef, self.vector_target)
        return OptimizeResult(
            x=x,
            fun=self.mse,
            nit=self.epoch,
            success=self.status in (0, 99),
            status=self.status,
            message=self.message,
            history=self.history,
            kernel=plan.kernel,
            bandwidth=getattr(plan.kernel, "bandwidth", None),
            batch_size=plan.batch_size,
            step_size=plan.step_size,
            preconditioner=plan.preconditioner,
            subsample=plan.subsample,
            kernel_precomputed=plan.kernel_precomputed,
            timings=plan.timings,
            checkpoint=None if checkpoint is None else checkpoint(x),
        )


def progress_bar(iterable, verbose, desc):
    """``iterable`` behind a tqdm progress bar when ``verbose >= 2`` and tqdm is installed."""
    if verbose >= 2:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return iterable
        return tqdm(iterable, desc=desc, leave=False)
    return iterable
