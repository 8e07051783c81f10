# SPDX-License-Identifier: BSD-3-Clause
"""The random draws of the sparse methods, keyed on ``(seed, step)``.

Every draw (initial masks, SET growth, random pruning) comes from a fresh
generator seeded with ``(seed * 1_000_003 + step) mod (2^63 - 1)``, so every
DDP rank and a run resumed from a checkpoint draw the same numbers without
carrying a generator state around.
"""

from __future__ import annotations

import torch

__all__ = ["step_generator"]


def step_generator(seed, step, device="cpu"):
    """A ``torch.Generator`` on ``device`` seeded from ``(seed, step)``."""
    g = torch.Generator(device=device)
    g.manual_seed((int(seed) * 1_000_003 + int(step)) % (2**63 - 1))
    return g
