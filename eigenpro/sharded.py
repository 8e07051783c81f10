# SPDX-License-Identifier: BSD-3-Clause
"""EigenPro 2 over the ranks of a process group: :func:`sharded_eigenpro_solve`.

Each rank passes its own rows ``X_r, Y_r``; the rows in rank order are the
data set, ``X = [X_0; X_1; ...]``. The coefficients are sharded with the rows
(the centres of ``f = sum_j a_j k(., x_j)`` are the training points): rank
``r`` owns ``a_r`` and computes only against its own rows. Every rank draws
the same permutation and batch order from a generator of the same state, so
no index travels; per batch ``B`` of ``m`` points (global ids):

1. the owners' rows of the batch, ``X_B`` and ``T_B = Y_B - alpha a_B``, are
   summed into every rank (each rank contributes its rows, zeros elsewhere):
   ``m (d + l)`` floats per rank;
2. ``F = sum_r K(X_B, X_r) a_r``: a local product, then a sum over ranks of
   ``m l`` floats;
3. ``g = F - T_B``; the owners update ``a_B -= (eta / m) g``, and the owners of
   the Nyström subsample ``S`` (replicated on every rank with its
   preconditioner, fitted once on rank 0 and broadcast) add
   ``(eta / m) V D V^T K_SB g``, computed on every rank alike.

So a step sends ``m (d + 2 l)`` floats per rank
(:attr:`solvers.distributed.Communicator.bytes_sent` counts them; the data
set never travels whole) and computes ``m n_r d`` per rank. The iterates are
those of :func:`eigenpro.solver.eigenpro_solve` on the concatenated rows with
the same arguments, up to the order of floating-point sums (the tests check
1e-10 in float64), because every decision (the permutation, the batches,
the step size, the divergence guard) is taken from the same numbers. A
run's :class:`eigenpro._iteration.EigenProCheckpoint` holds the gathered
coefficients in the global order, so it resumes with any number of ranks,
one process included.

This is the layout of the reference notes' design (shard the centres, not
the data): a data-parallel layout would sum the gradient at all ``n``
centres, ``n l`` floats per step.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sklearn.utils import check_random_state

from eigenpro._epoch_log import EpochLog, progress_bar
from eigenpro._iteration import (
    DIVERGENCE_FACTOR,
    LOSS_SAMPLES,
    DivergenceGuard,
    EigenProCheckpoint,
    SolverSettings,
    batch_and_step,
    check_checkpoint,
    check_inputs,
    check_resumed_plan,
    coordinate_step,
    fit_preconditioner,
    plan_settings,
    resolve_subsample_size,
)
from eigenpro.kernels import make_kernel
from eigenpro.preconditioner import NystromPreconditioner
from solvers.backend import (
    get_namespace_and_device,
    itemsize,
    resolve_memory_budget,
    rows_per_block,
    take_rows,
)
from solvers.distributed import Communicator

__all__ = ["Shard", "ShardedPlan", "gather_rows", "sharded_eigenpro_solve"]


@dataclass(frozen=True)
class Shard:
    """This rank's rows and where they sit among all ranks' rows."""

    X: Any
    Y: Any
    coef0: Any
    vector_target: bool
    #: Row counts of every rank, in rank order.
    counts: tuple
    rank: int

    @property
    def offset(self):
        return sum(self.counts[: self.rank])

    @property
    def n_samples(self):
        """Rows of all ranks together."""
        return sum(self.counts)

    @property
    def n_outputs(self):
        return self.Y.shape[1]

    def owned(self, rows):
        """``(positions, local)``: which of the global ``rows`` this rank owns, and where."""
        rows = np.asarray(rows)
        start = self.offset
        mask = (rows >= start) & (rows < start + self.X.shape[0])
        positions = np.flatnonzero(mask)
        return positions, rows[positions] - start


def gather_rows(comm, shard, A, rows):
    """``A_global[rows]`` on every rank, for ``A`` this rank's rows of an array of all ranks.

    Every rank contributes its own rows and zeros elsewhere, and the sum over
    ranks is exact (each entry is one number plus zeros).
    """
    xp, device = get_namespace_and_device(A)
    positions, local = shard.owned(rows)
    out = xp.zeros((len(rows), *A.shape[1:]), dtype=A.dtype, device=device)
    if positions.size:
        at = xp.asarray(positions, dtype=xp.int64, device=device)
        out[at, ...] = take_rows(xp, A, xp.asarray(local, dtype=xp.int64, device=device))
    return comm.all_reduce_sum(out, "Gathering rows of all ranks")


def check_shard(comm, X, Y, coef0):
    """Check this rank's arrays, then that the ranks agree; raise on every rank alike."""
    with comm.raise_together("eigenpro_solve: checking this rank's X and Y"):
        data = check_inputs(X, Y, coef0, min_rows=0)
    comm.agree(
        "eigenpro_solve",
        n_features=int(data.X.shape[1]),
        dtype=str(data.X.dtype),
        n_outputs=int(data.n_outputs),
        vector_target=bool(data.vector_target),
        coef0_given=data.coef0 is not None,
    )
    counts = comm.check_nonempty(data.X.shape[0])
    if sum(counts) < 2:
        raise ValueError(f"EigenPro needs at least 2 samples; got n_samples={sum(counts)}.")
    return Shard(data.X, data.Y, data.coef0, data.vector_target, tuple(counts), comm.rank)


def shared_generator(comm, random_state, checkpoint=None):
    """A ``RandomState`` in the same state on every rank (checked), as a single process has it.

    ``random_state=None`` takes rank 0's seed. Resuming, the generator is
    ``random_state`` when it is a ``RandomState``, else a new one, set to the
    checkpoint's state (as :func:`eigenpro._iteration.resume_plan` does).
    """
    if checkpoint is not None:
        rng = random_state if isinstance(random_state, np.random.RandomState) else None
        rng = np.random.RandomState(0) if rng is None else rng
        rng.set_state(checkpoint.rng_state)
    else:
        if random_state is None:
            seed = np.random.default_rng().integers(2**31 - 1, size=1, dtype=np.int64)
            random_state = int(comm.broadcast(seed, what="Sharing rank 0's seed")[0])
        rng = check_random_state(random_state)
    state = rng.get_state()
    comm.agree(
        "eigenpro_solve: the ranks' random_state",
        random_state=[int(v) for v in state[1][:8]] + [int(state[2])],
    )
    return rng


@dataclass(frozen=True)
class ShardedPlan:
    """What the epochs of a sharded run need (the fields :class:`EpochLog` reads included)."""

    kernel: Any
    comm: Communicator
    shard: Shard
    x_state: Any
    permutation: Any
    subsample_size: int
    #: The subsample's rows (s, d), replicated, and the kernel's state for them.
    X_S: Any
    s_state: Any
    #: ``(positions, local)`` of the subsample rows this rank owns.
    s_owned: tuple
    preconditioner: NystromPreconditioner
    batch_size: int
    step_size: float
    blocks: list
    alpha: float
    #: Rows of the loss estimate: global ids, points and targets (replicated).
    loss_rows: Any
    X_L: Any
    Y_L: Any
    zero_mse: float
    tile_rows: int
    timings: dict
    #: Seconds spent in the steps' collectives (waiting for the slower rank included)
    #: and steps taken, accumulated over the run.
    traffic: dict = field(default_factory=lambda: {"seconds": 0.0, "steps": 0, "step_bytes": 0})
    kernel_precomputed: bool = False
    stored_bytes: int = 0

    @property
    def n_samples(self):
        return self.shard.n_samples

    @property
    def subsample(self):
        return self.permutation[: self.subsample_size]

    def halved(self):
        return replace(self, step_size=self.step_size * 0.5)

    def coordinate_step(self, batch):
        return coordinate_step(
            self.preconditioner, self.batch_size, self.step_size, self.n_samples, batch
        )

    def original_order(self, coef, vector_target=False):
        """This rank's coefficients, as returned (1-D for a vector target)."""
        return coef[:, 0] if vector_target else coef


def make_sharded_plan(settings, comm, shard, rng, permutation=None):
    """The plan :func:`eigenpro._iteration.make_plan` makes on the concatenated rows.

    The permutation is drawn from ``rng`` (or taken); the Nyström subsample
    and its calibration rows are gathered to every rank, the preconditioner
    is fitted on rank 0 and broadcast.
    """
    xp, device = get_namespace_and_device(shard.X)
    n = shard.n_samples
    kernel = make_kernel(settings.kernel, settings.bandwidth)
    if getattr(kernel, "bandwidth", 0.0) is None:  # the rows a single process would use
        step = -(-n // 20000)
        sample = gather_rows(comm, shard, shard.X, np.arange(0, n, step))
        kernel = kernel.with_bandwidth(kernel.default_bandwidth(sample))
    budget = resolve_memory_budget(settings.memory_budget, xp, device)
    s = resolve_subsample_size(settings, n, device, budget)
    perm = rng.permutation(n) if permutation is None else permutation
    timings = {}
    t_mark = time.perf_counter()
    X_pre = gather_rows(comm, shard, shard.X, perm[: min(n, 2 * s)])
    precond = None
    with comm.raise_together("eigenpro_solve: fitting the preconditioner on rank 0"):
        if comm.rank == 0:  # a degenerate kernel raises there, and then on every rank
            precond = fit_preconditioner(kernel, X_pre, s, settings, n_train=n)
    precond = broadcast_preconditioner(comm, precond, s, shard.X.dtype, xp, device, settings)
    timings["preconditioner"] = time.perf_counter() - t_mark
    m, eta = batch_and_step(precond, n, settings)
    n_loss = min(n, LOSS_SAMPLES)
    loss_rows = perm[:n_loss]
    X_S = X_pre[:s, :]
    width = max(shard.X.shape[0], s)
    tile = rows_per_block(width, itemsize(xp, shard.X.dtype), budget, n_buffers=3)
    squares = comm.all_reduce_sum(float(xp.sum(shard.Y * shard.Y)), "Summing the squared targets")
    return ShardedPlan(
        kernel=kernel,
        comm=comm,
        shard=shard,
        x_state=kernel.prepare(shard.X),
        permutation=perm,
        subsample_size=s,
        X_S=X_S,
        s_state=kernel.prepare(X_S),
        s_owned=shard.owned(perm[:s]),
        preconditioner=precond,
        batch_size=m,
        step_size=eta,
        blocks=[(a, min(a + m, n)) for a in range(0, n, m)],
        alpha=float(settings.alpha),
        loss_rows=loss_rows,
        X_L=gather_rows(comm, shard, shard.X, loss_rows),
        Y_L=gather_rows(comm, shard, shard.Y, loss_rows),
        zero_mse=squares / (n * shard.n_outputs),
        tile_rows=max(tile, 1),
        timings=timings,
    )


def broadcast_preconditioner(comm, precond, s, dtype, xp, device, settings):
    """Rank 0's fitted preconditioner on every rank (its scalars, eigenvalues and ``V``, ``VD``)."""
    if comm.world_size == 1:
        return precond
    head = np.zeros(6)
    if precond is not None:
        head[:] = [
            precond.n_components_,
            precond.beta_,
            precond.top_eigenvalue_,
            precond.preconditioned_eigenvalue_,
            precond.critical_batch_size_,
            getattr(precond, "held_out_eigenvalue_", math.nan),
        ]
    head = comm.broadcast(head, what="Broadcasting the preconditioner's scalars")
    k = int(head[0])
    if precond is None:
        precond = NystromPreconditioner(settings.n_components, settings.damping)
        precond.n_components_ = k
        precond.beta_, precond.top_eigenvalue_ = float(head[1]), float(head[2])
        precond.preconditioned_eigenvalue_ = float(head[3])
        precond.critical_batch_size_ = float(head[4])
        if not math.isnan(head[5]):
            precond.held_out_eigenvalue_ = float(head[5])
        precond.subsample_size_ = s
        precond.eigenvalues_ = xp.zeros((k + 1,), dtype=xp.float64, device=device)
        precond._V = xp.zeros((s, k), dtype=dtype, device=device)
        precond._VD = xp.zeros((s, k), dtype=dtype, device=device)
    what = "Broadcasting the preconditioner's eigensystem"
    precond.eigenvalues_ = comm.broadcast(precond.eigenvalues_, what=what)
    precond._V = comm.broadcast(precond._V, what=what)
    precond._VD = comm.broadcast(precond._VD, what=what)
    return precond


def _local_products(plan, X_rows, coef):
    """``K(X_rows, X_r) coef`` over this rank's rows, in row tiles."""
    xp, device = get_namespace_and_device(coef)
    out = xp.zeros((X_rows.shape[0], coef.shape[1]), dtype=coef.dtype, device=device)
    for a in range(0, X_rows.shape[0], plan.tile_rows):
        b = min(a + plan.tile_rows, X_rows.shape[0])
        K = plan.kernel.block(X_rows[a:b, :], plan.shard.X, z_state=plan.x_state)
        out[a:b, :] = K @ coef
    return out


def run_sharded_epoch(plan, coef, order):
    """One pass over the blocks in ``order``; ``coef`` (this rank's rows) updated in place.

    Returns ``True`` when a batch diverged, on every rank alike.
    """
    xp, device = get_namespace_and_device(coef)
    comm, shard = plan.comm, plan.shard
    d, n_outputs = shard.X.shape[1], coef.shape[1]
    precond = plan.preconditioner
    limit = DIVERGENCE_FACTOR * max(plan.zero_mse, 1e-30)
    s_positions, s_local = plan.s_owned
    for r in order:
        a, b = plan.blocks[r]
        rows = plan.permutation[a:b]
        positions, local = shard.owned(rows)
        at = xp.asarray(positions, dtype=xp.int64, device=device)
        mine = xp.asarray(local, dtype=xp.int64, device=device)
        buf = xp.zeros((b - a, d + n_outputs), dtype=coef.dtype, device=device)
        if positions.size:
            T = take_rows(xp, shard.Y, mine)
            if plan.alpha:
                T = T - plan.alpha * take_rows(xp, coef, mine)
            buf[at, :d] = take_rows(xp, shard.X, mine)
            buf[at, d:] = T
        t_mark, sent = time.perf_counter(), comm.bytes_sent
        buf = comm.all_reduce_sum(buf, "Sharing the batch's rows")
        plan.traffic["seconds"] += time.perf_counter() - t_mark
        X_B, T_B = buf[:, :d], buf[:, d:]
        F = _local_products(plan, X_B, coef)
        t_mark = time.perf_counter()
        F = comm.all_reduce_sum(F, "Summing the batch's outputs")
        plan.traffic["seconds"] += time.perf_counter() - t_mark
        plan.traffic["steps"] += 1
        plan.traffic["step_bytes"] += comm.bytes_sent - sent
        G = F - T_B
        batch_mse = float(xp.sum(G * G)) / ((b - a) * n_outputs)
        if not math.isfinite(batch_mse) or batch_mse > limit:
            return True
        lr = plan.coordinate_step(b - a)
        if positions.size:
            coef[mine, :] = take_rows(xp, coef, mine) - lr * take_rows(xp, G, at)
        if precond.n_components_ > 0:
            K_bs = plan.kernel.block(X_B, plan.X_S, z_state=plan.s_state)
            correction = precond.correction(K_bs.T @ G)
            if s_positions.size:
                sa = xp.asarray(s_positions, dtype=xp.int64, device=device)
                sl = xp.asarray(s_local, dtype=xp.int64, device=device)
                coef[sl, :] = take_rows(xp, coef, sl) + lr * take_rows(xp, correction, sa)
    return False


def sharded_train_mse(plan, coef):
    """The training MSE of :func:`eigenpro._iteration.train_mse` on the concatenated rows."""
    xp, _ = get_namespace_and_device(coef)
    comm = plan.comm
    F = comm.all_reduce_sum(_local_products(plan, plan.X_L, coef), "Summing the loss outputs")
    R = F - plan.Y_L
    if plan.alpha:
        R = R + plan.alpha * gather_rows(comm, plan.shard, coef, plan.loss_rows)
    return float(xp.sum(R * R)) / (R.shape[0] * coef.shape[1])


def starting_point(plan, shard, resume=None):
    """``(plan, coef, settings)``: this rank's starting coefficients and the run's settings.

    Resuming, the plan takes the checkpoint's step size (after checking it
    resolved the same settings), the coefficients are this rank's rows of the
    checkpoint's gathered ones, and the settings the checkpoint's; otherwise
    ``coef0`` (a copy) or zeros, and the plan's settings.
    """
    xp, device = get_namespace_and_device(shard.X)
    n_rows = shard.X.shape[0]
    if resume is None:
        if shard.coef0 is None:
            coef = xp.zeros((n_rows, shard.n_outputs), dtype=shard.X.dtype, device=device)
        else:
            coef = xp.astype(shard.coef0, shard.X.dtype, copy=True)
        return plan, coef, plan_settings(plan, shard.n_outputs)
    check_resumed_plan(plan, resume, shard.n_outputs)
    full = resume.coef[:, None] if resume.coef.ndim == 1 else resume.coef
    mine = xp.asarray(full[shard.offset : shard.offset + n_rows, :], device=device)
    coef = xp.astype(mine, shard.X.dtype, copy=True)
    return replace(plan, step_size=resume.step_size), coef, resume.settings


def sharded_eigenpro_solve(
    kernel,
    X,
    Y,
    *,
    process_group,
    bandwidth=None,
    alpha=0.0,
    n_epochs=10,
    subsample_size="auto",
    n_components="auto",
    batch_size="auto",
    step_size="auto",
    damping=0.95,
    memory_budget="auto",
    coef0=None,
    tol=None,
    random_state=None,
    callback=None,
    verbose=0,
    resume=None,
):
    """:func:`eigenpro.solver.eigenpro_solve` on the rows of all ranks of ``process_group``.

    Every rank calls it at once with its own rows ``X``, ``Y`` (and its rows
    of ``coef0``) and the same other arguments; see the module docstring for
    what travels. The kernel matrix is never stored (each batch's block
    ``K(X_B, X_r)`` is computed in row tiles within ``memory_budget``).

    Returns
    -------
    OptimizeResult
        As :func:`eigenpro.solver.eigenpro_solve`'s, with ``x`` this rank's
        coefficients (its rows, in its order) and ``checkpoint`` an ordinary
        :class:`eigenpro._iteration.EigenProCheckpoint` of all ranks'
        coefficients in the global order (rank 0's rows first): a single
        process resumes it on the concatenated rows, or any number of ranks
        on the same rows split otherwise. ``bytes_sent``: what this rank
        handed to collectives; ``communication``: ``bytes_sent``, the
        ``seconds`` the steps spent in collectives (waiting for the slower
        rank included), the ``steps`` taken and the ``step_bytes`` they sent.

    Raises
    ------
    ValueError
        On every rank, when any rank's arrays are invalid, the ranks' feature
        counts, dtypes, output counts or generator states differ, or a rank
        holds no rows.
    RuntimeError
        A collective failed: another rank raised, exited or stalled past
        the process group's timeout.
    """
    t_start = time.perf_counter()
    settings = SolverSettings(
        kernel=kernel, bandwidth=bandwidth, alpha=alpha, n_epochs=n_epochs,
        subsample_size=subsample_size, n_components=n_components, batch_size=batch_size,
        step_size=step_size, damping=damping, memory_budget=memory_budget,
        precompute_kernel=False, tol=tol, random_state=random_state, callback=callback,
        verbose=verbose,
    )  # fmt: skip
    comm = Communicator(process_group)
    shard = check_shard(comm, X, Y, coef0)
    permutation = None
    if resume is not None:
        with comm.raise_together("eigenpro_solve: checking the 'resume' checkpoint"):
            whole = _Whole(shard)
            permutation = check_checkpoint(resume, whole, settings.n_epochs, shard.coef0)
    rng = shared_generator(comm, random_state, resume)
    plan = make_sharded_plan(settings, comm, shard, rng, permutation)
    plan, coef, started = starting_point(plan, shard, resume)
    mse = sharded_train_mse(plan, coef)
    guard = DivergenceGuard(coef, mse, plan.zero_mse)
    log = EpochLog(settings, plan, shard.vector_target, t_start, mse, resume)
    if resume is not None:
        guard.best_mse, guard.halvings = resume.best_mse, resume.halvings
    permutation = np.array(plan.permutation)
    permutation.flags.writeable = False

    def checkpoint(_):
        gathered = comm.all_gather_rows(coef, "Gathering the coefficients for a checkpoint")
        return EigenProCheckpoint(
            epoch=log.epoch,
            coef=gathered[:, 0] if shard.vector_target else gathered,
            permutation=permutation,
            rng_state=rng.get_state(),
            step_size=plan.step_size,
            halvings=guard.halvings,
            best_mse=guard.best_mse,
            mse=log.mse,
            mse0=log.mse0,
            history={k: list(v) for k, v in log.history.items()},
            settings=dict(started),
        )

    if resume is not None and log.reached_tol():
        return _finish(log.result(plan, coef, checkpoint), comm, plan)
    epoch = log.epoch
    while epoch < settings.n_epochs:
        order = rng.permutation(len(plan.blocks))
        diverged = run_sharded_epoch(plan, coef, progress_bar(order, verbose, f"epoch {epoch + 1}"))
        mse = None if diverged else sharded_train_mse(plan, coef)
        if diverged or guard.rose(mse):
            plan, coef = guard.restart(plan, epoch + 1, stacklevel=2)
            continue
        epoch += 1
        guard.accept(coef, mse)
        if log.record(plan, epoch, mse, coef, checkpoint):
            break
    else:
        log.ran_out(stacklevel=2)
    return _finish(log.result(plan, coef, checkpoint), comm, plan)


def _finish(result, comm, plan):
    result["bytes_sent"] = comm.bytes_sent
    result["communication"] = {"bytes_sent": comm.bytes_sent, **plan.traffic}
    return result


class _Whole:
    """The concatenated rows' sizes, as :func:`check_checkpoint` reads them."""

    def __init__(self, shard):
        self.n_samples, self.n_outputs = shard.n_samples, shard.n_outputs
