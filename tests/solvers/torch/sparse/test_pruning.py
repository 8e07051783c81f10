# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch.sparse.pruning: SNIP, GraSP, SynFlow, magnitude and random masks."""

import copy

import pytest
import torch
from torch import nn

from solvers.torch import magnitude_masks, masks_from_scores, prune_at_init, select_layers
from solvers.torch.sparse import pruning as pruning_module
from solvers.torch.sparse.densities import active_count, layer_densities
from solvers.torch.sparse.pruning import grasp_scores, snip_scores, synflow_scores


def assert_scores_close(actual, expected):
    """Equal up to float rounding, relative to the largest score.

    GraSP's scores are ~1e-7 at T = 200: assert_close's default atol (1e-5) would pass any.
    """
    scale = float(expected.detach().abs().max())
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("criterion", ["snip", "grasp", "synflow", "magnitude", "random"])
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_prune_at_init_counts(criterion, scope, mlp, data):
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


def test_snip_and_synflow_scores_match_their_definitions(mlp, data):
    model = mlp()
    params = select_layers(model)
    X, y = data()
    scores = snip_scores(model, params, [(X, y)], nn.functional.cross_entropy)
    nn.functional.cross_entropy(model(X), y).backward()
    for k, p in params.items():
        assert_scores_close(scores[k], (p * p.grad).abs())
    # SynFlow on a linear chain: R = 1^T |W3| |W2| |W1| 1
    chain = nn.Sequential(nn.Linear(4, 3, bias=False), nn.Linear(3, 2, bias=False))
    sf = synflow_scores(chain, select_layers(chain), (4,))
    w1 = chain[0].weight.detach().abs().double()
    w2 = chain[1].weight.detach().abs().double()
    expected_1 = w1 * (w2.sum(0)[:, None] * torch.ones(1, 4, dtype=torch.float64))
    assert_scores_close(sf["0.weight"], expected_1)


def test_grasp_scores_match_their_definition(mlp, data):
    model = mlp(widths=(8,))
    params = select_layers(model)
    X, y = data()
    scores = grasp_scores(model, params, [(X, y)], nn.functional.cross_entropy, temperature=5.0)
    w = list(params.values())
    g = torch.autograd.grad(nn.functional.cross_entropy(model(X) / 5.0, y), w, create_graph=True)
    gd = [t.detach() for t in g]
    hg = torch.autograd.grad(sum((a * b).sum() for a, b in zip(g, gd, strict=True)), w)
    for (k, p), h in zip(params.items(), hg, strict=True):
        assert_scores_close(scores[k], p.detach() * h)


class WithUnusedLayer(nn.Module):
    """A two-layer network with a third Linear that the forward pass never calls."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.body, self.head, self.unused = nn.Linear(20, 6), nn.Linear(6, 3), nn.Linear(20, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.body(x)))


class TiedPair(nn.Module):
    """``b`` shares ``a``'s weight: selected under its second name with ``include='b.weight'``."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.a, self.b = nn.Linear(20, 20, bias=False), nn.Linear(20, 20, bias=False)
        self.b.weight = self.a.weight
        self.out = nn.Linear(20, 3)

    def forward(self, x):
        return self.out(torch.tanh(self.b(torch.tanh(self.a(x)))))


def largest(magnitudes, k):
    """Boolean masks of the ``k`` largest entries over all tensors (distinct values)."""
    flat = torch.cat([v.reshape(-1) for v in magnitudes.values()])
    threshold = flat.sort(descending=True).values[k - 1]
    return {name: v >= threshold for name, v in magnitudes.items()}


def test_scores_sum_the_gradients_of_every_batch(mlp, data):
    model = mlp(widths=(8,))
    params = select_layers(model)
    X, y = data()
    batches = [(X[:40], y[:40]), (X[40:], y[40:])]
    loss_fn = nn.functional.cross_entropy
    w = list(params.values())
    total = sum(loss_fn(model(x), t) for x, t in batches)  # SNIP: sum_b dL_b/dtheta
    snip = snip_scores(model, params, batches, loss_fn)
    for (k, p), g in zip(params.items(), torch.autograd.grad(total, w), strict=True):
        assert_scores_close(snip[k], (p * g).abs().detach())
    # GraSP: g = sum_b g_b at logits / 200 (the default temperature), Hg = sum_b H_b g
    grasp = grasp_scores(model, params, batches, loss_fn)
    g = torch.autograd.grad(
        sum(loss_fn(model(x) / 200, t) for x, t in batches), w, create_graph=True
    )
    hg = torch.autograd.grad(sum((a * a.detach()).sum() for a in g), w)
    for (k, p), h in zip(params.items(), hg, strict=True):
        assert_scores_close(grasp[k], p.detach() * h)


def test_a_layer_the_output_does_not_use_scores_zero(data):
    model = WithUnusedLayer()
    params = select_layers(model)
    X, y = data()
    loss_fn = nn.functional.cross_entropy
    for scores in (
        snip_scores(model, params, [(X, y)], loss_fn),
        grasp_scores(model, params, [(X, y), (X, y)], loss_fn),
        synflow_scores(model, params, (20,)),
    ):
        assert torch.equal(scores["unused.weight"], torch.zeros(3, 20))
        assert scores["body.weight"].abs().min() > 0 and scores["head.weight"].abs().min() > 0


def test_a_tied_weight_is_scored_under_its_selected_name_with_both_uses(data):
    model = TiedPair()
    params = select_layers(model, include="b.weight")
    assert list(params) == ["b.weight"]
    X, y = data()
    scores = snip_scores(model, params, [(X, y)], nn.functional.cross_entropy)
    (g,) = torch.autograd.grad(nn.functional.cross_entropy(model(X), y), [model.a.weight])
    assert_scores_close(scores["b.weight"], (model.a.weight * g).abs().detach())
    # SynFlow on the linear chain a, b, out: R = 1^T (|W_out| |W| |W| 1 + |b_out|) in float64
    chain = nn.Sequential(model.a, model.b, model.out)
    sf = synflow_scores(chain, {"1.weight": model.b.weight}, (20,))
    twin = copy.deepcopy(chain).double()  # the copy keeps the tie
    with torch.no_grad():
        for p in twin.parameters():
            p.abs_()
    (g,) = torch.autograd.grad(twin(torch.ones(1, 20, dtype=torch.float64)).sum(), [twin[0].weight])
    assert_scores_close(sf["1.weight"], (twin[0].weight * g).detach())


def test_prune_at_init_defaults_to_snip_with_global_uniform_masks(mlp, data):
    model = mlp()
    X, y = data()
    batches = [(X[:32], y[:32]), (X[32:], y[32:])]
    params = select_layers(model)
    snip = snip_scores(model, params, batches, nn.functional.cross_entropy)
    expected = largest(snip, active_count(sum(s.numel() for s in snip.values()), 0.1))
    for masks in (prune_at_init(model, 0.1, data=batches), masks_from_scores(snip, 0.1)):
        assert all(torch.equal(masks[k], m) for k, m in expected.items())


def test_grasp_evaluates_the_loss_at_logits_over_the_temperature(mlp, data):
    model = mlp(widths=(8,))
    X, y = data()
    for temperature, kwargs in ((200.0, {}), (5.0, {"temperature": 5.0})):
        seen = []

        def loss_fn(logits, targets):
            seen.append(logits.detach())
            return nn.functional.cross_entropy(logits, targets)

        masks = prune_at_init(model, 0.3, "grasp", data=[(X, y)], loss_fn=loss_fn, **kwargs)
        assert len(seen) == 2  # the gradient pass and the Hessian-vector pass
        for logits in seen:
            torch.testing.assert_close(logits, model(X).detach() / temperature)
        scores = grasp_scores(model, select_layers(model), [(X, y)], loss_fn, temperature)
        expected = largest(scores, active_count(sum(s.numel() for s in scores.values()), 0.3))
        assert all(torch.equal(masks[k], m) for k, m in expected.items())


def test_synflow_rescores_on_the_exponential_schedule(mlp):
    # Tanaka et al. (2020), Alg. 1: score with the current masks, prune to d^(k/n), n rounds
    model = mlp(widths=(12, 10))
    params = select_layers(model)
    n = 3
    for density, scope in (
        (0.1, "global"),
        ({r"^0\.": 0.1, r"^2\.": 0.3, r"^4\.": 0.6}, "layer"),
    ):
        masks = None
        for k in range(1, n + 1):
            scores = synflow_scores(model, params, (20,), masks)
            step = (
                {p: d ** (k / n) for p, d in density.items()}
                if isinstance(density, dict)
                else density ** (k / n)
            )
            masks = masks_from_scores(scores, step, scope)
        got = prune_at_init(model, density, "synflow", input_shape=(20,), scope=scope, iterations=n)
        assert all(torch.equal(got[k], m) for k, m in masks.items()), scope
        one_shot = masks_from_scores(synflow_scores(model, params, (20,)), density, scope)
        assert not all(torch.equal(got[k], m) for k, m in one_shot.items())  # iterating matters


def test_synflow_scores_one_hundred_rounds_by_default(monkeypatch, mlp):
    rounds = []

    def counting(*args):
        rounds.append(args[3])  # the masks of the previous round
        return synflow_scores(*args)

    monkeypatch.setattr(pruning_module, "synflow_scores", counting)
    prune_at_init(mlp(widths=(6,)), 0.2, "synflow", input_shape=(20,))
    assert len(rounds) == 100 and rounds[0] is None and rounds[1] is not None


def test_random_masks_follow_the_seed_alone(mlp):
    model = mlp()
    torch.manual_seed(11)
    first = prune_at_init(model, 0.3, "random")
    torch.manual_seed(12)  # the global generator plays no part
    again = prune_at_init(model, 0.3, "random", seed=0)
    other = prune_at_init(model, 0.3, "random", seed=1)
    assert all(torch.equal(first[k], m) for k, m in again.items())
    assert not any(torch.equal(first[k], m) for k, m in other.items())


@pytest.mark.parametrize("criterion", ["magnitude", "synflow"])
def test_per_layer_distribution_reaches_the_masks(criterion, mlp):
    model = mlp()
    params = select_layers(model)
    erk = layer_densities({k: tuple(p.shape) for k, p in params.items()}, 0.2, "erk")
    assert erk != dict.fromkeys(erk, 0.2)
    kwargs = {"scope": "layer", "distribution": "erk"}
    for masks in (
        prune_at_init(model, 0.2, criterion, input_shape=(20,), iterations=2, **kwargs),
        magnitude_masks(model, 0.2, **kwargs),
    ):
        counts = {k: int(m.sum()) for k, m in masks.items()}
        assert counts == {k: active_count(p.numel(), erk[k]) for k, p in params.items()}


def test_layer_selection_reaches_the_masks(mlp, data):
    # mlp(): 0.weight (40 x 20), 2.weight (30 x 40), 4.weight (3 x 30)
    model = mlp()
    X, y = data()
    for select, names in (
        ({"exclude": r"^0\.", "min_numel": 91}, ["2.weight"]),
        ({"include": r"^[02]\.weight"}, ["0.weight", "2.weight"]),
    ):
        assert list(magnitude_masks(model, 0.5, **select)) == names
        assert list(prune_at_init(model, 0.5, "snip", data=[(X, y)], **select)) == names
    with pytest.raises(TypeError, match=r"unexpected arguments \['exlude'\]"):
        magnitude_masks(model, 0.5, exlude="^0")


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda m, d: prune_at_init(m, 0.5, "snap", data=d), ValueError,
         "'criterion' parameter of prune_at_init"),
        (lambda m, d: prune_at_init(m, 0.5, scope="both", data=d), ValueError,
         "'scope' parameter of prune_at_init"),
        (lambda m, d: masks_from_scores({"w": torch.ones(3)}, 0.5, "both"), ValueError,
         "'scope' parameter of masks_from_scores"),
        (lambda m, d: masks_from_scores({"w": torch.ones(3)}, {"w": 0.5}), ValueError,
         "^a per-layer density map needs scope='layer'$"),
        (lambda m, d: prune_at_init(m, 0.5, "snip"), ValueError,
         r"^this criterion needs data: an iterable of \(inputs, targets\) batches$"),
        (lambda m, d: prune_at_init(m, 0.5, "grasp", data=[]), ValueError,
         "^data has no batches$"),
        (lambda m, d: prune_at_init(m, 0.5, "snip", data=[d[0], (d[0][0] * torch.nan, d[0][1])]),
         ValueError, "data: the inputs of batch 1 hold NaN or inf"),
        (lambda m, d: prune_at_init(m, 0.5, "synflow"), ValueError,
         r"^SynFlow needs input_shape \(one input's shape, no batch dimension\)$"),
        (lambda m, d: prune_at_init(m, 0.5, "synflow", input_shape=(20,), iterations=0),
         ValueError, "'iterations' parameter"),
        (lambda m, d: prune_at_init(m, 1.5, "synflow", input_shape=(20,)), ValueError,
         "'density' parameter.*Got 1.5 instead"),
        (lambda m, d: prune_at_init(m, -0.5, "synflow", input_shape=(20,), scope="layer"),
         ValueError, "'density' parameter.*Got -0.5 instead"),
    ],
)  # fmt: skip
def test_invalid_arguments_are_named(call, error, message, mlp, data):
    model = mlp()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(error, match=message):
        call(model, [data()])
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
