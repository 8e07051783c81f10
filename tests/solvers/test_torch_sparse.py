# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch sparse methods: masks, DST, pruning, SSGD, export, splitting, ExpandNets."""

import copy
import os
from itertools import pairwise

import pytest
import torch
from torch import nn

from solvers.torch import (
    SSGD,
    AdaSLS,
    DynamicSparsity,
    GradualMagnitudePruning,
    LotteryTicket,
    NeuronSplitting,
    StaticSparsity,
    approximate_isometry_,
    contract,
    erk_densities,
    expand,
    export_dense,
    export_sparse,
    from_torch_prune,
    layer_densities,
    magnitude_masks,
    orthogonalize_,
    prune_at_init,
    select_layers,
    splittable_layers,
    to_torch_prune,
)
from solvers.torch.masks import MaskedTraining, top_k_mask
from solvers.torch.splitting import _exact_eigen, _lanczos_eigen, _patches


def mlp(d_in=20, widths=(40, 30), d_out=3, seed=0, act=nn.ReLU):
    torch.manual_seed(seed)
    layers, prev = [], d_in
    for w in widths:
        layers += [nn.Linear(prev, w), act()]
        prev = w
    return nn.Sequential(*layers, nn.Linear(prev, d_out))


def data(n=64, d=20, classes=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, classes, (n,), generator=g)


def train(model, opt, X, y, steps, batch=16, scaler=None):
    for k in range(steps):
        i = (k * batch) % X.shape[0]
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(X[i : i + batch]), y[i : i + batch])
        loss.backward()
        opt.step()


OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, amsgrad=True),
}


# -- layer selection and densities -----------------------------------------------------


def test_select_layers_skips_biases_norms_and_filters():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2), nn.LayerNorm(2))
    assert list(select_layers(model)) == ["0.weight", "2.weight"]
    assert list(select_layers(model, exclude=r"^2\.")) == ["0.weight"]
    assert list(select_layers(model, min_numel=20)) == ["0.weight"]
    assert list(select_layers(model, include=r"^2")) == ["2.weight"]
    with pytest.raises(ValueError, match="no layer to sparsify"):
        select_layers(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)))
    with pytest.raises(ValueError, match="no layer to sparsify"):
        select_layers(model, include=(nn.Conv2d,))


def test_erk_matches_the_reference_and_keeps_the_budget():
    shapes = {"fc1": (300, 784), "fc2": (100, 300), "fc3": (10, 100)}
    total = sum(a * b for a, b in shapes.values())
    d = erk_densities(shapes, 0.02)
    # eps = 0.02 * 266200 / (1084 + 400 + 110); p_l = eps (n_in + n_out) / (n_in n_out)
    assert [round(d[k], 4) for k in shapes] == [0.0154, 0.0445, 0.3674]
    d = erk_densities(shapes, 0.1)
    assert d["fc3"] == 1.0 and round(d["fc1"], 3) == 0.080 and round(d["fc2"], 2) == 0.23
    for density in (0.02, 0.1, 0.5):
        d = erk_densities(shapes, density)
        kept = sum(d[k] * a * b for k, (a, b) in shapes.items())
        assert kept == pytest.approx(density * total)
        assert max(d.values()) <= 1.0
    assert erk_densities(shapes, 0.1, power=0.0) == pytest.approx(dict.fromkeys(shapes, 0.1))
    assert layer_densities(shapes, {"fc[12]": 0.1, ".": 1.0}) == {
        "fc1": 0.1,
        "fc2": 0.1,
        "fc3": 1.0,
    }


@pytest.mark.parametrize("bad", [0, 0.0, 1.5, -0.1, float("nan")])
def test_density_outside_range_is_rejected(bad):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"density must be in \(0, 1\]"):
        DynamicSparsity(model, opt, density=bad, total_steps=10)


def test_bad_controller_input():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"unknown grow criterion 'magic'"):
        DynamicSparsity(model, opt, grow="magic", total_steps=10)
    with pytest.raises(ValueError, match=r"cosine drop schedule needs total_steps"):
        DynamicSparsity(model, opt, end=None)
    with pytest.raises(ValueError, match=r"unknown distribution 'zipf'"):
        DynamicSparsity(model, opt, distribution="zipf", total_steps=10)
    other = torch.optim.SGD(model[0].parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"'2\.weight' is not optimised by the optimizer"):
        DynamicSparsity(model, other, total_steps=10)
    with pytest.raises(TypeError, match=r"torch\.optim\.Optimizer"):
        StaticSparsity(model, "sgd")


def test_top_k_is_exact_and_breaks_ties_by_index():
    s = torch.tensor([1.0, 3.0, 3.0, 3.0, 0.0, 3.0])
    assert top_k_mask(s, 2).tolist() == [False, True, True, False, False, False]
    assert top_k_mask(s, 0).sum() == 0 and top_k_mask(s, 6).all()
    assert top_k_mask(s, 2, largest=False).tolist() == [True, False, False, False, True, False]
    big = torch.randint(0, 5, (1000,)).float()
    for k in (1, 17, 500, 999):
        m = top_k_mask(big, k)
        assert int(m.sum()) == k
        assert big[m].min() >= big[~m].max()


# -- dynamic sparse training -----------------------------------------------------------


@pytest.mark.parametrize("grow", ["rigl", "set", "momentum"])
@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_dst_exact_counts_and_zeroed_state_after_every_update(grow, opt_name):
    model = mlp()
    opt = OPTIMIZERS[opt_name](model.parameters())
    X, y = data()
    sparse = DynamicSparsity(
        model, opt, density=0.3, grow=grow, distribution="uniform", update_every=3,
        drop_fraction=0.5, total_steps=60, end=None,
    )  # fmt: skip
    counts = {k: int(m.sum()) for k, m in sparse.masks.items()}
    assert counts == {k: round(0.3 * p.numel()) for k, p in sparse.params.items()}
    rates = [sparse.itop_rate]
    for step in range(1, 31):
        before = {k: m.clone() for k, m in sparse.masks.items()}
        train(model, opt, X, y, 1)
        changed = False
        for k, m in sparse.masks.items():
            assert int(m.sum()) == counts[k], f"count of {k} drifted at step {step}"
            p = sparse.params[k]
            assert torch.all(p[~m] == 0)
            grown = m & ~before[k]
            changed |= bool(grown.any())
            for v in opt.state[p].values():
                if torch.is_tensor(v) and v.shape == p.shape:
                    assert torch.all(v[~m] == 0), "optimizer state outside the mask"
                    if step % 3 == 0:
                        assert torch.all(v[grown] == 0), "state of grown weights not reset"
            if step % 3 == 0:
                assert torch.all(p[grown] == 0), "grown weights must start at 0"
        if step % 3 == 0:
            assert changed, "an update must move weights"
        rates.append(sparse.itop_rate)
    assert all(b >= a for a, b in pairwise(rates))
    assert rates[-1] > 0.3
    assert len(sparse.history) == 10
    assert all(r["moved"] > 0 for r in sparse.history)
    frac = [r["drop_fraction"] for r in sparse.history]
    assert all(b < a for a, b in pairwise(frac))  # cosine decay


def test_momentum_growth_explores_beyond_the_static_mask():
    """The ITOP-code defect: reading zeroed optimizer momenta regrows what was dropped."""
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    X, y = data()
    sparse = DynamicSparsity(
        model, opt, density=0.2, grow="momentum", update_every=5, total_steps=50
    )
    train(model, opt, X, y, 50)
    assert sparse.itop_rate > 0.21


def test_rigl_grows_the_largest_dense_gradients():
    model = mlp(widths=(30,))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # weights fixed: only the masks move
    X, y = data()
    sparse = DynamicSparsity(
        model, opt, 0.2, distribution="uniform", update_every=1, drop_fraction=0.25,
        decay="constant", end=None,
    )  # fmt: skip
    before = {k: m.clone() for k, m in sparse.masks.items()}
    opt.zero_grad()
    nn.functional.cross_entropy(model(X), y).backward()
    dense = {k: p.grad.abs().clone() for k, p in sparse.params.items()}
    opt.step()
    for k, m in sparse.masks.items():
        grown = m & ~before[k]
        inactive = ~before[k]
        # every grown weight has a dense gradient at least as large as any inactive one left out
        assert dense[k][grown].min() >= dense[k][inactive & ~m].max()


def test_density_one_is_a_no_op():
    model = mlp()
    ref = copy.deepcopy(model)
    opt, opt_ref = (torch.optim.SGD(m.parameters(), lr=0.1) for m in (model, ref))
    DynamicSparsity(model, opt, density=1.0, update_every=2, total_steps=10)
    X, y = data()
    train(model, opt, X, y, 6)
    train(ref, opt_ref, X, y, 6)
    for a, b in zip(model.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("grow", ["rigl", "set", "momentum"])
def test_state_dict_round_trip_resumes_bit_for_bit(grow, tmp_path):
    X, y = data(n=96)

    def make():
        model = mlp()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        sparse = DynamicSparsity(model, opt, 0.25, grow=grow, update_every=4, total_steps=40)
        return model, opt, sparse

    model, opt, sparse = make()
    train(model, opt, X, y, 40)
    model2, opt2, sparse2 = make()
    train(model2, opt2, X, y, 18)
    path = tmp_path / "ckpt.pt"
    torch.save(
        {"model": model2.state_dict(), "opt": opt2.state_dict(), "sparse": sparse2.state_dict()},
        path,
    )
    model3, opt3, sparse3 = make()
    ckpt = torch.load(path)
    model3.load_state_dict(ckpt["model"])
    opt3.load_state_dict(ckpt["opt"])
    sparse3.load_state_dict(ckpt["sparse"])
    # the continuation sees the same batches as the uninterrupted run
    for k in range(18, 40):
        i = (k * 16) % X.shape[0]
        opt3.zero_grad()
        nn.functional.cross_entropy(model3(X[i : i + 16]), y[i : i + 16]).backward()
        opt3.step()
    for a, b in zip(model.parameters(), model3.parameters(), strict=True):
        assert torch.equal(a, b)
    for k in sparse.masks:
        assert torch.equal(sparse.masks[k], sparse3.masks[k])
        assert torch.equal(sparse.fired[k], sparse3.fired[k])
    assert sparse.history == sparse3.history


@pytest.mark.parametrize("fused", [False, True])  # fused: the step runs and skips itself
def test_skipped_amp_steps_are_not_counted(fused):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, fused=fused)
    sparse = DynamicSparsity(model, opt, 0.3, update_every=2, total_steps=10)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    X, y = data()
    for poison in (False, True, False):
        opt.zero_grad()
        scaler.scale(nn.functional.cross_entropy(model(X), y)).backward()
        if poison:
            model[0].weight.grad[0, 0] = float("inf")
        scaler.step(opt)
        scaler.update()
    assert sparse.step_count == 2
    assert len(sparse.history) == 1


def test_torch_compile_and_line_search_optimizers():
    model = mlp()
    opt = AdaSLS(model.parameters(), n_batches_per_epoch=4)
    sparse = DynamicSparsity(model, opt, 0.3, update_every=2, total_steps=8)
    compiled = torch.compile(model, backend="eager")
    X, y = data()
    for _ in range(8):

        def closure():
            opt.zero_grad()
            loss = nn.functional.cross_entropy(compiled(X), y)
            loss.backward()
            return loss

        opt.step(closure)
    for k, m in sparse.masks.items():
        p = sparse.params[k]
        assert torch.all(p[~m] == 0)
        for v in opt.state[p].values():  # the closure's own gradients were masked
            if torch.is_tensor(v) and v.shape == p.shape:
                assert torch.all(v[~m] == 0)
    assert sparse.step_count == 8
    assert [h["step"] for h in sparse.history] == [2, 4, 6]  # end = 0.75 * total_steps


def _ddp_worker(rank, world, init_file, out_dir, grow):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    model = nn.parallel.DistributedDataParallel(mlp())
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    # a different seed and different data on each rank: rank 0's masks must win
    sparse = DynamicSparsity(model, opt, 0.2, grow=grow, update_every=2, total_steps=20, seed=rank)
    X, y = data(seed=10 + rank)
    train(model, opt, X, y, 20)
    out = {k: m for k, m in sparse.masks.items()}
    out["params"] = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.parametrize("grow", ["set", "rigl"])
def test_ddp_masks_identical_on_two_ranks(grow, tmp_path):
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available():
        pytest.skip("this torch build has no torch.distributed (some macOS/Windows wheels)")
    args = (2, str(tmp_path / "init"), str(tmp_path), grow)
    mp.spawn(_ddp_worker, args=args, nprocs=2, join=True)
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert r0.keys() == r1.keys()
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k


def _subgroup_worker(rank, world, init_file, out_dir):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    groups = [dist.new_group([0]), dist.new_group([1, 2])]  # every rank creates both
    group = groups[0] if rank == 0 else groups[1]
    model = nn.parallel.DistributedDataParallel(mlp(), process_group=group)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sparse = DynamicSparsity(
        model, opt, 0.2, grow="set", update_every=2, total_steps=20, seed=rank,
        process_group=group,
    )  # fmt: skip
    X, y = data(seed=10 + rank)
    train(model, opt, X, y, 20)
    torch.save(dict(sparse.masks), os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_process_group_masks_follow_the_groups_first_rank(tmp_path):
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available():
        pytest.skip("this torch build has no torch.distributed (some macOS/Windows wheels)")
    mp.spawn(_subgroup_worker, args=(3, str(tmp_path / "init"), str(tmp_path)), nprocs=3)
    r0, r1, r2 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(3))
    # ranks 1 and 2 (one group, broadcast from global rank 1) agree; rank 0 trains alone
    assert all(torch.equal(r1[k], r2[k]) for k in r1)
    assert not all(torch.equal(r0[k], r1[k]) for k in r0)


def test_mask_broadcast_groups_by_device_and_chunks(monkeypatch):
    # a stubbed 2-rank world: "rank 0" sends all-True masks; masks on two devices
    # ("meta" stands in for a second GPU) go in separate buffers of at most _SYNC_CHUNK
    import torch.distributed as dist

    import solvers.torch.masks as masks_module

    calls = []

    def broadcast(buf, src, group=None):
        calls.append((buf.device.type, buf.numel(), src))
        if buf.device.type == "cpu":
            buf.fill_(1)

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(dist, "broadcast", broadcast)
    monkeypatch.setattr(masks_module, "_SYNC_CHUNK", 5)
    cpu = [torch.zeros(n, dtype=torch.bool) for n in (3, 3, 4)]
    meta = [torch.zeros(2, 2, dtype=torch.bool, device="meta")]
    fake = type("Controller", (), {"process_group": None})()
    MaskedTraining._sync(fake, [cpu[0], meta[0], cpu[1], cpu[2]])
    assert calls == [("cpu", 6, 0), ("cpu", 4, 0), ("meta", 4, 0)]
    assert all(bool(m.all()) for m in cpu)


# -- pruning -----------------------------------------------------------------------------


def test_gradual_magnitude_pruning_follows_the_cubic_schedule():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    gmp = GradualMagnitudePruning(model, opt, 0.1, start=2, end=20, update_every=4)
    X, y = data()
    seen = []
    for _ in range(24):
        prev = {k: m.clone() for k, m in gmp.masks.items()}
        train(model, opt, X, y, 1)
        for k, m in gmp.masks.items():
            assert not (m & ~prev[k]).any(), "pruned weights never come back"
        seen.append(gmp.density)
    assert [h["step"] for h in gmp.history] == [2, 6, 10, 14, 18, 20]
    dens = [h["density"] for h in gmp.history]
    assert dens[0] == 1.0 and dens[-1] == 0.1
    assert all(b < a for a, b in pairwise(dens[1:]))
    for k, p in gmp.params.items():
        assert int(gmp.masks[k].sum()) == round(0.1 * p.numel())
    assert gmp.density_at(11) == pytest.approx(0.1 + 0.9 * (1 - 9 / 18) ** 3)


@pytest.mark.parametrize("criterion", ["snip", "grasp", "synflow", "magnitude", "random"])
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_prune_at_init_counts(criterion, scope):
    model = mlp()
    before = copy.deepcopy(model.state_dict())
    X, y = data()
    masks = prune_at_init(
        model, 0.1, criterion, data=[(X[:32], y[:32]), (X[32:], y[32:])], input_shape=(20,),
        scope=scope, iterations=5,
    )  # fmt: skip
    params = select_layers(model)
    total = sum(p.numel() for p in params.values())
    if scope == "global":
        assert sum(int(m.sum()) for m in masks.values()) == round(0.1 * total)
    else:
        for k, p in params.items():
            assert int(masks[k].sum()) == round(0.1 * p.numel())
    for k, v in model.state_dict().items():  # scored on a copy
        assert torch.equal(v, before[k])


def test_snip_and_synflow_scores_match_their_definitions():
    from solvers.torch.pruning import snip_scores, synflow_scores

    model = mlp()
    params = select_layers(model)
    X, y = data()
    scores = snip_scores(model, params, [(X, y)], nn.functional.cross_entropy)
    nn.functional.cross_entropy(model(X), y).backward()
    for k, p in params.items():
        torch.testing.assert_close(scores[k], (p * p.grad).abs())
    # SynFlow on a linear chain: R = 1^T |W3| |W2| |W1| 1
    chain = nn.Sequential(nn.Linear(4, 3, bias=False), nn.Linear(3, 2, bias=False))
    sf = synflow_scores(chain, select_layers(chain), (4,))
    w1 = chain[0].weight.detach().abs().double()
    w2 = chain[1].weight.detach().abs().double()
    expected_1 = w1 * (w2.sum(0)[:, None] * torch.ones(1, 4, dtype=torch.float64))
    torch.testing.assert_close(sf["0.weight"], expected_1)


def test_lottery_ticket_rounds_nest_and_rewind():
    model = mlp()
    init = copy.deepcopy(model.state_dict())
    ticket = LotteryTicket(model)
    X, y = data()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train(model, opt, X, y, 10)
    m1 = ticket.next_masks(0.2)
    total = sum(m.numel() for m in m1.values())
    assert sum(int(m.sum()) for m in m1.values()) == round(0.8 * total)
    ticket.rewind()
    for k, v in model.state_dict().items():
        expected = init[k] * m1[k] if k in m1 else init[k]
        assert torch.equal(v, expected)
    m2 = ticket.next_masks(0.5)
    assert all(not (m2[k] & ~m1[k]).any() for k in m1)
    assert sum(int(m.sum()) for m in m2.values()) == round(0.4 * total)


def test_isometry_restoration():
    model = mlp(widths=(30,))
    masks = magnitude_masks(model, 0.5, scope="layer")
    a = (model[0].weight.detach() * masks["0.weight"]).T  # 20 x 40 -> its 20 x 20 Gram
    before = float(((a @ a.T - torch.eye(20)) ** 2).sum().sqrt())
    res = approximate_isometry_(model, masks, iterations=300, lr=1e-2)
    w = model[0].weight.detach()
    assert torch.all(w[~masks["0.weight"]] == 0)
    assert res["0.weight"] < before / 5
    dense = mlp(widths=(30,))
    orthogonalize_(dense)
    w = dense[0].weight.detach().double()  # 30 x 20: orthonormal columns
    torch.testing.assert_close(w.T @ w, torch.eye(20, dtype=torch.float64), atol=1e-5, rtol=0)


# -- SSGD -------------------------------------------------------------------------------


@pytest.mark.parametrize("reweighting", ["l2", "l1"])
def test_ssgd_transform_is_the_normalised_affine_scaling(reweighting):
    model = mlp(widths=(10,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    SSGD(model, opt, lam=1e-3, eps=1e-4, reweighting=reweighting)
    X, y = data()
    opt.zero_grad()
    nn.functional.cross_entropy(model(X), y).backward()
    w = model[0].weight.detach().clone()
    g = model[0].weight.grad.clone()
    b_grad = model[0].bias.grad.clone()
    opt.step()
    if reweighting == "l2":
        w2, dg = w * w + 1e-4, 2 * w / (w * w + 1e-4)
    else:
        w2, dg = (w.abs() + 1e-4) ** 2, torch.sign(w) / (w.abs() + 1e-4)
    s = w2 / w2.mean()
    torch.testing.assert_close(model[0].weight.grad, s * (g + 1e-3 * dg))
    torch.testing.assert_close(model[0].bias.grad, b_grad)  # biases are not scaled
    with pytest.raises(ValueError, match="reweighting"):
        SSGD(model, opt, reweighting="l0")


def _steps_with_scaler(model, opt, X, y, steps, scaler, poison_at=()):
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


@pytest.mark.parametrize("reweighting", ["l2", "l1"])
def test_ssgd_under_grad_scaler_with_a_fused_optimizer_matches_the_unscaled_step(reweighting):
    # a fused optimizer unscales in its kernel: the penalty must be scaled like the gradient
    X, y = data()
    params = []
    for fused, scaler in ((False, None), (True, torch.amp.GradScaler("cpu", init_scale=2.0**10))):
        model = mlp(widths=(10,))
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, fused=fused)
        SSGD(model, opt, lam=1e-2, eps=1e-4, reweighting=reweighting)
        _steps_with_scaler(model, opt, X, y, 3, scaler)
        params.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    torch.testing.assert_close(params[1], params[0])


def test_momentum_growth_under_grad_scaler_with_a_fused_optimizer():
    # the controller's EMA sees unscaled gradients and skips the step GradScaler skips
    X, y = data()
    runs = []
    for fused, scaler in ((False, None), (True, torch.amp.GradScaler("cpu", init_scale=2.0**10))):
        model = mlp()
        opt = torch.optim.SGD(model.parameters(), lr=0.05, fused=fused)
        sparse = DynamicSparsity(
            model, opt, 0.3, grow="momentum", update_every=3, end=None, decay="constant"
        )
        _steps_with_scaler(model, opt, X, y, 7 if fused else 6, scaler, (2,) if fused else ())
        assert sparse.step_count == 6 and len(sparse.history) == 2
        runs.append(sparse)
    for k in runs[0].masks:
        assert torch.isfinite(runs[1]._ema[k]).all()
        torch.testing.assert_close(runs[1]._ema[k], runs[0]._ema[k])
        assert torch.equal(runs[1].masks[k], runs[0].masks[k])


# -- export ------------------------------------------------------------------------------


def test_exports_compute_the_masked_function():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    sparse = StaticSparsity(model, opt, 0.1)
    X, y = data()
    train(model, opt, X, y, 5)
    ref = model(X)
    plain = export_dense(model, sparse)
    torch.testing.assert_close(plain(X), ref)
    csr = export_sparse(model, sparse)
    assert type(csr[0]).__name__ == "SparseLinear"
    assert csr[0].weight.layout == torch.sparse_csr
    assert csr[0].weight._nnz() == int(sparse.masks["0.weight"].sum())
    torch.testing.assert_close(csr(X), ref, atol=1e-5, rtol=1e-5)
    pruned = to_torch_prune(copy.deepcopy(model), sparse.masks)
    assert hasattr(pruned[0], "weight_orig") and hasattr(pruned[0], "weight_mask")
    torch.testing.assert_close(pruned(X), ref)
    back = from_torch_prune(pruned)
    for k, m in sparse.masks.items():
        assert torch.equal(back[k], m)
    with pytest.raises(ValueError, match=r"no torch\.nn\.utils\.prune"):
        from_torch_prune(mlp())


# -- neuron splitting ----------------------------------------------------------------------


def smooth_net():
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 5), nn.Softplus(), nn.Linear(5, 3)
    ).double()


def split_data():
    g = torch.Generator().manual_seed(4)
    X = torch.randn(200, 6, generator=g, dtype=torch.float64)
    return X, torch.randint(0, 3, (200,), generator=g)


def loss_of(model, X, y):
    with torch.no_grad():
        return float(nn.functional.cross_entropy(model(X), y))


@pytest.mark.parametrize("signed", [False, True])
def test_splitting_keeps_the_function_and_lowers_the_loss_as_predicted(signed):
    net = smooth_net()
    X, y = split_data()
    splitter = NeuronSplitting(net, signed=signed)
    splitter.score([(X[:100], y[:100]), (X[100:], y[100:])])
    change = splitter.predicted_change()
    (i, j, _), *_ = splitter.select(1)
    assert float(change[i][j]) < 0
    diffs = []
    for eps in (1e-2, 5e-3):
        grown = splitter.split(1, eps=eps, warn=False)
        assert grown[i].out_features == net[i].out_features + 1
        with torch.no_grad():
            diffs.append(float((grown(X) - net(X)).abs().max()))
        actual = (loss_of(grown, X, y) - loss_of(net, X, y)) / (eps**2 / 2)
        assert actual == pytest.approx(float(change[i][j]), rel=0.02)
    assert diffs[1] < diffs[0] / 3  # O(eps^2): halving eps quarters the change
    assert loss_of(net, X, y) > loss_of(grown, X, y)


def test_signed_split_uses_lambda_max():
    net = smooth_net()
    X, y = split_data()
    splitter = NeuronSplitting(net, signed=True)
    eigen = splitter.score([(X, y)])
    change = splitter.predicted_change()
    for i, e in eigen.items():
        torch.testing.assert_close(change[i], torch.minimum(e.lambda_min, -0.5 * e.lambda_max))
        assert torch.all(change[i] <= e.lambda_min)


def test_split_budget_and_several_layers():
    net = smooth_net()
    X, y = split_data()
    splitter = NeuronSplitting(net, signed=True)
    splitter.score([(X, y)])
    grown = splitter.split(4, eps=1e-3, warn=False)
    added = (grown[0].out_features - 4) + (grown[2].out_features - 5)
    assert 0 < added <= 4
    assert grown[2].in_features == grown[0].out_features
    assert grown[4].in_features == grown[2].out_features
    assert float((grown(X) - net(X)).abs().max()) < 1e-4
    with pytest.warns(UserWarning, match="create a new optimizer"):
        splitter.split(1)


def test_lanczos_matches_the_exact_eigenpairs():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(400, 50, generator=g, dtype=torch.float64)
    C = torch.randn(400, 6, generator=g, dtype=torch.float64)
    exact, lanczos = _exact_eigen(X, C, 400), _lanczos_eigen(X, C, 400, 50, 0)
    torch.testing.assert_close(lanczos.lambda_min, exact.lambda_min)
    torch.testing.assert_close(lanczos.lambda_max, exact.lambda_max)
    overlap = (lanczos.v_min * exact.v_min).sum(1).abs()
    torch.testing.assert_close(overlap, torch.ones(6, dtype=torch.float64))


def test_not_splittable_layers_are_named():
    with pytest.raises(ValueError, match=r"no splittable layer.*ReLU"):
        NeuronSplitting(mlp())
    with pytest.raises(ValueError, match=r"layer 4 .*not splittable"):
        NeuronSplitting(smooth_net(), layers=[4])
    with pytest.raises(TypeError, match="Sequential"):
        NeuronSplitting(nn.Linear(3, 3))
    with pytest.raises(RuntimeError, match="call score"):
        NeuronSplitting(smooth_net()).split(1)


def conv_net(padding=1, stride=1, head="conv", pool=True, bias=True, padding_mode="zeros"):
    torch.manual_seed(6)
    layers = [
        nn.Conv2d(2, 3, 3, padding=padding, stride=stride, bias=bias, padding_mode=padding_mode),
        nn.Tanh(),
    ]
    if pool:
        layers.append(nn.AvgPool2d(2))
    if head == "conv":
        layers += [nn.Conv2d(3, 4, 3), nn.Softplus(), nn.Flatten(), nn.LazyLinear(3)]
    else:
        layers += [nn.Flatten(), nn.LazyLinear(3)]
    net = nn.Sequential(*layers).double()
    net(torch.zeros(1, 2, 8, 8, dtype=torch.float64))  # materialise the lazy layer
    return net


def conv_data(n=60):
    g = torch.Generator().manual_seed(7)
    X = torch.randn(n, 2, 8, 8, generator=g, dtype=torch.float64)
    return X, torch.randint(0, 3, (n,), generator=g)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"padding": "same", "pool": False, "head": "flatten", "bias": False},
        {"padding": 0, "stride": 2, "pool": False, "padding_mode": "zeros"},
        {"padding": 1, "padding_mode": "reflect", "head": "flatten"},
    ],
)
def test_conv_splitting_matrix_is_the_sum_over_positions(kw):
    """S_j from unfold equals the definition, with patches cut out by hand."""
    net = conv_net(**kw)
    X, y = conv_data(20)
    splitter = NeuronSplitting(net, layers=[0])
    eig = splitter.score([(X[:10], y[:10]), (X[10:], y[10:])])
    conv = net[0]
    z = conv(X)
    h = torch.tanh(z)
    rest = net[2:]
    g = torch.autograd.grad(nn.functional.cross_entropy(rest(h), y, reduction="sum"), h)[0]
    c = (g * -2 * torch.tanh(z) * (1 - torch.tanh(z) ** 2)).detach()
    padding, mode = kw.get("padding", 1), kw.get("padding_mode", "zeros")
    pad = (1, 1, 1, 1) if padding == "same" else (padding,) * 4
    Xp = nn.functional.pad(X, pad, mode="constant" if mode == "zeros" else mode)
    stride = kw.get("stride", 1)
    d = 2 * 9 + (conv.bias is not None)
    S = torch.zeros(3, d, d, dtype=torch.float64)
    for a in range(z.shape[2]):
        for b_ in range(z.shape[3]):
            patch = Xp[:, :, a * stride : a * stride + 3, b_ * stride : b_ * stride + 3]
            x = patch.reshape(X.shape[0], -1)
            if conv.bias is not None:
                x = torch.cat([x, torch.ones(X.shape[0], 1, dtype=x.dtype)], 1)
            for j in range(3):
                S[j] += (x * c[:, j, a, b_, None]).T @ x
    vals = torch.linalg.eigvalsh(S / X.shape[0])
    torch.testing.assert_close(eig[0].lambda_min, vals[:, 0])
    torch.testing.assert_close(eig[0].lambda_max, vals[:, -1])


@pytest.mark.parametrize(
    "kw",
    [
        {"kernel_size": 4, "padding": "same"},
        {"kernel_size": (3, 2), "padding": "same", "dilation": 2},
        {"kernel_size": 3, "padding": (2, 1), "stride": (2, 1), "padding_mode": "circular"},
        {"kernel_size": 3, "padding": 1, "padding_mode": "replicate"},
        {"kernel_size": 2, "padding": "valid", "stride": 2},
    ],
)
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
def test_conv_patches_reproduce_the_convolution(kw):
    torch.manual_seed(8)
    conv = nn.Conv2d(2, 3, bias=False, **kw).double()
    x = torch.randn(4, 2, 9, 7, dtype=torch.float64)
    z = conv(x).detach()
    rows = _patches(conv, x) @ conv.weight.detach().reshape(3, -1).T
    torch.testing.assert_close(rows, z.permute(0, 2, 3, 1).reshape(-1, 3))


@pytest.mark.parametrize("head", ["conv", "flatten"])
def test_conv_splitting_keeps_the_function_and_lowers_the_loss_as_predicted(head):
    net = conv_net(head=head)
    X, y = conv_data()
    splitter = NeuronSplitting(net, layers=[0])
    splitter.score([(X, y)])
    change = splitter.predicted_change()[0]
    (_, j, _), *_ = splitter.select(1)
    assert float(change[j]) < 0
    diffs = []
    for eps in (1e-2, 5e-3):
        grown = splitter.split(1, eps=eps, warn=False)
        assert grown[0].out_channels == 4
        assert (grown[3].in_channels if head == "conv" else grown[4].in_features) == (
            4 if head == "conv" else 4 * 16
        )
        with torch.no_grad():
            diffs.append(float((grown(X) - net(X)).abs().max()))
        actual = (loss_of(grown, X, y) - loss_of(net, X, y)) / (eps**2 / 2)
        assert actual == pytest.approx(float(change[j]), rel=0.02)
    assert diffs[1] < diffs[0] / 3  # O(eps^2)


def test_conv_and_linear_layers_split_together():
    net = conv_net()
    X, y = conv_data()
    splitter = NeuronSplitting(net, signed=True)
    assert set(splitter.layers) == {0, 3}
    splitter.score([(X, y)])
    grown = splitter.split(3, eps=1e-3, warn=False)
    assert grown[0].out_channels + grown[3].out_channels > 3 + 4
    assert grown[3].in_channels == grown[0].out_channels
    assert grown[6].in_features == grown[3].out_channels * 4  # 2 x 2 positions
    assert float((grown(X) - net(X)).abs().max()) < 1e-4


def test_conv_layers_that_cannot_split_are_refused():
    bn = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Tanh(), nn.BatchNorm2d(3), nn.Conv2d(3, 2, 3))
    grouped = nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.Tanh(), nn.Conv2d(4, 2, 3))
    pool_first = nn.Sequential(nn.Conv2d(2, 3, 3), nn.AvgPool2d(2), nn.Tanh(), nn.Conv2d(3, 2, 1))
    # max pooling of the two offspring changes the function at first order near ties
    max_pool = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Tanh(), nn.MaxPool2d(2), nn.Conv2d(3, 2, 1))
    for net in (bn, grouped, pool_first, max_pool):
        with pytest.raises(ValueError, match=r"no splittable layer.*max pooling is not smooth"):
            NeuronSplitting(net)
    assert set(splittable_layers(conv_net(head="flatten"))) == {0}


@pytest.mark.parametrize("conv", [False, True])
def test_in_place_activations_give_the_same_splitting_matrices(conv):
    X = torch.randn(12, 2, 6, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (12,))
    eig = []
    for inplace in (False, True):
        torch.manual_seed(4)
        if conv:
            layers = [nn.Conv2d(2, 3, 3), nn.SiLU(inplace=inplace), nn.Flatten(), nn.LazyLinear(3)]
        else:
            layers = [nn.Flatten(), nn.Linear(72, 5), nn.SiLU(inplace=inplace), nn.Linear(5, 3)]
        net = nn.Sequential(*layers).double()
        net(X)
        eig.append(NeuronSplitting(net).score([(X, y)]))
    for i in eig[0]:
        torch.testing.assert_close(eig[1][i].lambda_min, eig[0][i].lambda_min)
        torch.testing.assert_close(eig[1][i].lambda_max, eig[0][i].lambda_max)


# -- ExpandNets ----------------------------------------------------------------------------


def test_expandnet_contracts_exactly():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 5, padding=2),
        nn.Flatten(), nn.Linear(5 * 4 * 4, 7), nn.Tanh(), nn.Linear(7, 2),
    ).double()  # fmt: skip
    expanded = expand(copy.deepcopy(model), ratio=3)
    assert type(expanded[0]).__name__ == "ExpandedConv2d"
    assert type(expanded[4]).__name__ == "ExpandedLinear"
    n_exp = sum(p.numel() for p in expanded.parameters())
    assert n_exp > sum(p.numel() for p in model.parameters())
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    for p in expanded.parameters():  # train-like perturbation: biases matter too
        p.data.add_(0.1 * torch.randn_like(p))
    y = expanded(x)
    small = contract(copy.deepcopy(expanded))
    assert [type(m) for m in small] == [type(m) for m in model]
    torch.testing.assert_close(small(x), y, rtol=1e-10, atol=1e-12)
    single = expand(nn.Linear(3, 2).double(), ratio=2)
    torch.testing.assert_close(
        contract(single)(torch.ones(1, 3, dtype=torch.float64)),
        single(torch.ones(1, 3, dtype=torch.float64)),
    )


def test_sparse_init_restores_the_dense_unit_variance():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sparse = StaticSparsity(model, opt, 0.1, distribution="uniform")
    before = {k: p.detach().clone() for k, p in sparse.params.items()}
    sparse.rescale_init_()
    for k, p in sparse.params.items():
        m = sparse.masks[k]
        scale = (m.shape[1] / m.sum(1).clamp_min(1)).sqrt()[:, None]
        torch.testing.assert_close(p.detach(), before[k] * scale)
        assert torch.all(p[~m] == 0)


def test_tied_embedding_head_stays_dense():
    class TiedLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(50, 8)
            self.fc = nn.Linear(8, 8)
            self.head = nn.Linear(8, 50, bias=False)
            self.head.weight = self.emb.weight

    assert list(select_layers(TiedLM())) == ["fc.weight"]


def test_nan_scores_never_displace_real_ones():
    s = torch.tensor([0.5, float("nan"), 0.1, 0.9])
    assert top_k_mask(s, 2).tolist() == [True, False, False, True]
    assert top_k_mask(s, 2, largest=False).tolist() == [True, False, True, False]


def test_grasp_scores_match_their_definition():
    from solvers.torch.pruning import grasp_scores

    model = mlp(widths=(8,))
    params = select_layers(model)
    X, y = data()
    scores = grasp_scores(model, params, [(X, y)], nn.functional.cross_entropy, temperature=5.0)
    w = list(params.values())
    g = torch.autograd.grad(nn.functional.cross_entropy(model(X) / 5.0, y), w, create_graph=True)
    gd = [t.detach() for t in g]
    hg = torch.autograd.grad(sum((a * b).sum() for a, b in zip(g, gd, strict=True)), w)
    for (k, p), h in zip(params.items(), hg, strict=True):
        torch.testing.assert_close(scores[k], p.detach() * h)


def test_splitting_a_layer_without_bias():
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(6, 4, bias=False), nn.Tanh(), nn.Linear(4, 3)).double()
    X, y = split_data()
    splitter = NeuronSplitting(net)
    eig = splitter.score([(X, y)])
    assert eig[0].v_min.shape == (4, 6)
    (_, j, _), *_ = splitter.select(1)
    eps = 1e-3
    grown = splitter.split(1, eps=eps, warn=False)
    actual = (loss_of(grown, X, y) - loss_of(net, X, y)) / (eps**2 / 2)
    assert actual == pytest.approx(float(eig[0].lambda_min[j]), rel=0.02)
