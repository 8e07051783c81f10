# SPDX-License-Identifier: BSD-3-Clause
"""closedform.network: layer draws, the ridge layer fit and the backward sweep."""

import itertools

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.utils import check_random_state

from closedform.activations import get_activation
from closedform.backward import backward_target
from closedform.network import (
    RidgeLayerFactor,
    SweepSettings,
    backward_sweep,
    forward,
    init_network,
    pull_back,
)


def test_ridge_layer_equals_sklearn_ridge_with_weights():
    rng = np.random.default_rng(1)
    H = rng.normal(size=(80, 6))
    T = rng.normal(size=(80, 4))
    w = rng.random(80)
    w /= w.sum()
    factor = RidgeLayerFactor(H, w, alpha=0.1, block_rows=13)
    W, b = factor.solve(H, T)
    # ours: sum_i w_i ||.||^2 + gamma ||W||^2 with sum w = 1; sklearn: sum_i s_i ||.||^2 + a ||W||^2
    ref = Ridge(alpha=factor.gamma).fit(H, T, sample_weight=w)
    np.testing.assert_allclose(W, ref.coef_.T, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b, ref.intercept_, rtol=1e-10, atol=1e-12)
    # the penalty is relative: alpha times the mean variance of the features
    cov = np.cov(H.T, aweights=w, bias=True)
    np.testing.assert_allclose(factor.gamma, 0.1 * np.trace(cov) / 6, rtol=1e-12)


def test_init_network_is_reproducible_and_forward_matches_it(make_problem):
    X, _ = make_problem()
    act = get_activation("sigmoid")
    for init in ("samples", "gaussian"):
        layers, hidden = init_network(
            check_random_state(0), X, (7, 5), act, init=init, init_scale=3.0
        )
        again, _ = init_network(check_random_state(0), X, (7, 5), act, init=init, init_scale=3.0)
        assert [W.shape for W, _ in layers] == [(12, 7), (7, 5)]
        for (W, b), (W2, b2) in zip(layers, again, strict=True):
            np.testing.assert_array_equal(W, W2)
            np.testing.assert_array_equal(b, b2)
        for H, H2 in zip(hidden, forward(X, layers, act), strict=True):
            np.testing.assert_array_equal(H, H2)


def test_backward_sweep_with_identity_fits_the_pulled_back_targets(make_problem):
    # identity activation, a proximal weight of ~0 and no penalty: one sweep refits the only
    # layer by least squares to the pseudo-inverse target, which the layer can reach
    X, _ = make_problem()
    act = get_activation("identity")
    layers, hidden = init_network(
        check_random_state(0), X, (12,), act, init="gaussian", init_scale=1.0
    )
    rng = np.random.default_rng(0)
    W_head, b_head = rng.normal(size=(12, 2)), rng.normal(size=2)
    targets = X @ rng.normal(size=(12, 2))
    settings = SweepSettings(act, "pinv", 1.0, 1e-3, 1e-12, 64)
    new_layers, factor = backward_sweep(X, hidden, layers, W_head, b_head, targets, settings)
    H_new = forward(X, new_layers, act)[-1]
    np.testing.assert_allclose(H_new @ W_head + b_head, targets, rtol=1e-5, atol=1e-5)
    # the first layer's factor is reused by the next sweep of the fit
    again, same = backward_sweep(
        X, hidden, layers, W_head, b_head, targets, settings, first_factor=factor
    )
    assert same is factor
    np.testing.assert_array_equal(again[0][0], new_layers[0][0])


# -- issue 21: the mutants of closedform/network.py that survived -----------------------------


def _sample_init_reference(X, width, scale, seed, weights=None):
    """The "samples" rule of the docstring, drawn with the same generator calls."""
    rng = check_random_state(seed)
    n = X.shape[0]
    if weights is None:
        rows = rng.choice(n, size=width, replace=width > n)
        w = np.full(n, 1.0 / n)
    else:
        w = weights / weights.sum()
        rows = rng.choice(n, size=width, replace=width > np.count_nonzero(w), p=w)
    m = w @ X
    r = np.sqrt(w @ np.sum((X - m) ** 2, axis=1))
    D = X[rows] - m
    W = scale * (D / np.linalg.norm(D, axis=1)[:, None]).T / r
    return rows, W, rng.standard_normal(width) - m @ W


@pytest.mark.parametrize("width", [5, 7])  # n = 7 rows: all distinct, then 5 of 7
def test_samples_init_points_units_at_centred_rows(width):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(7, 3)) * 1e-3 + 5.0  # small spread: norms below 1, a large mean
    act = get_activation("identity")
    (layer,), (H,) = init_network(
        check_random_state(4), X, (width,), act, init="samples", init_scale=2.0
    )
    rows, W_ref, b_ref = _sample_init_reference(X, width, 2.0, 4)
    # r comes from E||x||^2 - ||m||^2, which cancels here (measured error 2.7e-9)
    assert len(set(rows)) == width  # drawn without replacement when width <= n
    np.testing.assert_allclose(layer[0], W_ref, rtol=1e-8)
    np.testing.assert_allclose(layer[1], b_ref, rtol=1e-8)
    np.testing.assert_allclose(H, X @ layer[0] + layer[1], rtol=1e-12)
    # scale-free: every unit has norm s / r
    r = np.sqrt(np.mean(np.sum((X - X.mean(0)) ** 2, axis=1)))
    np.testing.assert_allclose(np.linalg.norm(layer[0], axis=0), 2.0 / r, rtol=1e-8)


def test_samples_init_with_weights_uses_only_weighted_rows():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(9, 4))
    weights = np.array([0.0, 2.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    act = get_activation("identity")
    for width in (3, 4):  # 3 rows of positive weight: with replacement beyond 3
        (layer,), _ = init_network(
            check_random_state(1),
            X,
            (width,),
            act,
            init="samples",
            init_scale=1.5,
            weights=weights / weights.sum(),
        )
        rows, W_ref, b_ref = _sample_init_reference(X, width, 1.5, 1, weights)
        assert set(rows) <= {1, 3, 4}
        np.testing.assert_allclose(layer[0], W_ref, rtol=1e-9)
        np.testing.assert_allclose(layer[1], b_ref, rtol=1e-9)


def test_gaussian_init_is_hpelms_rule_and_keeps_the_dtype():
    X = np.random.default_rng(5).normal(size=(20, 9)).astype(np.float32)
    act = get_activation("identity")
    layers, hidden = init_network(
        check_random_state(6), X, (4, 3), act, init="gaussian", init_scale=3.0
    )
    rng = check_random_state(6)
    W1 = rng.standard_normal((9, 4)) * 3.0 / 3.0  # s / sqrt(d_in) = 1
    b1 = rng.standard_normal(4)
    W2 = rng.standard_normal((4, 3)) * 3.0 / 2.0
    np.testing.assert_allclose(layers[0][0], W1, rtol=1e-6)
    np.testing.assert_allclose(layers[0][1], b1, rtol=1e-6)
    np.testing.assert_allclose(layers[1][0], W2, rtol=1e-6)
    for W, b in layers:
        assert W.dtype == np.float32 and b.dtype == np.float32
    assert all(H.dtype == np.float32 for H in hidden)
    layers_s, _ = init_network(check_random_state(6), X, (4,), act, init="samples", init_scale=1.0)
    assert layers_s[0][0].dtype == np.float32 and layers_s[0][1].dtype == np.float32


def test_samples_init_of_constant_data_gives_zero_weights():
    X = np.full((4, 3), 2.0)  # 4 rows: the mean is exact in binary
    (layer,), _ = init_network(
        check_random_state(0), X, (4,), get_activation("identity"), init="samples", init_scale=1.0
    )
    np.testing.assert_array_equal(layer[0], np.zeros((3, 4)))
    assert np.all(np.isfinite(layer[1]))


@pytest.mark.parametrize("backend_name", ["numpy", "torch"])
def test_pull_back_inverts_the_squashed_target(backend_name):
    act = get_activation("sigmoid")
    H = np.linspace(-0.5, 1.5, 9)[:, None] * np.ones((1, 2))
    eps = 0.01
    clipped = np.clip(H, eps, 1 - eps)
    expected = np.log(clipped / (1 - clipped))
    if backend_name == "torch":
        torch = pytest.importorskip("torch")
        out = pull_back(act, torch.as_tensor(H), eps).numpy()
    else:
        out = pull_back(act, H.copy(), eps)
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def _sweep_reference(X, hidden, layers, W_head, b_head, T, settings, weights):
    """Top-down: pull the target back through the layer above, refit on the layer below."""
    new = list(layers)
    for k in range(len(layers) - 1, -1, -1):
        H_star = backward_target(settings.backward, T, W_head, b_head, hidden[k], mu=settings.mu)
        Z = pull_back(settings.activation, H_star, settings.squash_eps)
        below = X if k == 0 else hidden[k - 1]
        W, b = RidgeLayerFactor(below, weights, settings.alpha_hidden, 10**9).solve(below, Z)
        new[k] = (W, b)
        T, W_head, b_head = Z, W, b
    return new


@pytest.mark.parametrize("weighted", [False, True])
def test_backward_sweep_refits_every_layer_top_down(make_problem, weighted):
    X, _ = make_problem(n=120)
    act = get_activation("sigmoid")
    layers, hidden = init_network(
        check_random_state(0), X, (6, 5, 4), act, init="gaussian", init_scale=1.0
    )
    rng = np.random.default_rng(7)
    W_head, b_head = rng.normal(size=(4, 2)), rng.normal(size=2)
    T = rng.normal(size=(120, 2)) * 3.0  # far outside sigmoid's range once pulled back
    w = rng.random(120) if weighted else None
    w = None if w is None else w / w.sum()
    settings = SweepSettings(act, "proximal", 0.3, 0.05, 0.1, 32)
    new, factor = backward_sweep(X, hidden, layers, W_head, b_head, T, settings, weights=w)
    ref = _sweep_reference(X, hidden, layers, W_head, b_head, T, settings, w)
    for (W, b), (W_ref, b_ref) in zip(new, ref, strict=True):
        np.testing.assert_allclose(W, W_ref, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(b, b_ref, rtol=1e-8, atol=1e-10)
    # the returned factor is the first layer's: the (weighted) moments of X
    mean = X.mean(0) if w is None else w @ X
    np.testing.assert_allclose(factor.mean, mean, rtol=1e-12)
    # float32 inputs: the new layers are float32
    X32, hidden32 = X.astype(np.float32), [H.astype(np.float32) for H in hidden]
    new32, _ = backward_sweep(X32, hidden32, layers, W_head, b_head, T, settings, weights=w)
    assert all(W.dtype == np.float32 and b.dtype == np.float32 for W, b in new32)


@pytest.mark.parametrize("init", ["samples", "gaussian"])
def test_torch_network_is_the_numpy_network(make_problem, init):
    # torch's default dtype is float32: every float64 accumulator must be asked for
    torch = pytest.importorskip("torch")
    X, _ = make_problem(n=60)
    X = X + 3.0  # a mean to centre away
    act = get_activation("sigmoid")
    w = np.random.default_rng(8).random(60)
    w /= w.sum()
    kw = dict(init=init, init_scale=1.5, weights=w)
    layers, hidden = init_network(check_random_state(0), X, (9, 4), act, **kw)
    Xt, wt = torch.as_tensor(X), torch.as_tensor(w)
    layers_t, hidden_t = init_network(
        check_random_state(0), Xt, (9, 4), act, **{**kw, "weights": wt}
    )
    for (W, b), (Wt, bt) in zip(layers, layers_t, strict=True):
        assert Wt.dtype == torch.float64 and bt.dtype == torch.float64
        np.testing.assert_allclose(Wt.numpy(), W, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(bt.numpy(), b, rtol=1e-10, atol=1e-12)
    rng = np.random.default_rng(9)
    W_head, b_head = rng.normal(size=(4, 2)), rng.normal(size=2)
    T = rng.normal(size=(60, 2))
    settings = SweepSettings(act, "proximal", 0.3, 0.05, 0.1, 16)
    new, _ = backward_sweep(X, hidden, layers, W_head, b_head, T, settings, weights=w)
    new_t, _ = backward_sweep(
        Xt,
        hidden_t,
        layers_t,
        torch.as_tensor(W_head),
        torch.as_tensor(b_head),
        torch.as_tensor(T),
        settings,
        weights=wt,
    )
    for (W, b), (Wt, bt) in zip(new, new_t, strict=True):
        np.testing.assert_allclose(Wt.numpy(), W, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(bt.numpy(), b, rtol=1e-8, atol=1e-10)


def test_samples_init_wider_than_the_data_draws_with_replacement():
    X = np.random.default_rng(10).normal(size=(5, 3))
    (layer,), _ = init_network(
        check_random_state(2), X, (9,), get_activation("identity"), init="samples", init_scale=1.0
    )
    rows, W_ref, _ = _sample_init_reference(X, 9, 1.0, 2)
    assert len(rows) == 9
    np.testing.assert_allclose(layer[0], W_ref, rtol=1e-9)


@pytest.mark.parametrize("n_rows", [4, 6, 50])
def test_samples_init_on_equal_rows_gives_flat_units(n_rows):
    # equal rows: E||h||^2 - ||m||^2 is rounding (it was amplified into units of norm
    # 1e7 along noise); the units must be flat, their outputs the same for every row
    X = np.full((n_rows, 3), 5.0, dtype=np.float32)
    layers, hidden = init_network(
        np.random.RandomState(0), X, [4], get_activation("sigmoid"), init="samples",
        init_scale=3.0,
    )  # fmt: skip
    np.testing.assert_array_equal(layers[0][0], 0.0)
    np.testing.assert_array_equal(hidden[0], hidden[0][:1].repeat(n_rows, axis=0))
    # a small but real spread keeps the unit scale init_scale / rms
    rng = np.random.default_rng(0)
    X = 5.0 + 1e-3 * rng.standard_normal((200, 3))
    layers, _ = init_network(
        np.random.RandomState(0), X, [4], get_activation("sigmoid"), init="samples",
        init_scale=3.0,
    )  # fmt: skip
    rms = np.sqrt(np.mean(np.sum((X - X.mean(0)) ** 2, axis=1)))
    np.testing.assert_allclose(np.linalg.norm(layers[0][0], axis=0), 3.0 / rms, rtol=1e-6)


# -- the distributed paths, on ranks that are threads of this process (thread_ranks) --------

SPLIT = (0, 70, 75, 120)  # three ranks holding 70, 5 and 45 rows


def _parts(*arrays):
    """Each rank's rows of ``arrays`` (None stays None)."""
    ranges = itertools.pairwise(SPLIT)
    return [tuple(None if a is None else a[lo:hi] for a in arrays) for lo, hi in ranges]


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("equal_rows", [False, True])
def test_ranks_draw_the_network_of_one_process_on_their_rows(thread_ranks, weighted, equal_rows):
    """'samples' init over three ranks: indices drawn into the concatenated rows (by the
    gathered weights), the drawn rows gathered back in draw order, the mean and spread summed:
    every rank gets the single-process network (also when the spread must be recomputed,
    equal rows)."""
    rng = np.random.default_rng(2)
    X = np.repeat(rng.normal(size=(1, 5)), 120, 0) if equal_rows else rng.normal(size=(120, 5))
    w = None
    if weighted:
        w = rng.random(120) * (rng.random(120) < 0.7)
        w /= w.sum()
    act = get_activation("tanh")

    def init(comm, part):
        Xr, wr = part
        out = init_network(check_random_state(3), Xr, [7, 4], act, init="samples",
                           init_scale=2.0, weights=wr, comm=comm)  # fmt: skip
        return out, None if comm is None else comm.labels

    (ref_layers, ref_hidden), _ = init(None, (X, w))
    ranked = thread_ranks(init, _parts(X, w))
    # per layer: the weights gathered to draw by them, the mean, the drawn rows, the squared
    # norms, and for equal rows (a spread lost to rounding) the mean and spread again
    layer = (["Gathering the sample weights"] if weighted else []) + [
        "Summing the inputs' mean",
        "Gathering the rows the units are drawn from",
        "Summing the inputs' squared norms",
    ]
    layer += ["Summing the inputs' mean", "Summing the inputs' spread"] if equal_rows else []
    for ((layers, hidden), labels), (lo, hi) in zip(ranked, itertools.pairwise(SPLIT), strict=True):
        assert labels == ["Counting the rows to draw units from", *layer, *layer]
        for (W, b), (W0, b0) in zip(layers, ref_layers, strict=True):
            np.testing.assert_allclose(W, W0, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(b, b0, rtol=1e-12, atol=1e-12)
        for Hr, H0 in zip(hidden, ref_hidden, strict=True):
            np.testing.assert_allclose(Hr, H0[lo:hi], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
def test_ranks_fit_the_ridge_layer_of_one_process(thread_ranks, weighted):
    """RidgeLayerFactor over three ranks: statistics and cross-moments summed over the ranks
    give the single-process coefficients (unweighted: each row 1 / n of all ranks' rows)."""
    rng = np.random.default_rng(4)
    H, T = rng.normal(size=(120, 6)), rng.normal(size=(120, 3))
    w = None
    if weighted:
        w = rng.random(120)
        w /= w.sum()

    def fit(comm, part):
        Hr, Tr, wr = part
        factor = RidgeLayerFactor(Hr, wr, alpha=0.1, block_rows=16, comm=comm)
        out = factor.solve(Hr, Tr), factor.n_rows, factor.gamma
        assert comm is None or comm.labels == [
            "Counting the layer's rows",
            "Checking the Gram statistics",
            "Summing the Gram statistics' means",
            "Summing the Gram statistics",
            "Summing the layer's cross-moments",  # and the targets' mean
        ]
        return out

    (W0, b0), n0, gamma0 = fit(None, (H, T, w))
    for (W, b), n, gamma in thread_ranks(fit, _parts(H, T, w)):
        assert n == n0 == 120 and gamma == pytest.approx(gamma0, rel=1e-12)
        np.testing.assert_allclose(W, W0, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(b, b0, rtol=1e-10, atol=1e-12)
