# SPDX-License-Identifier: BSD-3-Clause
"""Array-level stochastic minimisation with line-search and Polyak step sizes.

:func:`minimize` runs epochs of minibatch steps on a finite-sum objective held
in NumPy, CuPy or torch arrays. One step (:func:`_one_step`; Vaswani et al.
2020, Alg. 1):

1. ``f0, g = fun(x, *batch)``;
2. preconditioner update and search direction ``d = A^-1 g``,
   ``pp = <g, d>``;
3. step size by :meth:`solvers.linesearch.config.SearchConfig.search`: fixed,
   Armijo or Goldstein backtracking along ``d`` from a reset, Polyak-capped
   first trial, or the stochastic Polyak step;
4. the move with the accepted step along the momentum direction
   (:mod:`solvers.linesearch.preconditioners`).

:func:`_epoch` runs the steps of one pass over shuffled minibatches and
summarises them; :func:`minimize` checks its inputs and loops over epochs.
For a :class:`solvers.GLMObjective` the trial losses come from the margins
(one extra matrix-vector product per step instead of a forward pass per trial).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from numbers import Real
from typing import Any, NamedTuple

import array_api_compat
import numpy as np
from scipy.optimize import OptimizeResult

from solvers._validation import check_int, check_positive
from solvers.glm import GLMObjective
from solvers.linesearch.config import SearchConfig, resolve_line_search
from solvers.linesearch.preconditioners import default_momentum, make_momentum, make_preconditioner
from solvers.linesearch.rules import Goldstein

__all__ = ["minimize"]

#: the per-epoch series of ``OptimizeResult.history``
HISTORY_KEYS = (
    "epoch",
    "loss",
    "step_size",
    "forwards_per_step",
    "backtracks",
    "skipped",
    "seconds",
)


class _Problem(NamedTuple):
    """What is minimised: the objective and the data, in one array namespace."""

    fun: Any
    value: Any
    data: tuple
    xp: Any
    glm: bool
    float_eps: float


class _Method(NamedTuple):
    """How a step is taken: direction, momentum, step-size search, largest step."""

    preconditioner: Any
    momentum: Any
    search: SearchConfig
    lr: float


@dataclass
class _Iterate:
    """The state carried from step to step."""

    x: Any
    preconditioner_state: dict
    momentum_state: dict
    step_size: float
    nit: int = 0
    nfev: int = 0
    njev: int = 0


class _StepReport(NamedTuple):
    loss: float
    step_size: float
    n_evals: int
    n_backtracks: int


def _batches(n, batch_size, shuffle, rng):
    order = rng.permutation(n) if shuffle else np.arange(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def _take(a, idx, xp):
    if isinstance(a, np.ndarray):
        return a[idx]
    return xp.take(a, xp.asarray(idx, device=array_api_compat.device(a)), axis=0)


def _trial_loss(problem, x, d, batch, z):
    """``eta -> f(x - eta d)`` on the batch; a GLM's line restriction is built on first use."""
    if problem.glm:
        phi = None

        def evaluate(eta):
            nonlocal phi
            if phi is None:
                phi = problem.fun.restrict_to_line(x, d, *batch, z)
            return phi(eta)

        return evaluate
    fun, value = problem.fun, problem.value

    def evaluate(eta):
        v = value(x - eta * d, *batch) if value else fun(x - eta * d, *batch)[0]
        return _scalar(v)

    return evaluate


def _scalar(v):
    """``float(v)``, also for a one-element array (NumPy no longer converts those)."""
    if tuple(getattr(v, "shape", ())) == (1,):
        v = v[0]
    return float(v)


def _loss_and_gradient(fun, x, batch):
    """``fun(x, *batch)``, checked to be a scalar loss and a gradient of ``x``'s shape."""
    out = fun(x, *batch)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise TypeError(f"fun must return a pair (loss, gradient); got {type(out).__name__}.")
    f, g = out
    if isinstance(f, bool) or not (isinstance(f, Real) or hasattr(f, "shape")):
        raise TypeError(
            f"fun must return the minibatch's mean loss as a number; got {type(f).__name__}."
        )
    if tuple(getattr(f, "shape", ())) not in ((), (1,)):
        raise ValueError(
            f"fun must return the minibatch's mean loss, a scalar; got shape {tuple(f.shape)}."
        )
    if tuple(getattr(f, "shape", ())) == (1,):
        f = _scalar(f)
    if tuple(getattr(g, "shape", (None,))) != tuple(x.shape):
        shape = tuple(g.shape) if hasattr(g, "shape") else type(g).__name__
        raise ValueError(
            f"the gradient fun returns must have x0's shape {tuple(x.shape)}; got {shape}."
        )
    return f, g


def _one_step(problem, method, it, batch, epoch):
    """One minibatch step from ``it`` (updated in place); raises on a non-finite loss."""
    xp = problem.xp
    if problem.glm:
        f0, g, z = problem.fun.value_grad_margins(it.x, *batch)
    else:
        (f0, g), z = _loss_and_gradient(problem.fun, it.x, batch), None
    f0 = float(f0)
    it.nfev += 1
    it.njev += 1
    if not math.isfinite(f0):
        raise ValueError(
            f"The loss is not finite ({f0}) at step {it.nit + 1} (epoch {epoch}); "
            "x holds the last point with a finite loss."
        )
    step = it.nit + 1
    p_new, inverse = method.preconditioner.update(it.preconditioner_state, g, step, xp)
    d = g if inverse is None else inverse * g
    pp = float(xp.vecdot(g, d))
    out = method.search.search(
        f0,
        pp,
        previous=it.step_size,
        eta_max=method.lr,
        eps=problem.float_eps,
        decrease=lambda eta: eta * pp,
        evaluate=_trial_loss(problem, it.x, d, batch, z),
    )
    it.nfev += out.n_evals
    it.step_size = out.next_step
    if out.status != "nonfinite_gradient":
        it.preconditioner_state = p_new
        it.momentum_state = method.momentum.update(it.momentum_state, g, step, xp)
        it.nit = step
    if out.step_size > 0.0:
        it.momentum_state, delta = method.momentum.displacement(
            it.momentum_state, g, inverse, out.step_size, step, xp
        )
        it.x = it.x + delta
    return _StepReport(f0, out.step_size, out.n_evals, out.n_backtracks)


def _epoch(problem, method, it, batches, epoch):
    """The steps of one epoch; ``(loss, step_size, forwards_per_step, backtracks, skipped)``."""
    reports = []
    for idx in batches:
        batch = tuple(_take(a, idx, problem.xp) for a in problem.data)
        reports.append(_one_step(problem, method, it, batch, epoch))
    steps = [r.step_size for r in reports if r.step_size > 0.0]
    forwards = sum(1 + r.n_evals for r in reports)
    return (
        float(np.mean([r.loss for r in reports])),
        float(np.median(steps)) if steps else 0.0,
        forwards / max(1, len(reports)),
        sum(r.n_backtracks for r in reports),
        len(reports) - len(steps),
    )


def _run_epochs(problem, method, it, batches, epochs, callback):
    """``(history, status, message)`` after up to ``epochs`` epochs (``batches()`` each)."""
    history = {k: [] for k in HISTORY_KEYS}
    seconds = 0.0
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        summary = _epoch(problem, method, it, batches(), epoch)
        seconds += time.perf_counter() - t0
        for key, v in zip(HISTORY_KEYS, (epoch, *summary, seconds), strict=True):
            history[key].append(v)
        if callback is not None:
            try:
                callback(OptimizeResult(x=it.x, fun=history["loss"][-1], epoch=epoch, nit=it.nit))
            except StopIteration:
                return history, 1, "Stopped by the callback."
    return history, 0, "Maximum number of epochs reached."


def _check_data(x0, data):
    """``(xp, x0, data, n)``: ``x0`` a real floating 1-D array, ``data`` a tuple of arrays."""
    xp = array_api_compat.array_namespace(x0)
    if x0.ndim != 1:
        raise ValueError(f"x0 must be one-dimensional, got shape {tuple(x0.shape)}.")
    if not xp.isdtype(x0.dtype, "real floating"):
        x0 = xp.astype(x0, xp.float64)
    data = tuple(data) if isinstance(data, (tuple, list)) else (data,)
    if not data:
        raise ValueError("data must hold at least one array.")
    for k, a in enumerate(data):
        if len(getattr(a, "shape", ())) == 0:
            what = "a 0-d array" if hasattr(a, "shape") else f"a {type(a).__name__}"
            raise ValueError(f"data[{k}] must be an array with one row per sample; got {what}.")
    n = int(data[0].shape[0])
    if n == 0:
        raise ValueError("data is empty (0 samples).")
    if any(int(a.shape[0]) != n for a in data):
        raise ValueError(f"data arrays have different lengths: {[int(a.shape[0]) for a in data]}.")
    return xp, x0, data, n


def _make_method(n_batches, *, preconditioner, momentum, lr, betas, eps, heavy_ball, **search):
    """The :class:`_Method` of a run from :func:`minimize`'s keywords (validated)."""
    lr = check_positive("lr", lr)
    if len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}.")
    # named as the caller spelled them (the preconditioner's own names are beta1/beta2)
    check_positive("betas[0]", betas[0], strict=False, upper=1.0, owner="minimize")
    check_positive("betas[1]", betas[1], strict=False, upper=1.0, owner="minimize")
    config = SearchConfig.from_settings(owner="minimize", n_batches_per_epoch=n_batches, **search)
    precond = make_preconditioner(preconditioner, beta2=betas[1], eps=eps)
    if momentum is None:
        momentum = default_momentum(precond)
    mom = make_momentum(momentum, beta1=betas[0], heavy_ball=heavy_ball)
    return _Method(precond, mom, config, lr)


def minimize(
    fun,
    x0,
    data,
    *,
    value=None,
    preconditioner="amsgrad",
    line_search="armijo",
    momentum=None,
    reset="grow",
    lr=100.0,
    c=None,
    beta_b=0.9,
    beta_f=2.0,
    betas=(0.9, 0.99),
    eps=1e-8,
    heavy_ball=0.25,
    gamma=2.0,
    max_backtracks=100,
    polyak_init=True,
    f_star=0.0,
    batch_size=100,
    epochs=10,
    shuffle=True,
    random_state=None,
    callback=None,
    step_rule=None,
):
    """Minimise ``1/n sum_i f_i(x)`` by adaptive minibatch steps with line search.

    Parameters
    ----------
    fun : callable
        ``fun(x, *batch) -> (f, g)``: minibatch loss and gradient. A
        :class:`solvers.GLMObjective` takes the fast path.
    x0 : array of shape (p,)
        Starting point (NumPy, CuPy or torch; the iterates keep its namespace,
        device and floating dtype).
    data : array or tuple of arrays
        Arrays sharing their first axis; each minibatch passes the selected
        rows of every array to ``fun``.
    value : callable, optional
        ``value(x, *batch) -> f`` for trial points (default: ``fun``'s loss).
    preconditioner, momentum, betas, eps, heavy_ball
        See :mod:`solvers.linesearch.preconditioners`; ``momentum`` defaults
        to ``"ema"`` for AMSGrad, ``"none"`` otherwise.
    line_search, reset, lr, c, beta_b, beta_f, gamma, max_backtracks, polyak_init, f_star
        See :class:`~solvers.linesearch.config.SearchConfig`; ``lr`` is the
        maximum and initial step (the step of ``"fixed"``), ``c`` defaults to
        0.5, the paper's setting for convex problems (0.1 for ``"goldstein"``,
        which needs ``c < 1/2``), ``"grow"`` multiplies the step by
        ``gamma ** (1 / n_batches)`` per step.
    batch_size, epochs : int, default=100, 10
    shuffle : bool, default=True
        A new random order of the samples every epoch.
    random_state : int, Generator or None
    callback : callable, optional
        ``callback(OptimizeResult(x, fun, epoch, nit))`` after every epoch;
        raising ``StopIteration`` ends the run.
    step_rule : deprecated
        The former name of ``line_search``.

    Returns
    -------
    OptimizeResult
        ``x``, ``fun`` (mean minibatch loss of the last epoch), ``nit``,
        ``nfev`` (trials included), ``njev``, ``n_epochs``, ``step_size``
        (last accepted), ``history`` (per epoch: ``loss``, ``step_size``
        (median accepted), ``forwards_per_step``, ``backtracks``, ``skipped``,
        ``seconds``), ``success``, ``status``, ``message``.

    Raises
    ------
    ValueError
        On bad hyperparameters or data, or a non-finite loss at the start of a
        step (``x`` is left at its last finite value, named in the message).

    Examples
    --------
    >>> import numpy as np
    >>> from solvers import GLMObjective, minimize
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 5))
    >>> y = np.sign(X @ np.ones(5))
    >>> res = minimize(GLMObjective("logistic"), np.zeros(5), (X, y), epochs=20,
    ...                random_state=0)
    >>> bool(np.mean(np.sign(X @ res.x) == y) > 0.97), res.n_epochs, res.njev
    (True, 20, 40)
    """
    xp, x0, data, n = _check_data(x0, data)
    if isinstance(fun, GLMObjective):
        fun.check_data(x0, *data)
    batch_size = check_int("batch_size", batch_size)
    epochs = check_int("epochs", epochs, minimum=0)
    line_search = resolve_line_search(line_search, step_rule)
    if c is None:  # Goldstein needs c < 1/2: its own default rather than Armijo's 0.5
        c = Goldstein().c if line_search == "goldstein" else 0.5
    method = _make_method(
        math.ceil(n / batch_size),
        preconditioner=preconditioner,
        momentum=momentum,
        lr=lr,
        betas=betas,
        eps=eps,
        heavy_ball=heavy_ball,
        line_search=line_search,
        c=c,
        beta_b=beta_b,
        beta_f=beta_f,
        max_backtracks=max_backtracks,
        reset=reset,
        gamma=gamma,
        polyak_init=polyak_init,
        f_star=f_star,
    )
    rng = np.random.default_rng(random_state)
    problem = _Problem(
        fun, value, data, xp, isinstance(fun, GLMObjective), float(xp.finfo(x0.dtype).eps)
    )
    x = xp.asarray(x0, copy=True)
    it = _Iterate(x, method.preconditioner.init(x, xp), method.momentum.init(x, xp), method.lr)
    history, status, message = _run_epochs(
        problem, method, it, lambda: _batches(n, batch_size, shuffle, rng), epochs, callback
    )
    return OptimizeResult(
        x=it.x,
        fun=history["loss"][-1] if history["loss"] else None,
        nit=it.nit,
        nfev=it.nfev,
        njev=it.njev,
        n_epochs=len(history["epoch"]),
        step_size=it.step_size,
        history=history,
        success=True,
        status=status,
        message=message,
    )
