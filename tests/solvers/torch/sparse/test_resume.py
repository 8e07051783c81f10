# SPDX-License-Identifier: BSD-3-Clause
"""Sparse training resumed from a checkpoint ends bit for bit as the uninterrupted run.

The contract suite resumes each controller with Adam, from a checkpoint taken
between mask updates. Here the optimizer is a line search (AdaSLS, stepping
with a closure the controller masks, trial forwards forking the RNG), the
model has dropout, the checkpoint is taken right after a mask update and
loaded with ``torch.load``'s default ``weights_only`` loader into a fresh
model, optimizer and controller built with another seed (the checkpoint's
seed wins). After the remaining steps the weights, the masks and every
other controller record, the optimizer state and the global RNG state
equal the uninterrupted run's.
"""

import pytest
import torch
from torch import nn

from solvers.torch import AdaSLS, DynamicSparsity, GradualMagnitudePruning, StaticSparsity

_DYNAMIC = {"update_every": 3, "total_steps": 18}
#: ``{name: (class, density, keywords)}``, masks updated every 3 steps; all but GMP are seeded
CONTROLLERS = {
    "static": (StaticSparsity, 0.3, {}),
    "rigl": (DynamicSparsity, 0.3, {"grow": "rigl", **_DYNAMIC}),
    "set": (DynamicSparsity, 0.3, {"grow": "set", **_DYNAMIC}),
    "momentum": (DynamicSparsity, 0.3, {"grow": "momentum", **_DYNAMIC}),
    "gmp": (GradualMagnitudePruning, 0.2, {"start": 3, "end": 15, "update_every": 3}),
}


def controller(kind, model, opt, seed):
    cls, density, kwargs = CONTROLLERS[kind]
    if cls is not GradualMagnitudePruning:
        kwargs = {**kwargs, "seed": seed}
    return cls(model, opt, density, **kwargs)


def flatten(state, prefix=""):
    """``[(path, value)]`` of a nested state, tensors as they are."""
    if isinstance(state, dict):
        return [kv for k in sorted(state, key=str) for kv in flatten(state[k], f"{prefix}/{k}")]
    if isinstance(state, (list, tuple)):
        return [kv for i, v in enumerate(state) for kv in flatten(v, f"{prefix}/{i}")]
    return [(prefix, state)]


def same(a, b):
    """Nested states with the same paths and values, tensors bit for bit (and dtype)."""
    fa, fb = flatten(a), flatten(b)
    assert [p for p, _ in fa] == [p for p, _ in fb]
    for (path, x), (_, y) in zip(fa, fb, strict=True):
        if torch.is_tensor(x):
            assert x.dtype == y.dtype and torch.equal(x, y), path
        else:
            assert x == y, f"{path}: {x!r} != {y!r}"


def build(mlp, kind, seed):
    torch.manual_seed(seed)  # the fresh run starts from other weights too
    model = nn.Sequential(mlp(seed=seed), nn.Dropout(0.1))
    opt = AdaSLS(model.parameters(), n_batches_per_epoch=4)
    return model, opt, controller(kind, model, opt, seed)


@pytest.mark.parametrize("kind", list(CONTROLLERS))
def test_resume_with_a_line_search_after_a_mask_update(kind, tmp_path, mlp, data, train):
    X, y = data(n=64)
    model, opt, sparse = build(mlp, kind, 0)
    train(model, opt, X, y, 9, closure=True)  # step 9 updated the masks (not for "static")
    path = tmp_path / "checkpoint.pt"
    torch.save(
        {
            "model": model.state_dict(),
            "opt": opt.state_dict(),
            "sparse": sparse.state_dict(),
            "rng": torch.get_rng_state(),
        },
        path,
    )
    train(model, opt, X, y, 6, start=9, closure=True)
    rng_after = torch.get_rng_state()

    model2, opt2, sparse2 = build(mlp, kind, 5)
    checkpoint = torch.load(path)
    model2.load_state_dict(checkpoint["model"])
    opt2.load_state_dict(checkpoint["opt"])
    sparse2.load_state_dict(checkpoint["sparse"])
    torch.set_rng_state(checkpoint["rng"])
    train(model2, opt2, X, y, 6, start=9, closure=True)

    same(model2.state_dict(), model.state_dict())
    same(sparse2.state_dict(), sparse.state_dict())
    same(opt2.state_dict(), opt.state_dict())
    assert torch.equal(torch.get_rng_state(), rng_after)
    assert sparse2.step_count == 15 and len(sparse.history) == {"static": 0}.get(kind, 5)
    for k, m in sparse2.masks.items():  # the resumed weights respect the resumed masks
        assert torch.all(sparse2.params[k][~m] == 0)
