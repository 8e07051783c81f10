# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch.sparse.distributed: the mask broadcast, by device, chunk and group."""

import datetime
import os

import torch
from torch import nn

from solvers.torch import DynamicSparsity
from solvers.torch.sparse import distributed
from solvers.torch.sparse.distributed import broadcast_masks_


def test_mask_broadcast_groups_by_device_and_chunks(monkeypatch):
    # a stubbed 2-rank world: "rank 0" sends all-True masks; masks on two devices
    # ("meta" stands in for a second GPU) go in separate buffers of at most SYNC_CHUNK
    import torch.distributed as dist

    calls = []

    def broadcast(buf, src, group=None):
        calls.append((buf.device.type, buf.numel(), src))
        if buf.device.type == "cpu":
            buf.fill_(1)

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(dist, "broadcast", broadcast)
    monkeypatch.setattr(distributed, "SYNC_CHUNK", 5)
    cpu = [torch.zeros(n, dtype=torch.bool) for n in (3, 3, 4)]
    meta = [torch.zeros(2, 2, dtype=torch.bool, device="meta")]
    broadcast_masks_([cpu[0], meta[0], cpu[1], cpu[2]])
    assert calls == [("cpu", 6, 0), ("cpu", 4, 0), ("meta", 4, 0)]
    assert all(bool(m.all()) for m in cpu)


def test_broadcast_without_a_process_group_changes_nothing():
    masks = [torch.zeros(3, dtype=torch.bool)]
    broadcast_masks_(masks)
    assert not masks[0].any()


def _subgroup_worker(rank, world, init_file, out_dir, model, data):
    import torch.distributed as dist

    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
        timeout=datetime.timedelta(seconds=60),
    )  # fmt: skip
    groups = [dist.new_group([0]), dist.new_group([1, 2])]  # every rank creates both
    group = groups[0] if rank == 0 else groups[1]
    model = nn.parallel.DistributedDataParallel(model, process_group=group)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sparse = DynamicSparsity(
        model, opt, 0.2, grow="set", update_every=2, total_steps=20, seed=rank,
        process_group=group,
    )  # fmt: skip
    X, y = data[rank]
    for k in range(20):
        i = (k * 16) % X.shape[0]
        opt.zero_grad()
        nn.functional.cross_entropy(model(X[i : i + 16]), y[i : i + 16]).backward()
        opt.step()
    torch.save(dict(sparse.masks), os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_process_group_masks_follow_the_groups_first_rank(tmp_path, mlp, data, spawn_ranks):
    batches = [data(seed=10 + rank) for rank in range(3)]
    spawn_ranks(_subgroup_worker, 3, 3, str(tmp_path / "init"), str(tmp_path), mlp(), batches)
    r0, r1, r2 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(3))
    # ranks 1 and 2 (one group, broadcast from global rank 1) agree; rank 0 trains alone
    assert all(torch.equal(r1[k], r2[k]) for k in r1)
    assert not all(torch.equal(r0[k], r1[k]) for k in r0)
