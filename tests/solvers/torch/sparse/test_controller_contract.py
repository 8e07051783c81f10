# SPDX-License-Identifier: BSD-3-Clause
"""The contract every sparse controller keeps, whatever its mask rule.

Each controller (:class:`StaticSparsity`, :class:`DynamicSparsity` with RigL,
SET and momentum growth, :class:`GradualMagnitudePruning`):

- works with any optimizer: SGD with momentum, Adam, AdamW, and AdaSLS, which
  steps with a closure;
- keeps exact nonzero counts after every optimizer step, with the weights and
  the optimizer state zero outside the mask;
- resumes bit for bit from its ``state_dict`` (with the model's and the
  optimizer's);
- holds identical masks on every DDP rank (two gloo ranks, different seeds
  and data on each).

:class:`SSGD` is not part of it: it is a gradient transform without masks.
"""

import copy
import datetime
import os

import pytest
import torch
from torch import nn

from solvers.torch import DynamicSparsity, GradualMagnitudePruning, StaticSparsity
from solvers.torch.sparse.densities import active_count

#: controller factories ``(model, optimizer, seed) -> controller``; updates every 3 steps
CONTROLLERS = {
    "static": lambda model, opt, seed: StaticSparsity(model, opt, 0.3, seed=seed),
    "rigl": lambda model, opt, seed: DynamicSparsity(
        model, opt, 0.3, grow="rigl", update_every=3, total_steps=24, seed=seed
    ),
    "set": lambda model, opt, seed: DynamicSparsity(
        model, opt, 0.3, grow="set", update_every=3, total_steps=24, seed=seed
    ),
    "momentum": lambda model, opt, seed: DynamicSparsity(
        model, opt, 0.3, grow="momentum", update_every=3, total_steps=24, seed=seed
    ),
    "gmp": lambda model, opt, seed: GradualMagnitudePruning(
        model, opt, 0.2, start=2, end=14, update_every=3
    ),
}


def expected_counts(controller, previous):
    """Active weights per layer the controller must hold after its last step."""
    if isinstance(controller, GradualMagnitudePruning) and controller.history:
        d = controller.history[-1]["density"]  # one density in every layer (scope="layer")
        return {k: active_count(p.numel(), d) for k, p in controller.params.items()}
    return previous  # the other controllers move weights but keep every count


@pytest.mark.parametrize("opt_name", ["sgd", "adam", "adamw", "adasls"])
@pytest.mark.parametrize("kind", list(CONTROLLERS))
def test_exact_counts_and_masked_state_with_any_optimizer(
    kind, opt_name, mlp, data, train, optimizers
):
    model = mlp()
    opt = optimizers[opt_name](model.parameters())
    sparse = CONTROLLERS[kind](model, opt, 0)
    X, y = data()
    counts = {k: int(m.sum()) for k, m in sparse.masks.items()}
    for _ in range(16):
        train(model, opt, X, y, 1, start=sparse.step_count, closure=opt_name == "adasls")
        counts = expected_counts(sparse, counts)
        for k, m in sparse.masks.items():
            assert int(m.sum()) == counts[k], f"{k}: count drifted at step {sparse.step_count}"
            p = sparse.params[k]
            assert torch.all(p[~m] == 0)
            for v in opt.state[p].values():
                if torch.is_tensor(v) and v.shape == p.shape:
                    # zero, or AdaSLS's floor of its AMSGrad maximum (finfo.tiny)
                    floor = torch.finfo(v.dtype).tiny
                    assert torch.all(v[~m].abs() <= floor), "optimizer state outside the mask"
    assert sparse.step_count == 16
    assert (len(sparse.history) > 0) == (kind != "static")


@pytest.mark.parametrize("kind", list(CONTROLLERS))
def test_state_dict_resume_is_bit_for_bit(kind, tmp_path, mlp, data, train):
    X, y = data(n=96)

    def make():
        model = mlp()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        return model, opt, CONTROLLERS[kind](model, opt, 0)

    # 24 steps, saved at 8: five mask updates and the end of the drop schedule after resuming
    model, opt, sparse = make()
    train(model, opt, X, y, 24)
    model2, opt2, sparse2 = make()
    train(model2, opt2, X, y, 8)
    path = tmp_path / "ckpt.pt"
    state = {"model": model2.state_dict(), "opt": opt2.state_dict(), "sparse": sparse2.state_dict()}
    torch.save(state, path)
    model3, opt3, sparse3 = make()
    ckpt = torch.load(path)
    model3.load_state_dict(ckpt["model"])
    opt3.load_state_dict(ckpt["opt"])
    sparse3.load_state_dict(ckpt["sparse"])
    train(model3, opt3, X, y, 16, start=8)  # the batches the uninterrupted run saw
    for a, b in zip(model.parameters(), model3.parameters(), strict=True):
        assert torch.equal(a, b)
    full, resumed = sparse.state_dict(), sparse3.state_dict()
    assert full.keys() == resumed.keys()
    assert full["step_count"] == resumed["step_count"] == 24
    assert full["history"] == resumed["history"]
    for key in ("masks", "fired", "ema"):
        for k, v in full.get(key, {}).items():
            assert torch.equal(v, resumed[key][k]), f"{key}/{k}"


def _corruptions(state):
    """Ways a state_dict can fail to fit: each is refused before anything changes."""
    last = sorted(state["masks"])[-1]  # a later layer: the earlier ones would be copied first
    bad_mask = copy.deepcopy(state)
    bad_mask["masks"][last] = bad_mask["masks"][last][:-1]
    missing_layer = copy.deepcopy(state)
    del missing_layer["masks"][last]
    out = {"mask shape": bad_mask, "missing layer": missing_layer}
    if "fired" in state:
        bad_fired = copy.deepcopy(state)
        bad_fired["fired"][last] = bad_fired["fired"][last].flatten()
        out["exploration record shape"] = bad_fired
    return out


@pytest.mark.parametrize("kind", list(CONTROLLERS))
def test_failed_load_state_dict_changes_nothing(kind, mlp, data, train):
    """A state that does not fit raises ValueError; masks, weights and record stay as they were."""
    X, y = data(n=96)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    sparse = CONTROLLERS[kind](model, opt, 0)
    other_model = mlp(seed=3)
    other_opt = torch.optim.SGD(other_model.parameters(), lr=0.05)
    other = CONTROLLERS[kind](other_model, other_opt, 7)
    train(model, opt, X, y, 7)
    train(other_model, other_opt, X, y, 13)
    snapshot = copy.deepcopy(sparse.state_dict())
    weights = [p.detach().clone() for p in model.parameters()]
    assert (
        any(  # the other state differs, so a partial load would show
            not torch.equal(snapshot["masks"][k], m) for k, m in other.state_dict()["masks"].items()
        )
        or kind == "static"
    )
    for what, state in _corruptions(other.state_dict()).items():
        with pytest.raises(ValueError, match="state_dict"):
            sparse.load_state_dict(state)
        now = sparse.state_dict()
        assert now["step_count"] == snapshot["step_count"] and now["history"] == snapshot["history"]
        for key in ("masks", "fired", "ema"):
            for k, v in snapshot.get(key, {}).items():
                assert torch.equal(now[key][k], v), f"{what}: {key}/{k} changed"
        for p, w in zip(model.parameters(), weights, strict=True):
            assert torch.equal(p, w), f"{what}: weights changed"


def _ddp_worker(rank, world, init_file, out_dir, model, data):
    import torch.distributed as dist

    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
        timeout=datetime.timedelta(seconds=60),
    )  # fmt: skip
    X, y = data[rank]
    out = {}
    for kind, make in CONTROLLERS.items():
        net = nn.parallel.DistributedDataParallel(copy.deepcopy(model))
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        # a different seed and different data on each rank: rank 0's masks must win
        sparse = make(net, opt, rank)
        for k in range(12):
            i = (k * 16) % X.shape[0]
            opt.zero_grad()
            nn.functional.cross_entropy(net(X[i : i + 16]), y[i : i + 16]).backward()
            opt.step()
        out[kind] = dict(sparse.masks)
        out[kind]["params"] = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_masks_identical_on_two_ddp_ranks(tmp_path, mlp, data, spawn_ranks):
    batches = [data(seed=10 + rank) for rank in range(2)]
    spawn_ranks(_ddp_worker, 2, 2, str(tmp_path / "init"), str(tmp_path), mlp(), batches)
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert r0.keys() == r1.keys() == CONTROLLERS.keys()
    for kind in CONTROLLERS:
        assert r0[kind].keys() == r1[kind].keys()
        for k in r0[kind]:
            assert torch.equal(r0[kind][k], r1[kind][k]), f"{kind}: {k} differs between ranks"
