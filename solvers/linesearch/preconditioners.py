# SPDX-License-Identifier: BSD-3-Clause
"""Diagonal preconditioners and momentum for line-search steps, on plain arrays.

A step with preconditioner ``A`` (diagonal, ``A^-1`` stored) and minibatch
gradient ``g`` searches along ``d = A^-1 g`` and then moves along the
momentum direction (Vaswani et al. 2020, Table 1 and Alg. 1):

- :class:`Identity`: ``A = I`` (SGD).
- :class:`AdaGrad`: ``v_k = v_{k-1} + g^2``, ``A = sqrt(v_k) + eps``.
- :class:`AMSGrad`: ``v_k = beta2 v_{k-1} + (1 - beta2) g^2``,
  ``vmax_k = max(vmax_{k-1}, v_k)``, ``A = sqrt(vmax_k / (1 - beta2^k)) + eps``
  (the maximum of the raw average, then the bias correction, as in
  ``torch.optim.Adam(amsgrad=True)`` and the reference code).

Momentum, applied after the step size is accepted:

- :class:`EMAMomentum` (AMSGrad's): ``m_k = beta1 m_{k-1} + (1 - beta1) g``,
  ``w_{k+1} = w_k - eta A^-1 m_k / (1 - beta1^k)``.
- :class:`HeavyBall`: ``w_{k+1} = w_k - eta A^-1 g + b (w_k - w_{k-1})`` with
  ``b`` the ``heavy_ball`` coefficient (the analysed heavy ball; the reference
  code's ``heavy_ball`` option is Nesterov's extrapolation instead). It used to
  be called ``gamma`` here, the name of the step growth factor elsewhere;
  ``gamma=`` is still accepted with a :class:`DeprecationWarning`.

The sums of squares start at the smallest normal number of the dtype instead
of 0: that changes ``A`` by less than 1e-19 (``eps`` is 1e-8) and keeps the
square root off subnormal inputs, which are ~30x slower on x86 CPUs (measured:
6.4 ms instead of 0.23 ms per step on a 535k-parameter MLP).

Each class has two implementations of its formula side by side, as
``torch.optim.Adam`` has its single-tensor and multi-tensor ones:

- on one array (NumPy, CuPy, torch) for :func:`solvers.minimize`:
  ``init``/``update``/``displacement``, out of place (the previous state is
  never modified, so a step that turns out to be invalid leaves it as it was);
- on lists of tensors with ``torch._foreach_*`` kernels for the optimizers of
  :mod:`solvers.torch.optim`: ``update_foreach`` (preconditioners, out of
  place), ``init_foreach``, ``update_foreach_`` and ``finish_foreach_``
  (momentum, in place on the optimizer's state). State keys are those of
  ``torch.optim`` (``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``) plus
  ``sum_sq`` and ``displacement``.

The operations differ slightly between the two (``g / A`` against
``(1 / A) g``, ``lerp`` against an explicit average), so the two paths agree
to rounding, not bit for bit; ``tests/solvers/linesearch`` checks that.
"""

from __future__ import annotations

import math
import warnings

from solvers._validation import check_options, check_positive

__all__ = [
    "MOMENTA",
    "PRECONDITIONERS",
    "AMSGrad",
    "AdaGrad",
    "EMAMomentum",
    "HeavyBall",
    "Identity",
    "NoMomentum",
    "default_momentum",
    "make_momentum",
    "make_preconditioner",
]

PRECONDITIONERS = ("identity", "adagrad", "amsgrad")
MOMENTA = ("ema", "heavy_ball", "none")


def _previous(params, states, key, fill):
    """Each state's ``key``, or a new tensor full of ``fill(p)`` where it has none."""
    import torch

    return [
        st[key] if key in st else torch.full_like(p, fill(p))
        for p, st in zip(params, states, strict=True)
    ]


def _tiny(p):
    import torch

    return torch.finfo(p.dtype).tiny


class Identity:
    """No preconditioning: ``d = g``."""

    name = "identity"

    def init(self, x, xp):
        return {}

    def update(self, state, g, step, xp):
        """``(new_state, inverse)``; ``inverse`` is None for the identity."""
        return state, None

    def update_foreach(self, params, grads, states, steps):
        """``(new_states, d, denom)``: ``d = A^-1 g`` per tensor, ``denom = A`` (None here).

        Out of place: ``states`` (the optimizer's, possibly empty dicts) are
        only read; the caller stores ``new_states`` once the step is valid.
        """
        return [{} for _ in states], grads, None


class AdaGrad:
    """``A = sqrt(sum_k g_k^2) + eps`` (no bias correction, eps outside the root)."""

    name = "adagrad"

    def __init__(self, eps=1e-8):
        self.eps = check_positive("eps", eps, strict=False)

    def init(self, x, xp):
        return {"sum_sq": xp.full_like(x, xp.finfo(x.dtype).smallest_normal)}

    def update(self, state, g, step, xp):
        sum_sq = state["sum_sq"] + g * g
        return {"sum_sq": sum_sq}, 1.0 / (xp.sqrt(sum_sq) + self.eps)

    def update_foreach(self, params, grads, states, steps):
        import torch

        sum_sq = torch._foreach_addcmul(_previous(params, states, "sum_sq", _tiny), grads, grads)
        denom = torch._foreach_sqrt(sum_sq)
        torch._foreach_add_(denom, self.eps)
        new = [{"sum_sq": t} for t in sum_sq]
        return new, torch._foreach_div(grads, denom), denom


class AMSGrad:
    """``A = sqrt(max_k v_k / (1 - beta2^k)) + eps`` with ``v`` an EMA of ``g^2``."""

    name = "amsgrad"

    def __init__(self, beta2=0.99, eps=1e-8):
        self.beta2 = check_positive("beta2", beta2, strict=False, upper=1.0)
        self.eps = check_positive("eps", eps, strict=False)

    def init(self, x, xp):
        tiny = xp.finfo(x.dtype).smallest_normal
        return {"exp_avg_sq": xp.zeros_like(x), "max_exp_avg_sq": xp.full_like(x, tiny)}

    def update(self, state, g, step, xp):
        v = self.beta2 * state["exp_avg_sq"] + (1.0 - self.beta2) * (g * g)
        vmax = xp.maximum(state["max_exp_avg_sq"], v)
        correction = 1.0 - self.beta2**step
        inverse = 1.0 / (xp.sqrt(vmax / correction) + self.eps)
        return {"exp_avg_sq": v, "max_exp_avg_sq": vmax}, inverse

    def update_foreach(self, params, grads, states, steps):
        import torch

        beta2 = self.beta2
        v = torch._foreach_mul(_previous(params, states, "exp_avg_sq", lambda p: 0.0), beta2)
        torch._foreach_addcmul_(v, grads, grads, value=1.0 - beta2)
        vmax = torch._foreach_maximum(_previous(params, states, "max_exp_avg_sq", _tiny), v)
        denom = torch._foreach_sqrt(vmax)
        torch._foreach_div_(denom, [math.sqrt(1.0 - beta2**k) for k in steps])
        torch._foreach_add_(denom, self.eps)
        new = [{"exp_avg_sq": a, "max_exp_avg_sq": b} for a, b in zip(v, vmax, strict=True)]
        return new, torch._foreach_div(grads, denom), denom


class NoMomentum:
    """Step along the search direction ``A^-1 g``."""

    name = "none"

    def init(self, x, xp):
        return {}

    def update(self, state, g, step, xp):
        return state

    def displacement(self, state, g, inverse, eta, step, xp):
        d = g if inverse is None else inverse * g
        return state, -eta * d

    def init_foreach(self, p):
        """The momentum's entries of a new parameter state."""
        return {}

    def update_foreach_(self, states, grads):
        """Fold the step's gradients into the momentum (in place, once the step is valid)."""

    def finish_foreach_(self, move, states, eta):
        """Put ``move``'s parameters at the step's final point (see ``_functional.GroupStep``)."""
        move.move_to(eta)


class EMAMomentum:
    """AMSGrad's first moment: step along ``A^-1 m_k / (1 - beta1^k)``."""

    name = "ema"

    def __init__(self, beta1=0.9):
        self.beta1 = check_positive("beta1", beta1, strict=False, upper=1.0)

    def init(self, x, xp):
        return {"exp_avg": xp.zeros_like(x)}

    def update(self, state, g, step, xp):
        return {"exp_avg": self.beta1 * state["exp_avg"] + (1.0 - self.beta1) * g}

    def displacement(self, state, g, inverse, eta, step, xp):
        m_hat = state["exp_avg"] / (1.0 - self.beta1**step)
        d = m_hat if inverse is None else inverse * m_hat
        return state, -eta * d

    def init_foreach(self, p):
        import torch

        return {"exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format)}

    def update_foreach_(self, states, grads):
        import torch

        torch._foreach_lerp_([st["exp_avg"] for st in states], grads, 1.0 - self.beta1)

    def finish_foreach_(self, move, states, eta):
        import torch

        move.move_to(0.0)
        m = [st["exp_avg"] for st in states]
        scales = [-eta / (1.0 - self.beta1 ** st["step"]) for st in states]
        if move.denom is not None:
            torch._foreach_addcdiv_(move.params, m, move.denom, scales)
        else:
            torch._foreach_add_(move.params, torch._foreach_mul(m, scales))


def _heavy_ball_coefficient(coefficient, gamma, owner, default=0.25):
    """``coefficient``, or the deprecated ``gamma`` when only that one was given."""
    if gamma is None:
        return coefficient
    if coefficient != default:
        raise TypeError(
            f"{owner} got both heavy_ball and its deprecated name gamma; pass heavy_ball."
        )
    warnings.warn(
        f"{owner}(gamma=...) is deprecated: gamma names the step growth factor elsewhere; "
        "use heavy_ball=... for the heavy-ball coefficient.",
        DeprecationWarning,
        stacklevel=3,
    )
    return gamma


class HeavyBall:
    """``w_{k+1} = w_k - eta A^-1 g + heavy_ball (w_k - w_{k-1})``.

    Parameters
    ----------
    heavy_ball : float in [0, 1), default=0.25
        The coefficient of the previous displacement.
    gamma : float, optional
        Deprecated name of ``heavy_ball``.
    """

    name = "heavy_ball"

    def __init__(self, heavy_ball=0.25, *, gamma=None):
        heavy_ball = _heavy_ball_coefficient(heavy_ball, gamma, "HeavyBall")
        self.heavy_ball = check_positive("heavy_ball", heavy_ball, strict=False, upper=1.0)

    @property
    def gamma(self):
        """Deprecated name of :attr:`heavy_ball`."""
        warnings.warn(
            "HeavyBall.gamma is deprecated; read HeavyBall.heavy_ball.", DeprecationWarning, 2
        )
        return self.heavy_ball

    def __setstate__(self, state):
        # objects pickled before the rename stored the coefficient as ``gamma``
        if "gamma" in state:
            state = dict(state)
            state["heavy_ball"] = state.pop("gamma")
        self.__dict__.update(state)

    def init(self, x, xp):
        return {"displacement": xp.zeros_like(x)}

    def update(self, state, g, step, xp):
        return state

    def displacement(self, state, g, inverse, eta, step, xp):
        d = g if inverse is None else inverse * g
        delta = self.heavy_ball * state["displacement"] - eta * d
        return {"displacement": delta}, delta

    def init_foreach(self, p):
        import torch

        return {"displacement": torch.zeros_like(p, memory_format=torch.preserve_format)}

    def update_foreach_(self, states, grads):
        pass

    def finish_foreach_(self, move, states, eta):
        import torch

        move.move_to(0.0)
        delta = [st["displacement"] for st in states]
        torch._foreach_mul_(delta, self.heavy_ball)
        torch._foreach_add_(delta, move.d, alpha=-eta)
        torch._foreach_add_(move.params, delta)


def make_preconditioner(preconditioner, *, beta2=0.99, eps=1e-8):
    """A preconditioner object from a name in :data:`PRECONDITIONERS` (or the object)."""
    if not isinstance(preconditioner, str):
        return preconditioner
    if preconditioner == "identity":
        return Identity()
    if preconditioner == "adagrad":
        return AdaGrad(eps=eps)
    if preconditioner == "amsgrad":
        return AMSGrad(beta2=beta2, eps=eps)
    raise ValueError(f"preconditioner must be one of {PRECONDITIONERS}, got {preconditioner!r}.")


def default_momentum(preconditioner):
    """AMSGrad's own first moment (``"ema"``) for AMSGrad, ``"none"`` otherwise (the paper's)."""
    name = (
        preconditioner if isinstance(preconditioner, str) else getattr(preconditioner, "name", None)
    )
    return "ema" if name == "amsgrad" else "none"


def make_momentum(momentum, *, beta1=0.9, heavy_ball=0.25, gamma=None):
    """A momentum object from a name in :data:`MOMENTA` (or the object); ``gamma`` is deprecated."""
    heavy_ball = _heavy_ball_coefficient(heavy_ball, gamma, "make_momentum")
    if momentum is None or momentum == "none":
        return NoMomentum()
    if not isinstance(momentum, str):
        return momentum
    check_options("momentum", momentum, MOMENTA)
    if momentum == "ema":
        return EMAMomentum(beta1)
    return HeavyBall(heavy_ball)
