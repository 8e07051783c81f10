# SPDX-License-Identifier: BSD-3-Clause
"""``python -m benchmarks eigenpro --distributed``: EigenPro over the ranks of torchrun.

Launched as ``torchrun --nproc-per-node R -m benchmarks eigenpro --distributed
[--data ...] [--device cuda]``: every rank loads the data set, keeps its
contiguous share of the training rows and fits
:class:`eigenpro.EigenProClassifier` with ``process_group="world"`` (gloo on
the CPU, NCCL with ``--device cuda``); the test accuracy is a collective
prediction. Rank 0 then fits one process on all rows with the same
arguments (the other ranks wait) and compares: the largest difference of the
gathered coefficients, the accuracies, the wall times, and per rank the bytes
sent per step against the formula ``m (d + 2 l)`` floats and the seconds the
steps spent in collectives (which include waiting for the slower rank). On a
machine with fewer cores than ranks the ranks share them: the wall time is
reported as measured, not as a speed-up.
"""

from __future__ import annotations

import datetime
import os
import time

import numpy as np

from benchmarks import datasets
from benchmarks.report import machine_info, write_json

#: The process group's timeout: rank 0's single-process fit runs while the others wait.
TIMEOUT_MINUTES = 60


def run_distributed(args):
    import torch.distributed as dist

    from eigenpro import EigenProClassifier

    cuda = args.device.startswith("cuda")
    if not dist.is_initialized():
        dist.init_process_group(
            "nccl" if cuda else "gloo", timeout=datetime.timedelta(minutes=TIMEOUT_MINUTES)
        )
    rank, world = dist.get_rank(), dist.get_world_size()
    if cuda:
        import torch

        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)))
    data = datasets.load(args.data, args.n_train)
    mnist = data.name == "mnist"
    n, d = data.X_train.shape
    parts = np.array_split(np.arange(n), world)
    mine = parts[rank]
    params = dict(
        n_epochs=args.epochs or (3 if mnist else 10),
        bandwidth=args.bandwidth if args.bandwidth is not None else (5.0 if mnist else "auto"),
        memory_budget="auto" if args.memory_budget is None else args.memory_budget,
        random_state=args.seed,
        device=None if args.device == "cpu" else args.device,
    )
    if rank == 0:
        print(f"EigenPro over {world} ranks: {data.name}, n={n}, d={d}, rows per rank "
              f"{[len(p) for p in parts]}", flush=True)  # fmt: skip
    est = EigenProClassifier(process_group="world", **params)
    dist.barrier()
    t0 = time.perf_counter()
    est.fit(data.X_train[mine], data.y_train[mine])
    sharded_seconds = time.perf_counter() - t0
    accuracy = float(np.mean(np.asarray(est.predict(data.X_test)) == data.y_test))
    whole = est.gathered()
    reports = [None] * world
    row = {
        "rank": rank,
        "rows": len(mine),
        "fit_seconds": sharded_seconds,
        "communication": est.communication_,
        "history": est.history_,
    }
    dist.all_gather_object(reports, row)
    if rank != 0:
        dist.barrier()  # while rank 0 fits one process
        dist.destroy_process_group()
        return None
    single = EigenProClassifier(**params)
    t0 = time.perf_counter()
    single.fit(data.X_train, data.y_train)
    single_seconds = time.perf_counter() - t0
    single_accuracy = float(np.mean(np.asarray(single.predict(data.X_test)) == data.y_test))
    dist.barrier()
    difference = float(np.max(np.abs(np.asarray(whole.coef_) - np.asarray(single.coef_))))
    m, classes = est.batch_size_, len(est.classes_)
    itemsize = np.dtype(np.asarray(whole.coef_).dtype).itemsize
    formula = sum(
        min(m, n - a) * (d + 2 * classes) * itemsize for a in range(0, n, m)
    ) * est.n_iter_  # fmt: skip
    summary = [
        f"{world} ranks: {100 * accuracy:.2f} % in {sharded_seconds:.1f} s; one process: "
        f"{100 * single_accuracy:.2f} % in {single_seconds:.1f} s; largest coefficient "
        f"difference {difference:.2e}",
    ]
    for r in reports:
        c = r["communication"]
        summary.append(
            f"rank {r['rank']}: {r['rows']} rows, {c['steps']} steps, "
            f"{c['step_bytes'] / 2**20:.2f} MiB sent by the steps (formula m (d + 2l) "
            f"floats per step: {formula / 2**20:.2f} MiB), {c['bytes_sent'] / 2**20:.2f} MiB "
            f"in all (set-up, loss estimates); {c['seconds']:.1f} s of {r['fit_seconds']:.1f} s "
            "in the steps' collectives"
        )
    for line in summary:
        print(line)
    payload = {
        "suite": "eigenpro-distributed",
        "dataset": data.name,
        "n_train": n,
        "n_features": d,
        "world_size": world,
        "device": args.device,
        "machine": machine_info(),
        "params": {k: v for k, v in params.items() if k != "device"},
        "batch_size": m,
        "sharded": {"accuracy": accuracy, "seconds": sharded_seconds, "ranks": reports},
        "single": {"accuracy": single_accuracy, "seconds": single_seconds},
        "max_coef_difference": difference,
        "formula_bytes_per_epoch": formula / est.n_iter_,
        "summary": summary,
    }
    stem = f"eigenpro_{data.name}_n{n}_{args.device.replace(':', '')}_ranks{world}{args.tag}"
    path = write_json(os.path.join(args.out, stem + ".json"), payload)
    print(f"\nwrote {path}")
    dist.destroy_process_group()
    return payload
