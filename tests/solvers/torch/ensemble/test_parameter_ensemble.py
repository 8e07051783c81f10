# SPDX-License-Identifier: BSD-3-Clause
"""ParameterEnsemble: moments against stored snapshots and torch.optim.swa_utils, members,
predictions, masks, checkpoints and bad input."""

import copy
import math

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn

from solvers.torch import AdaSLS, ParameterEnsemble, StaticSparsity
from solvers.torch.ensemble import RunningMoments


def make_model(batchnorm=False, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    layers = [nn.Linear(6, 12)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(12))
    layers += [nn.Tanh(), nn.Linear(12, 3)]
    return nn.Sequential(*layers).to(dtype)


def make_data(n=64, seed=1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g, dtype=dtype), torch.randint(0, 3, (n,), generator=g)


def train(model, opt, X, y, steps, batch=16, closure=False, snapshots=None, first=0):
    for k in range(first, first + steps):
        i = (k * batch) % len(X)

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
        if snapshots is not None:
            snapshots.append({k: p.detach().clone() for k, p in model.named_parameters()})


def stacked(snapshots, name):
    return torch.stack([s[name] for s in snapshots])


@pytest.mark.parametrize("every", [1, 3])
def test_mean_is_swa_average_and_variance_is_that_of_the_collected_weights(every):
    X, y = make_data(dtype=torch.float64)
    model = make_model(dtype=torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    start = 5
    ens = ParameterEnsemble(model, opt, start=start, every=every, rank=4)
    swa = AveragedModel(model)
    snapshots = []
    for t in range(1, 21):
        train(model, opt, X, y, 1, snapshots=None)
        if t > start and (t - start) % every == 0:
            swa.update_parameters(model)
            snapshots.append({k: p.detach().clone() for k, p in model.named_parameters()})
    assert ens.n_collected == len(snapshots) == 15 // every
    mean, var = ens.mean(), ens.variance()
    for (name, p), p_swa in zip(model.named_parameters(), swa.module.parameters(), strict=True):
        torch.testing.assert_close(mean[name], p_swa, rtol=1e-12, atol=1e-12)
        w = stacked(snapshots, name)
        torch.testing.assert_close(var[name], w.var(0, unbiased=False), rtol=1e-9, atol=1e-14)
        # the last K deviations from the running mean (SWAG's D), in the ring buffer
        means = torch.cumsum(w, 0) / torch.arange(1, len(w) + 1, dtype=w.dtype).reshape(
            -1, *[1] * p.dim()
        )
        devs = ens.moments.deviations[name]
        for j in range(len(w) - 4, len(w)):
            torch.testing.assert_close(devs[j % 4], w[j] - means[j], rtol=1e-9, atol=1e-12)


def test_float32_variance_survives_a_large_mean():
    """Welford's sum of squared deviations: the SWAG formula E[w^2] - E[w]^2 loses all digits."""
    g = torch.Generator().manual_seed(0)
    snaps = (100.0 + 1e-3 * torch.randn(50, 200, generator=g, dtype=torch.float64)).float()
    moments = RunningMoments({"w": torch.zeros(200)})
    for s in snaps:
        moments.update_({"w": s})
    exact = snaps.double().var(0, unbiased=False)
    got = moments.variance()["w"].double()
    assert float((got - exact).norm() / exact.norm()) < 0.05
    naive = ((snaps**2).mean(0) - snaps.mean(0) ** 2).double()  # float32, SWAG's way
    assert float((naive - exact).norm() / exact.norm()) > 1.0


def test_collects_once_per_step_with_closures_and_line_search_trials():
    X, y = make_data()
    model = make_model()
    opt = AdaSLS(model.parameters(), n_batches_per_epoch=4)
    ens = ParameterEnsemble(model, opt)
    train(model, opt, X, y, 7, closure=True)
    assert ens.step_count == ens.n_collected == 7
    assert opt.totals["forwards"] > 7  # trials ran, and were not collected


def test_samples_follow_the_swag_distribution():
    """Empirical mean/covariance of many members: mu, scale (diag(sigma^2) + D D^T / (K - 1))."""
    torch.manual_seed(0)
    model = nn.Linear(2, 1).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    ens = ParameterEnsemble(model, opt, rank=3, scale=0.5)
    g = torch.Generator().manual_seed(1)
    for _ in range(6):  # random snapshots collected by hand
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
        ens.collect()
    names = ["weight", "bias"]
    mu = torch.cat([ens.mean()[k].reshape(-1) for k in names])
    var = torch.cat([ens.variance()[k].reshape(-1) for k in names])
    D = torch.cat([ens.moments.deviations[k].reshape(3, -1) for k in names], 1)
    cov = 0.5 * (torch.diag(var) + D.T @ D / 2)
    gen = torch.Generator().manual_seed(2)
    draws = torch.stack(
        [
            torch.cat([s[k].reshape(-1) for k in names])
            for s in (ens.sample(gen) for _ in range(20000))
        ]
    )
    torch.testing.assert_close(draws.mean(0), mu, atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(draws.T), cov, atol=0.03, rtol=0.05)


def test_sample_is_seeded_and_scale_zero_is_the_mean():
    X, y = make_data()
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ens = ParameterEnsemble(model, opt, rank=2, seed=5)
    train(model, opt, X, y, 6)
    a = ens.sample(torch.Generator().manual_seed(3))
    b = ens.sample(torch.Generator().manual_seed(3))
    assert all(torch.equal(a[k], b[k]) for k in a)
    c, d = ens.sample(), ens.sample()  # the ensemble's own stream moves on
    assert not torch.equal(c["0.weight"], d["0.weight"])
    zero = ens.sample(scale=0.0)
    mean = ens.mean()
    assert all(torch.equal(zero[k], mean[k]) for k in mean)


def test_predict_with_scale_zero_is_swa_with_update_bn():
    X, y = make_data()
    model = make_model(batchnorm=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ens = ParameterEnsemble(model, opt, start=4, scale=0.0)
    swa = AveragedModel(model)
    for t in range(1, 13):
        train(model, opt, X, y, 1)
        if t > 4:
            swa.update_parameters(model)
    loader = [(X[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    update_bn(loader, swa)
    swa.eval()
    with torch.no_grad():
        expected = torch.softmax(swa(X), 1)
    state = copy.deepcopy(model.state_dict())
    model.train()
    got = ens.predict(X, n_samples=2, bn_loader=loader)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # the model's own weights, BatchNorm statistics and mode are back
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_predict_averages_the_members_probabilities():
    X, y = make_data()
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    ens = ParameterEnsemble(model, opt, start=2, rank=3)
    train(model, opt, X, y, 10)
    got = ens.predict([(X[:40], y[:40]), (X[40:], y[40:])], n_samples=3, generator=None)
    g = torch.Generator().manual_seed(ens.seed)
    probas = []
    for _ in range(3):
        with ens.loaded(ens.sample(g)), torch.no_grad():
            probas.append(torch.softmax(model(X), 1))
    torch.testing.assert_close(got, torch.stack(probas).mean(0))
    torch.testing.assert_close(ens.predict(X, n_samples=3, batch_size=7), got)
    with ens.loaded(ens.mean()), torch.no_grad():
        swa = torch.softmax(model(X), 1)
    torch.testing.assert_close(ens.predict(X, n_samples=2, scale=0.0), swa)


def test_masked_weights_keep_zero_variance_and_zero_value():
    X, y = make_data()
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sparse = StaticSparsity(model, opt, density=0.3, distribution="uniform")
    ens = ParameterEnsemble(model, opt, rank=3, masks=sparse)
    plain = ParameterEnsemble(model, opt, rank=3)  # no mask: the zeros alone
    train(model, opt, X, y, 8)
    for e in (ens, plain):
        var, member = e.variance(), e.sample()
        for name, m in sparse.masks.items():
            assert torch.all(var[name][~m] == 0)
            assert torch.all(member[name][~m] == 0)
            assert torch.any(var[name][m] > 0)
    # a dict of masks: zero there even where the weights moved
    model2 = make_model()
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.1)
    mask = torch.rand(12, 6) > 0.5
    ens2 = ParameterEnsemble(model2, opt2, masks={"0.weight": mask})
    train(model2, opt2, X, y, 4)
    assert torch.all(ens2.variance()["0.weight"][~mask] == 0)
    assert torch.all(ens2.sample()["0.weight"][~mask] == 0)


def test_predict_or_sample_before_any_collection_is_a_clear_error():
    X, _ = make_data()
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ens = ParameterEnsemble(model, opt, start=10)
    before = copy.deepcopy(ens.state_dict())
    for call in (lambda: ens.predict(X), ens.sample, ens.mean, ens.variance):
        with pytest.raises(RuntimeError, match="no weights have been collected"):
            call()
    assert before["generator"].equal(ens.generator.get_state())


def test_state_dict_resumes_bit_for_bit():
    X, y = make_data()

    def run(split):
        model = make_model()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        ens = ParameterEnsemble(model, opt, start=3, rank=4)
        train(model, opt, X, y, split)
        ens.sample()
        if split == 20:
            return ens
        ckpt = copy.deepcopy(
            {"m": model.state_dict(), "o": opt.state_dict(), "e": ens.state_dict()}
        )
        model2 = make_model(seed=9)
        opt2 = torch.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9)
        ens2 = ParameterEnsemble(model2, opt2, start=3, rank=4, seed=7)
        model2.load_state_dict(ckpt["m"])
        opt2.load_state_dict(ckpt["o"])
        ens2.load_state_dict(ckpt["e"])
        train(model2, opt2, X, y, 20 - split, first=split)
        return ens2

    a, b = run(20), run(11)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["step_count"] == sb["step_count"] == 20
    for what in ("mean", "m2", "deviations"):
        for k, t in sa["moments"][what].items():
            assert torch.equal(t, sb["moments"][what][k]), (what, k)
    sample_a, sample_b = a.sample(), b.sample()
    assert all(torch.equal(sample_a[k], sample_b[k]) for k in sample_a)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"start": -1}, "start"),
        ({"every": 0}, "every"),
        ({"rank": -2}, "rank"),
        ({"scale": -0.1}, "scale"),
        ({"scale": math.nan}, "scale"),
        ({"start": 1.5}, "start"),
    ],
)
def test_bad_settings_name_the_argument_and_attach_nothing(kwargs, name):
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=repr(name)):
        ParameterEnsemble(model, opt, **kwargs)
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks


def test_bad_masks_optimizer_and_predict_arguments():
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="optimizer"):
        ParameterEnsemble(model, "sgd")
    with pytest.raises(ValueError, match="shape"):
        ParameterEnsemble(model, opt, masks={"0.weight": torch.ones(3, 3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="not a parameter"):
        ParameterEnsemble(model, opt, masks={"nope": torch.ones(3, dtype=torch.bool)})
    other = torch.optim.SGD(make_model().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="optimises none"):
        ParameterEnsemble(model, other)
    ens = ParameterEnsemble(model, opt)
    ens.collect()
    with pytest.raises(ValueError, match="'n_samples'"):
        ens.predict(torch.zeros(2, 6), n_samples=0)
    with pytest.raises(ValueError, match="'scale'"):
        ens.sample(scale=-1.0)


def test_bad_state_dict_changes_nothing():
    X, y = make_data()
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ens = ParameterEnsemble(model, opt, rank=2)
    train(model, opt, X, y, 3)
    good = copy.deepcopy(ens.state_dict())
    wrong_shape = copy.deepcopy(good)
    wrong_shape["moments"]["mean"]["0.weight"] = torch.zeros(2, 2)
    other = make_model()
    wrong_rank = ParameterEnsemble(
        other, torch.optim.SGD(other.parameters(), lr=0.1), rank=3
    ).state_dict()
    for bad in (wrong_shape, wrong_rank, {"step_count": 1}, [1], {**good, "step_count": -1}):
        with pytest.raises(ValueError):
            ens.load_state_dict(bad)
        now = ens.state_dict()
        assert now["step_count"] == good["step_count"]
        for k, t in good["moments"]["mean"].items():
            assert torch.equal(now["moments"]["mean"][k], t)


@pytest.mark.gpu
def test_collection_on_cuda_never_waits_for_the_device():
    model = make_model().cuda()
    X, y = (t.cuda() for t in make_data())
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ens = ParameterEnsemble(model, opt, rank=3)
    train(model, opt, X, y, 2)  # warm-up (lazy state creation)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for k in range(5):
            opt.zero_grad()
            nn.functional.cross_entropy(model(X[k : k + 16]), y[k : k + 16]).backward()
            opt.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert ens.n_collected == 7
    proba = ens.predict(X, n_samples=2)
    assert proba.device.type == "cuda"
    torch.testing.assert_close(proba.sum(1), torch.ones(len(X), device="cuda"))
