# SPDX-License-Identifier: BSD-3-Clause
"""What ``torch.amp.GradScaler`` tells an optimizer inside ``step()``.

``GradScaler.step`` does not call ``step()`` when the gradients hold inf or
NaN, except for optimizers that unscale inside their kernel
(``fused=True``): for those it sets ``optimizer.found_inf`` and
``optimizer.grad_scale`` and calls ``step()``, which then changes nothing.
The sparse controllers read both so that a skipped step is not counted and a
statistic computed from the gradients sees them unscaled.
"""

from __future__ import annotations

__all__ = ["amp_grad_scale", "amp_step_skipped"]


def amp_step_skipped(optimizer):
    """Whether ``GradScaler`` has told ``optimizer`` to skip the current step.

    Reading the flag waits for the device; it happens only for fused
    optimizers (GradScaler itself syncs in the other mode).
    """
    found_inf = getattr(optimizer, "found_inf", None)
    return found_inf is not None and bool(found_inf)


def amp_grad_scale(optimizer):
    """The loss scale still in the gradients inside ``step()``, or None."""
    return getattr(optimizer, "grad_scale", None)
