# SPDX-License-Identifier: BSD-3-Clause
"""Masking any ``torch.optim`` optimizer's element-wise state.

A masked weight must not move: its gradient is masked before the step, and
its optimizer state (momentum, Adam moments) is zeroed wherever the mask
changes. :data:`ZERO_PRESERVING` lists the optimizers whose step then leaves
a zero weight at exactly zero, so the weights need no re-masking after it.
"""

from __future__ import annotations

import torch

__all__ = ["ZERO_PRESERVING", "zero_optimizer_state_"]

#: optimizers whose step leaves a weight at 0 when its gradient and state are 0
#: (element-wise updates; weight decay proportional to the weight)
ZERO_PRESERVING = (
    torch.optim.SGD,
    torch.optim.Adam,
    torch.optim.AdamW,
    torch.optim.Adagrad,
    torch.optim.Adamax,
    torch.optim.NAdam,
    torch.optim.RAdam,
    torch.optim.RMSprop,
)


def zero_optimizer_state_(optimizer, param, keep):
    """Multiply every optimizer state tensor shaped like ``param`` by ``keep``.

    Works for any optimizer with element-wise state (SGD momentum, Adam/AdamW
    moments and ``max_exp_avg_sq``, ours), without reading private key names.
    A non-element-wise state tensor that happens to have the weight's shape
    (a square weight's full-matrix preconditioner) would be corrupted: such
    optimizers are not supported.
    """
    for v in optimizer.state.get(param, {}).values():
        if torch.is_tensor(v) and v.shape == param.shape and v.is_floating_point():
            v.mul_(keep.to(v.dtype))
