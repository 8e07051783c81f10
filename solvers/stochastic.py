# SPDX-License-Identifier: BSD-3-Clause
"""Array-level stochastic minimisation with line-search and Polyak step sizes.

:func:`minimize` runs epochs of minibatch steps on a finite-sum objective held
in NumPy, CuPy or torch arrays. One step (Vaswani et al. 2020, Alg. 1):

1. ``f0, g = fun(x, *batch)``;
2. preconditioner update and search direction ``d = A^-1 g``,
   ``pp = <g, d>``;
3. step size by the step rule (:mod:`solvers.step_size`): fixed, Armijo or
   Goldstein backtracking along ``d`` from a reset, Polyak-capped first trial,
   or the stochastic Polyak step;
4. the move with the accepted step along the momentum direction
   (:mod:`solvers.adaptive`).

For a :class:`solvers.GLMObjective` the trial losses come from the margins
(one extra matrix-vector product per step instead of a forward pass per trial).
"""

from __future__ import annotations

import math
import time

import array_api_compat
import numpy as np
from scipy.optimize import OptimizeResult

from solvers.adaptive import make_momentum, make_preconditioner
from solvers.glm import GLMObjective
from solvers.step_size import (
    check_int,
    check_positive,
    check_reset,
    make_step_rule,
    noise_tolerance,
    plan_step,
)


def _batches(n, batch_size, shuffle, rng):
    order = rng.permutation(n) if shuffle else np.arange(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def _take(a, idx, xp):
    if isinstance(a, np.ndarray):
        return a[idx]
    return xp.take(a, xp.asarray(idx, device=array_api_compat.device(a)), axis=0)


def minimize(
    fun,
    x0,
    data,
    *,
    value=None,
    preconditioner="amsgrad",
    step_rule="armijo",
    momentum=None,
    reset="grow",
    lr=100.0,
    c=0.5,
    beta_b=0.9,
    betas=(0.9, 0.99),
    eps=1e-8,
    gamma=2.0,
    max_backtracks=100,
    polyak_init=True,
    f_star=0.0,
    batch_size=100,
    epochs=10,
    shuffle=True,
    random_state=None,
    callback=None,
):
    """Minimise ``1/n sum_i f_i(x)`` by adaptive minibatch steps with line search.

    Parameters
    ----------
    fun : callable
        ``fun(x, *batch) -> (f, g)``: minibatch loss (scalar) and gradient
        (shape of ``x``). A :class:`solvers.GLMObjective` takes the fast path.
    x0 : array of shape (p,)
        Starting point (NumPy, CuPy or torch; the iterates keep its namespace,
        device and floating dtype).
    data : array or tuple of arrays
        Arrays sharing their first axis (``n`` samples); each minibatch passes
        the selected rows of every array to ``fun``.
    value : callable, optional
        ``value(x, *batch) -> f`` for trial points; without it trials call
        ``fun`` and discard the gradient.
    preconditioner : {"amsgrad", "adagrad", "identity"} or object
        See :mod:`solvers.adaptive`. ``betas[1]`` and ``eps`` configure the
        named ones.
    step_rule : {"armijo", "goldstein", "polyak", "fixed"} or StepRule
        See :mod:`solvers.step_size`; ``c``, ``beta_b`` and ``max_backtracks``
        configure the named ones.
    momentum : {"ema", "heavy_ball", "none"} or object, optional
        Default: ``"ema"`` (with ``betas[0]``) for AMSGrad, ``"none"`` otherwise.
    reset : {"grow", "conservative", "max"}
        First trial from the previous step: ``"grow"`` multiplies it by
        ``gamma ** (1 / n_batches)`` per step.
    lr : float, default=100.0
        Maximum step ``eta_max`` (and the fixed step of ``step_rule="fixed"``);
        the initial step.
    c : float, default=0.5
        Armijo / Goldstein / Polyak constant (0.5 is the paper's setting for
        convex problems).
    beta_b, max_backtracks, gamma, eps, betas
        See above and :mod:`solvers.step_size`.
    polyak_init : bool, default=True
        Cap the first trial at the Polyak step ``(f - f_star) / (c <g, d>)``.
    f_star : float, default=0.0
        Lower bound of every ``f_i`` used by the Polyak step and cap.
    batch_size : int, default=100
    epochs : int, default=10
    shuffle : bool, default=True
        A new random order of the samples every epoch.
    random_state : int, Generator or None
    callback : callable, optional
        ``callback(intermediate_result)`` after every epoch with an
        :class:`~scipy.optimize.OptimizeResult` (``x``, ``fun``, ``epoch``);
        raising ``StopIteration`` ends the run.

    Returns
    -------
    OptimizeResult
        ``x``, ``fun`` (mean minibatch loss of the last epoch), ``nit``
        (steps), ``nfev`` (loss evaluations, trials included), ``njev``
        (gradients), ``n_epochs``, ``step_size`` (last accepted),
        ``history`` (per epoch: ``loss``, ``step_size`` (median accepted),
        ``forwards_per_step``, ``backtracks``, ``skipped``, ``seconds``),
        ``success``, ``status``, ``message``.

    Raises
    ------
    ValueError
        On bad hyperparameters, data of mismatched lengths, or a non-finite
        loss at the start of a step (``x`` is left at its last finite value,
        named in the message).

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
    xp = array_api_compat.array_namespace(x0)
    if x0.ndim != 1:
        raise ValueError(f"x0 must be one-dimensional, got shape {tuple(x0.shape)}.")
    if not xp.isdtype(x0.dtype, "real floating"):
        x0 = xp.astype(x0, xp.float64)
    data = tuple(data) if isinstance(data, (tuple, list)) else (data,)
    if not data:
        raise ValueError("data must hold at least one array.")
    n = int(data[0].shape[0])
    if n == 0:
        raise ValueError("data is empty (0 samples).")
    if any(int(a.shape[0]) != n for a in data):
        raise ValueError(f"data arrays have different lengths: {[int(a.shape[0]) for a in data]}.")
    batch_size = check_int("batch_size", batch_size)
    epochs = check_int("epochs", epochs, minimum=0)
    lr = check_positive("lr", lr)
    gamma = check_positive("gamma", gamma)
    if gamma < 1.0:
        raise ValueError(f"gamma must be >= 1, got {gamma!r}.")
    reset = check_reset(reset)
    f_star = float(f_star)
    if len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}.")
    precond = make_preconditioner(preconditioner, beta2=betas[1], eps=eps)
    if momentum is None:
        momentum = "ema" if getattr(precond, "name", None) == "amsgrad" else "none"
    mom = make_momentum(momentum, beta1=betas[0])
    rule = make_step_rule(step_rule, c=c, beta_b=beta_b, max_backtracks=max_backtracks)
    rng = np.random.default_rng(random_state)
    glm = isinstance(fun, GLMObjective)
    float_eps = float(xp.finfo(x0.dtype).eps)

    x = xp.asarray(x0, copy=True)
    p_state = precond.init(x, xp)
    m_state = mom.init(x, xp)
    eta_prev = lr
    n_batches = math.ceil(n / batch_size)
    growth = gamma ** (1.0 / n_batches)
    nit = nfev = njev = 0
    history = {
        k: []
        for k in (
            "epoch",
            "loss",
            "step_size",
            "forwards_per_step",
            "backtracks",
            "skipped",
            "seconds",
        )
    }
    status, message = 0, "Maximum number of epochs reached."
    seconds = 0.0

    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        losses, steps, forwards, backtracks, skipped = [], [], 0, 0, 0
        for idx in _batches(n, batch_size, shuffle, rng):
            batch = tuple(_take(a, idx, xp) for a in data)
            if glm:
                f0, g, z = fun.value_grad_margins(x, *batch)
            else:
                f0, g = fun(x, *batch)
            f0 = float(f0)
            nfev += 1
            njev += 1
            forwards += 1
            if not math.isfinite(f0):
                raise ValueError(
                    f"The loss is not finite ({f0}) at step {nit + 1} (epoch {epoch}); "
                    "x holds the last point with a finite loss."
                )
            step = nit + 1
            p_new, inverse = precond.update(p_state, g, step, xp)
            d = g if inverse is None else inverse * g
            pp = float(xp.vecdot(g, d))
            eta0, why = plan_step(
                rule,
                f0=f0,
                pp=pp,
                previous=eta_prev,
                eta_max=lr,
                reset=reset,
                growth=growth,
                f_star=f_star,
                polyak_init=polyak_init,
                eps=float_eps,
            )
            losses.append(f0)
            if why is not None:
                skipped += 1
                if why != "nonfinite_gradient":
                    p_state, m_state, nit = p_new, mom.update(m_state, g, step, xp), step
                continue
            if rule.needs_trials:
                if glm:
                    evaluate = fun.restrict_to_line(x, d, *batch, z)
                else:

                    def evaluate(eta, x=x, d=d, batch=batch):
                        v = value(x - eta * d, *batch) if value else fun(x - eta * d, *batch)[0]
                        return float(v)
            else:
                evaluate = None
            out = rule.search(
                f0, eta0, lambda eta, pp=pp: eta * pp, evaluate, noise_tolerance(f0, float_eps), lr
            )
            nfev += out.n_evals
            forwards += out.n_evals
            backtracks += out.n_backtracks
            p_state, m_state, nit = p_new, mom.update(m_state, g, step, xp), step
            eta_prev = out.next_step
            if out.step_size > 0.0:
                m_state, delta = mom.displacement(m_state, g, inverse, out.step_size, step, xp)
                x = x + delta
                steps.append(out.step_size)
            else:
                skipped += 1
        seconds += time.perf_counter() - t0
        history["epoch"].append(epoch)
        history["loss"].append(float(np.mean(losses)))
        history["step_size"].append(float(np.median(steps)) if steps else 0.0)
        history["forwards_per_step"].append(forwards / max(1, len(losses)))
        history["backtracks"].append(backtracks)
        history["skipped"].append(skipped)
        history["seconds"].append(seconds)
        if callback is not None:
            try:
                callback(OptimizeResult(x=x, fun=history["loss"][-1], epoch=epoch, nit=nit))
            except StopIteration:
                status, message = 1, "Stopped by the callback."
                break

    return OptimizeResult(
        x=x,
        fun=history["loss"][-1] if history["loss"] else None,
        nit=nit,
        nfev=nfev,
        njev=njev,
        n_epochs=len(history["epoch"]),
        step_size=eta_prev,
        history=history,
        success=True,
        status=status,
        message=message,
    )
