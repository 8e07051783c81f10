# SPDX-License-Identifier: BSD-3-Clause
"""Property-based tests (Hypothesis) of neuron splitting and ExpandNets.

Random widths, batches holding NaN, inf, 1e300, 1e-300, constant columns or
duplicate rows, random targets and hyperparameters: :meth:`NeuronSplitting.score`
either returns finite eigenpairs of the right shapes or raises a ``ValueError``
naming what is non-finite (``eigh`` used to fail on NaN with a LAPACK error),
and a failed call leaves the model and the previous scores bit-identical.
"""

import math

import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from solvers.torch import NeuronSplitting, contract, expand

special = st.sampled_from([None, math.nan, math.inf, -math.inf, 1e300, 1e-300, "constant", "dup"])


def smooth(widths, act, seed=0):
    torch.manual_seed(seed)
    layers, prev = [], widths[0]
    for w in widths[1:-1]:
        layers += [nn.Linear(prev, w), act()]
        prev = w
    return nn.Sequential(*layers, nn.Linear(prev, widths[-1])).double()


def batch(n, d, classes, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    return x, torch.randint(0, classes, (n,), generator=g)


def state_bytes(model):
    return {k: v.numpy().tobytes() for k, v in model.state_dict().items()}


def eigen_bytes(eigen):
    return {i: [t.numpy().tobytes() for t in vars(e).values()] for i, e in eigen.items()}


@given(
    widths=st.lists(st.integers(1, 5), min_size=3, max_size=4),
    act=st.sampled_from([nn.Tanh, nn.Sigmoid, nn.Softplus, nn.SiLU]),
    n=st.integers(1, 8),
    extreme=special,
    exact_max_dim=st.sampled_from([1, 256]),
    n_new=st.integers(0, 4),
    in_weights=st.booleans(),
)
def test_score_is_finite_or_names_the_non_finite_term(
    widths, act, n, extreme, exact_max_dim, n_new, in_weights, plant
):
    model = smooth(widths, act)
    splitter = NeuronSplitting(model, exact_max_dim=exact_max_dim, lanczos_steps=4)
    first = splitter.score([batch(6, widths[0], widths[-1], 0)])
    x, y = batch(n, widths[0], widths[-1], 1)
    data = [(x if in_weights else plant(x, extreme), y)]
    if in_weights and isinstance(extreme, float):
        with torch.no_grad():
            model[-1].weight[0, 0] = extreme  # NaN/inf gradients, finite inputs
    before, scores = state_bytes(model), eigen_bytes(first)
    try:
        eigen = splitter.score(data)
    except ValueError as e:
        assert "NaN or inf" in str(e), str(e)
        assert extreme not in (None, "constant", "dup", 1e-300), (extreme, str(e))
        assert eigen_bytes(splitter.eigen_) == scores  # the previous scores are kept
    else:
        assert not (isinstance(extreme, float) and not math.isfinite(extreme)), extreme
        layers = list(range(0, len(model) - 1, 2))
        assert sorted(eigen) == layers
        for i, e in eigen.items():
            m, d = model[i].out_features, model[i].in_features + 1
            assert e.lambda_min.shape == e.lambda_max.shape == (m,)
            assert e.v_min.shape == e.v_max.shape == (m, d)
            for t in vars(e).values():
                assert torch.isfinite(t).all()
            assert torch.all(e.lambda_min <= e.lambda_max + 1e-9 * e.lambda_max.abs().max())
        grown = splitter.split(n_new, eps=1e-3, warn=False)
        added = sum(grown[i].out_features - model[i].out_features for i in layers)
        assert added <= n_new
        x = batch(4, widths[0], widths[-1], 2)[0]
        out = grown(x)
        assert out.shape == (4, widths[-1]) and torch.isfinite(out).all()
        # offspring weights sum to the parent's: the function is unchanged to first order
        torch.testing.assert_close(out, model(x), atol=1e-2, rtol=1e-2)
    assert state_bytes(model) == before


@given(
    exact_max_dim=st.one_of(st.integers(-2, 300), st.sampled_from([1.5, "8", None, True])),
    lanczos_steps=st.one_of(st.integers(-2, 80), st.sampled_from([math.nan, "4"])),
    n_new=st.one_of(st.integers(-3, 5), st.sampled_from([2.5, None, False])),
)
def test_hyperparameters_are_checked_by_name(exact_max_dim, lanczos_steps, n_new):
    model = smooth([3, 4, 2], nn.Tanh)
    try:
        splitter = NeuronSplitting(model, exact_max_dim=exact_max_dim, lanczos_steps=lanczos_steps)
    except (ValueError, TypeError) as e:
        assert "exact_max_dim" in str(e) or "lanczos_steps" in str(e), str(e)
        return
    splitter.score([batch(5, 3, 2, 0)])
    try:
        picks = splitter.select(n_new)
    except (ValueError, TypeError) as e:
        assert "n_new" in str(e), str(e)
    else:
        assert len(picks) <= n_new


@given(
    widths=st.lists(st.integers(1, 5), min_size=2, max_size=4),
    ratio=st.one_of(st.integers(-1, 4), st.sampled_from([2.0, "2", None, True])),
    n=st.integers(1, 5),
)
def test_contract_keeps_the_expanded_function(widths, ratio, n):
    """ExpandNets: the expanded model (in place) and its contraction compute the same map."""
    model = smooth(widths, nn.Tanh)
    before = state_bytes(model)
    try:
        wide = expand(model, ratio=ratio)
    except (ValueError, TypeError) as e:
        assert "ratio" in str(e), str(e)
        assert state_bytes(model) == before  # nothing replaced
        return
    x = batch(n, widths[0], 2, 3)[0]
    out = wide(x)
    assert out.shape == (n, widths[-1]) and torch.isfinite(out).all()
    with torch.no_grad():
        torch.testing.assert_close(contract(wide)(x), out)
