# SPDX-License-Identifier: BSD-3-Clause
"""Identical masks on every data-parallel rank: :func:`broadcast_masks_`.

The mask decisions are already deterministic (DDP averages the gradients,
random scores come from a generator keyed on the step), so the broadcast is
a safety net that makes every rank's masks bit-identical.
"""

from __future__ import annotations

import torch

__all__ = ["SYNC_CHUNK", "broadcast_masks_"]

#: elements per mask broadcast (a uint8 buffer of 64 MiB)
SYNC_CHUNK = 1 << 26


def _broadcast_chunk_(chunk, src, group):
    import torch.distributed as dist

    buf = torch.cat([t.reshape(-1) for t in chunk]).to(torch.uint8)
    try:
        dist.broadcast(buf, src=src, group=group)
    except RuntimeError as err:
        raise RuntimeError(
            f"Broadcasting the sparse masks from rank {src} (torch.distributed.broadcast of "
            f"{len(chunk)} masks, {buf.numel()} elements) failed: another rank of the process "
            "group raised, exited or stalled past the group's timeout; the masks of this "
            f"broadcast are unchanged. Backend error: {err}"
        ) from err
    parts = buf.split([t.numel() for t in chunk])
    for t, part in zip(chunk, parts, strict=True):
        t.copy_(part.view(t.shape).bool())


def broadcast_masks_(tensors, group=None):
    """Broadcast boolean ``tensors`` in place from the first rank of ``group``.

    Does nothing outside an initialised process group of two ranks or more.
    Masks travel as ``uint8`` buffers, one per device and per
    :data:`SYNC_CHUNK` elements, in the same order on every rank: one
    collective per update for a model on one device.

    Parameters
    ----------
    tensors : list of torch.Tensor
        Boolean tensors, overwritten with the source rank's values.
    group : torch.distributed.ProcessGroup, optional
        Default: the world group.

    Raises
    ------
    RuntimeError
        A broadcast failed: another rank of the group raised, exited or
        stalled past the process group's timeout (``init_process_group(timeout=)``);
        the backend's error is chained as the cause. Waiting ranks raise it
        instead of hanging; the masks of the failed chunk are unchanged.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    if dist.get_world_size(group) < 2:
        return
    src = 0 if group is None else dist.get_global_rank(group, 0)
    by_device = {}
    for m in tensors:
        by_device.setdefault(m.device, []).append(m)
    for ms in by_device.values():
        chunk, size = [], 0
        for k, m in enumerate(ms):
            chunk.append(m)
            size += m.numel()
            if size >= SYNC_CHUNK or k == len(ms) - 1:
                _broadcast_chunk_(chunk, src, group)
                chunk, size = [], 0
