# SPDX-License-Identifier: BSD-3-Clause
"""Re-evaluating a training closure at trial points without side effects.

A line search calls the user's closure (``zero_grad``, forward, ``backward``,
``return loss``) once at the current point and then, forward only, at every
trial point. :class:`TrialEvaluator` makes those trial forwards *the same
function* as the first one and keeps them from touching anything else:

- **Randomness.** The global RNG state of the CPU and of every CUDA device
  holding parameters is saved before the first call; each trial restores it,
  so dropout draws the same masks; afterwards the state the first call left is
  put back, so the caller's random stream continues exactly as if a single
  forward pass had run (no wall-clock seeds, no reseeding, NumPy untouched).
- **Module buffers.** While trials run, global forward hooks snapshot the
  buffers of every module in training mode before its forward and restore
  them after (BatchNorm's running statistics and ``num_batches_tracked``
  change once per step, from the first forward only).
- **The first call's backward.** A closure may run ``backward`` itself or
  leave it to the optimizer, and may zero the gradients (to ``None`` or in
  place) or not. :func:`call_with_gradients` tells the cases apart by whether
  a backward accumulated into a parameter during the call (post-accumulate-grad
  hooks) or a new ``.grad`` tensor was assigned; in-place zeroing is neither.
  When none was, it clears ``.grad`` and runs the loss's backward, so the
  step's gradient is this loss's, never missing nor added to a previous one.
- **Gradients.** ``.grad`` fields are detached before a trial and put back
  after, and ``backward``, ``Module.zero_grad`` and ``Optimizer.zero_grad``
  are no-ops inside trials (they run under ``torch.no_grad()``), so the
  closure's ``zero_grad``/``backward`` neither cost a backward pass nor clobber
  the gradient of the step (nor those of parameters another optimizer owns).
- **Distributed.** With an initialised process group, every loss (first and
  trials) is averaged over ranks before any decision, so all ranks accept the
  same steps (one scalar all-reduce per forward). A rank that raises, exits
  or stalls makes the others raise ``RuntimeError`` (within the process
  group's timeout) instead of waiting for it.

Not thread-safe: ``Tensor.backward`` and the ``zero_grad`` methods are patched
for the duration of a trial.
"""

from __future__ import annotations

import contextlib
import weakref
from numbers import Real

import torch
from torch.nn.modules import module as _module

__all__ = [
    "GradientWrites",
    "TrialEvaluator",
    "average_over_ranks",
    "call_with_gradients",
    "check_loss",
    "distributed_group",
]


def _noop_backward(*args, **kwargs):
    return None


#: (owner, attribute) pairs that are no-ops inside a trial forward
_DISABLED = (
    (torch.Tensor, "backward"),
    (torch.autograd, "backward"),
    (torch.nn.Module, "zero_grad"),
    (torch.optim.Optimizer, "zero_grad"),
)


@contextlib.contextmanager
def _backward_disabled():
    saved = [(owner, name, getattr(owner, name)) for owner, name in _DISABLED]
    for owner, name, _ in saved:
        setattr(owner, name, _noop_backward)
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


@contextlib.contextmanager
def _buffers_frozen():
    saved = {}

    def pre(module, args):
        if module.training and module._buffers:
            saved[id(module)] = [(b, b.clone()) for b in module._buffers.values() if b is not None]

    def post(module, args, output):
        for b, copy in saved.pop(id(module), ()):
            b.copy_(copy)

    h_pre = _module.register_module_forward_pre_hook(pre)
    h_post = _module.register_module_forward_hook(post)
    try:
        yield
    finally:
        h_pre.remove()
        h_post.remove()
        # a forward that raised left its modules' snapshots behind: put them back too
        for entries in saved.values():
            for b, copy in entries:
                b.copy_(copy)


class GradientWrites:
    """Whether gradients were written to ``params`` inside a ``with`` block.

    A write is a backward that accumulated into a parameter's ``.grad`` (seen
    by a post-accumulate-grad hook, :meth:`torch.Tensor.register_post_accumulate_grad_hook`)
    or a new tensor assigned to ``.grad``. Zeroing is not: ``zero_grad()``
    sets ``.grad`` to ``None`` and ``zero_grad(set_to_none=False)`` changes it
    in place, and neither puts a gradient there. Only weak references to the
    old ``.grad`` tensors are kept, so a closure that frees them frees their memory.

    Attributes
    ----------
    written : bool
        Set once a write is seen; final when the block exits.
    """

    def __init__(self, params):
        self.params = list(params)
        self.written = False
        self._handles = []
        self._before = []

    def _seen(self, _param):
        self.written = True

    def __enter__(self):
        self.written = False
        self._before = [None if p.grad is None else weakref.ref(p.grad) for p in self.params]
        self._handles = [
            p.register_post_accumulate_grad_hook(self._seen) for p in self.params if p.requires_grad
        ]
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []
        for ref, p in zip(self._before, self.params, strict=True):
            if p.grad is not None and (ref is None or ref() is not p.grad):
                self.written = True
        self._before = []
        return False


def call_with_gradients(closure, params, *args, **kwargs):
    """``closure(*args, **kwargs)``, with the returned loss's gradient in ``params``' ``.grad``.

    A closure that wrote no gradient (see :class:`GradientWrites`) but returns
    a loss that requires grad left ``backward`` to the caller: its ``.grad``
    fields are set to ``None`` (a previous step's gradients, or the zeros of an
    in-place ``zero_grad``, are replaced rather than added to) and
    ``loss.backward()`` runs. Other losses (plain numbers, detached tensors)
    are returned as they are.
    """
    with GradientWrites(params) as writes:
        loss = closure(*args, **kwargs)
    if torch.is_tensor(loss) and loss.requires_grad and not writes.written:
        for p in params:
            p.grad = None
        with torch.enable_grad():
            loss.backward()
    return loss


def distributed_group(process_group):
    """``(group, world_size)`` when losses must be averaged across ranks, else ``(None, 1)``."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return None, 1
    world = dist.get_world_size(process_group)
    return (process_group, world) if world > 1 else (None, 1)


def average_over_ranks(value, group, world):
    """All-reduce a scalar tensor to its mean over ``world`` ranks (a new tensor).

    Raises
    ------
    RuntimeError
        The all-reduce failed: another rank of the group raised, exited or
        stalled past the process group's timeout (``init_process_group(timeout=)``).
        The backend's error (a closed connection, a timed-out receive) is
        chained as the cause. Raised inside a step, it leaves the parameters
        as they were before the step (the line search restores them).
    """
    if world > 1:
        import torch.distributed as dist

        value = value.clone()
        try:
            dist.all_reduce(value, op=dist.ReduceOp.SUM, group=group)
        except RuntimeError as err:
            raise RuntimeError(
                f"Averaging the line search's loss over {world} ranks "
                "(torch.distributed.all_reduce) failed: another rank of the process group "
                "raised, exited or stalled past the group's timeout; no step was taken and "
                f"the parameters are as before it. Backend error: {err}"
            ) from err
        value /= world
    return value


def check_loss(loss, source="The closure returned"):
    """``loss`` if it is one number (a real or a one-element tensor), else an error.

    ``None`` (a closure without ``return``) and per-sample losses (a
    ``reduction="none"`` loss) would otherwise fail deep inside the step.
    """
    if loss is None:
        raise ValueError(f"{source} None; it must return the loss.")
    if torch.is_tensor(loss):
        if loss.numel() != 1:
            raise ValueError(
                f"{source} a tensor of shape {tuple(loss.shape)}; the loss must be a "
                "scalar (reduce per-sample losses with .mean() or .sum())."
            )
        return loss
    if isinstance(loss, bool) or not isinstance(loss, Real):
        raise TypeError(
            f"{source} a {type(loss).__name__}; the loss must be a real number or a "
            "one-element tensor."
        )
    return loss


class TrialEvaluator:
    """Evaluate ``closure`` at the current point (with gradients) and at trial points.

    Parameters
    ----------
    params : list of Tensor
        The optimizer's parameters (their devices decide which RNGs are forked;
        their ``.grad`` fields are protected during trials).
    closure : callable
        The training closure.
    group, world : see :func:`distributed_group`.
    """

    def __init__(self, params, closure, group=None, world=1):
        self.params = params
        self.closure = closure
        self.group, self.world = group, world
        self.cuda_devices = sorted({p.device.index or 0 for p in params if p.device.type == "cuda"})
        self._before = self._after = None

    def _rng_state(self):
        return (
            torch.get_rng_state(),
            [torch.cuda.get_rng_state(i) for i in self.cuda_devices],
        )

    def _set_rng_state(self, state):
        cpu, cuda = state
        torch.set_rng_state(cpu)
        for i, s in zip(self.cuda_devices, cuda, strict=False):
            torch.cuda.set_rng_state(s, i)

    def first(self):
        """The closure at the current point, gradients enabled; returns its loss.

        The loss's gradient is in the parameters' ``.grad`` afterwards, whether the
        closure ran ``backward`` or left it (:func:`call_with_gradients`).
        """
        self._before = self._rng_state()
        with torch.enable_grad():
            loss = call_with_gradients(self.closure, self.params)
        self._after = self._rng_state()
        return check_loss(loss)

    def begin(self):
        """Fork the RNG without a first call (the loss was computed by the caller).

        Trials then all draw from the state at this point, and :meth:`finish`
        puts it back, so the caller's random stream is as if no trial had run.
        """
        self._before = self._after = self._rng_state()

    def __call__(self):
        """The loss at the parameters' current (trial) values, as a float64 tensor."""
        grads = [p.grad for p in self.params]
        for p in self.params:
            p.grad = None
        if self._before is not None:
            self._set_rng_state(self._before)
        try:
            with torch.no_grad(), _backward_disabled(), _buffers_frozen():
                loss = self.closure()
        finally:
            for p, g in zip(self.params, grads, strict=False):
                p.grad = g
        loss = torch.as_tensor(check_loss(loss)).detach().to(torch.float64)
        return average_over_ranks(loss, self.group, self.world)

    def finish(self):
        """Put back the RNG state the first call left."""
        if self._after is not None:
            self._set_rng_state(self._after)
