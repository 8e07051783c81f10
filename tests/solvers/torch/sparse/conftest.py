# SPDX-License-Identifier: BSD-3-Clause
"""Shared fixtures of the sparse-training tests: a small MLP, data, a training loop."""

import sys
import time

import pytest
import torch
from torch import nn

from solvers.torch import AdaSLS


def make_mlp(d_in=20, widths=(40, 30), d_out=3, seed=0, act=nn.ReLU):
    torch.manual_seed(seed)
    layers, prev = [], d_in
    for w in widths:
        layers += [nn.Linear(prev, w), act()]
        prev = w
    return nn.Sequential(*layers, nn.Linear(prev, d_out))


def make_data(n=64, d=20, classes=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, classes, (n,), generator=g)


def train_steps(model, opt, X, y, steps, batch=16, start=0, closure=False):
    """``steps`` optimizer steps on consecutive minibatches (wrapping around)."""
    for k in range(start, start + steps):
        i = (k * batch) % X.shape[0]

        def loss_closure():
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(X[i : i + batch]), y[i : i + batch])
            loss.backward()
            return loss

        if closure:
            opt.step(loss_closure)
        else:
            loss_closure()
            opt.step()


#: the optimizers every controller must work with; AdaSLS steps with a closure
OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, amsgrad=True),
    "adasls": lambda p: AdaSLS(p, n_batches_per_epoch=4),
}


@pytest.fixture
def mlp():
    """``mlp(d_in=20, widths=(40, 30), d_out=3, seed=0, act=ReLU)``: a seeded MLP."""
    return make_mlp


@pytest.fixture
def data():
    """``data(n=64, d=20, classes=3, seed=1)``: seeded Gaussian inputs and labels."""
    return make_data


@pytest.fixture
def train():
    """``train(model, opt, X, y, steps, batch=16, start=0, closure=False)``."""
    return train_steps


@pytest.fixture
def optimizers():
    """``{name: factory(params)}``: SGD with momentum, Adam, AdamW, AdaSLS (closure)."""
    return OPTIMIZERS


@pytest.fixture
def steps_with_scaler():
    """Full-batch steps through an optional ``GradScaler``, NaN gradients at ``poison_at``."""

    def run(model, opt, X, y, steps, scaler, poison_at=()):
        for k in range(steps):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(X), y)
            (scaler.scale(loss) if scaler else loss).backward()
            if k in poison_at:
                model[0].weight.grad[0, 0] = float("nan")
            if scaler:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()

    return run


@pytest.fixture
def spawn_ranks(monkeypatch):
    """``spawn_ranks(worker, nprocs, *args, timeout=180)``: gloo ranks on the loopback only.

    ``worker(rank, *args)`` must be a module-level function of the test module
    (it is pickled into fresh processes). The ranks talk over 127.0.0.1
    (``GLOO_SOCKET_IFNAME``); a rank that fails or a group that hangs past
    ``timeout`` seconds fails the test instead of blocking the suite.
    """
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available():
        pytest.skip("this torch build has no torch.distributed (some macOS/Windows wheels)")
    loopback = {"linux": "lo", "darwin": "lo0"}.get(sys.platform)
    if loopback:
        monkeypatch.setenv("GLOO_SOCKET_IFNAME", loopback)

    def run(worker, nprocs, *args, timeout=180):
        context = mp.start_processes(worker, args=args, nprocs=nprocs, join=False)
        deadline = time.monotonic() + timeout
        try:
            # join() returns when any rank ends (raising if it failed): wait for all
            while not context.join(timeout=max(deadline - time.monotonic(), 0.0)):
                if time.monotonic() >= deadline:
                    pytest.fail(f"{nprocs} gloo ranks did not finish within {timeout} s")
        finally:
            for p in context.processes:
                if p.is_alive():
                    p.terminate()

    return run


@pytest.fixture
def first_rank_broadcast(monkeypatch):
    """``first_rank_broadcast() -> (group, calls)``: stand in for a two-rank group whose first
    rank decided other masks.

    From the call on, ``broadcast_masks_`` shifts every tensor's rows by one (as the first
    rank's masks would replace this rank's) and records ``(number of tensors, group)``
    in ``calls``; ``group`` is the object to pass as ``process_group``. A controller that
    installs what the broadcast returns, with its own group, passes the tests that use it.
    """
    from solvers.torch.sparse import controller

    def install():
        calls, group = [], object()

        def broadcast(tensors, group=None):
            calls.append((len(tensors), group))
            for t in tensors:
                t.copy_(t.roll(1, 0))

        monkeypatch.setattr(controller, "broadcast_masks_", broadcast)
        return group, calls

    return install
