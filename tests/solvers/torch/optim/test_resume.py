# SPDX-License-Identifier: BSD-3-Clause
"""A line-search run checkpointed to disk and resumed ends bit for bit as the uninterrupted one.

Beyond the contract suite's in-memory round trip (parameters and counters):
the checkpoint goes through ``torch.save``/``torch.load`` (the default
``weights_only`` loader), the model has BatchNorm buffers and dropout, the
fresh model starts from other weights, and after the resumed steps
everything is compared: parameters, buffers, the whole optimizer
``state_dict`` (moments, step counts, the searched step size), ``totals``,
``last_step`` and the global RNG state the trial forwards fork and restore.
Both step protocols: ``step(closure)`` and ``step(closure, loss=...)`` (the
loss and gradient computed by the caller).
"""

import pytest
import torch

from solvers.torch.optim import SLS, SPS, AdaSLS

#: one optimizer of each search and preconditioner family
VARIANTS = {
    "adasls": lambda p: AdaSLS(p, n_batches_per_epoch=4),
    "adasls-adagrad-heavy-ball": lambda p: AdaSLS(
        p, preconditioner="adagrad", momentum="heavy_ball", n_batches_per_epoch=4
    ),
    "sls-goldstein": lambda p: SLS(p, line_search="goldstein", c=0.2, n_batches_per_epoch=4),
    "sps-amsgrad": lambda p: SPS(p, preconditioner="amsgrad", momentum="ema"),
}


def assert_same_state(a, b, where="state"):
    """Nested state dicts equal, tensors bit for bit."""
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same_state(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def run(model, opt, X, y, steps, start, with_loss):
    """``steps`` steps on batches ``start, start + 1, ...`` (of 4), dropout drawn globally."""
    for k in range(start, start + steps):
        xb, yb = X[k % 4 :: 4], y[k % 4 :: 4]

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            return loss

        if with_loss:  # the caller's forward and backward; the closure only for trials
            opt.step(closure, loss=closure())
        else:
            opt.step(closure)


@pytest.mark.parametrize("with_loss", [False, True], ids=["closure", "loss-keyword"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_checkpoint_on_disk_resumes_bit_for_bit(variant, with_loss, tmp_path, mlp, data):
    X, y = data(n=64)
    torch.manual_seed(0)
    model = mlp(dropout=0.25, batchnorm=True)
    opt = VARIANTS[variant](model.parameters())
    run(model, opt, X, y, 3, 0, with_loss)
    path = tmp_path / "checkpoint.pt"
    torch.save(
        {"model": model.state_dict(), "opt": opt.state_dict(), "rng": torch.get_rng_state()}, path
    )
    run(model, opt, X, y, 4, 3, with_loss)  # the uninterrupted run goes on
    rng_after = torch.get_rng_state()

    torch.manual_seed(99)  # a fresh process: other weights, another random stream
    model2 = mlp(dropout=0.25, batchnorm=True)
    opt2 = VARIANTS[variant](model2.parameters())
    checkpoint = torch.load(path)  # weights_only: the state holds tensors and plain values
    model2.load_state_dict(checkpoint["model"])
    opt2.load_state_dict(checkpoint["opt"])
    torch.set_rng_state(checkpoint["rng"])
    run(model2, opt2, X, y, 4, 3, with_loss)

    assert_same_state(model2.state_dict(), model.state_dict(), "model")  # weights and buffers
    assert_same_state(opt2.state_dict(), opt.state_dict(), "optimizer")
    assert opt2.totals == opt.totals and opt2.last_step == opt.last_step
    assert opt.totals["steps"] == 7
    # the dropout stream continues where the uninterrupted run's is
    assert torch.equal(torch.get_rng_state(), rng_after)
