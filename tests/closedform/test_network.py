# SPDX-License-Identifier: BSD-3-Clause
"""closedform.network: layer draws, the ridge layer fit and the backward sweep."""

import numpy as np
from sklearn.linear_model import Ridge
from sklearn.utils import check_random_state

from closedform.activations import get_activation
from closedform.network import (
    RidgeLayerFactor,
    SweepSettings,
    backward_sweep,
    forward,
    init_network,
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
