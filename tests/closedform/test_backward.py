# SPDX-License-Identifier: BSD-3-Clause
"""closedform.backward: the backward targets' closed forms."""

import numpy as np
import pytest

from closedform.backward import backward_target


def test_backward_targets_limits():
    rng = np.random.default_rng(2)
    n, d, k = 50, 8, 3
    H = rng.normal(size=(n, d))
    W = rng.normal(size=(d, k))
    b = rng.normal(size=k)
    T = rng.normal(size=(n, k))
    # mu -> infinity keeps the current outputs; mu -> 0 gives the pseudo-inverse solution
    far = backward_target("proximal", T, W, b, H, mu=1e12)
    np.testing.assert_allclose(far, H, atol=1e-8)
    near = backward_target("proximal", T, W, b, H, mu=1e-12)
    pinv = backward_target("pinv", T, W, b, H)
    # they differ by the component of H in the null space of W^T, which the proximal keeps
    null = np.eye(d) - W @ np.linalg.pinv(W)
    np.testing.assert_allclose(near, pinv + H @ null, atol=1e-6)
    # pinv solves H W = T - b (feasible: k <= d, W full column rank) with minimum norm, up to
    # its regularisation (1e-8 relative)
    np.testing.assert_allclose(pinv @ W + b, T, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pinv, (T - b) @ np.linalg.pinv(W), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(backward_target("adjoint", T, W, b, H), (T - b) @ W.T)


def test_pinv_targets_below_the_head_have_rank_c():
    rng = np.random.default_rng(3)
    H = rng.random((200, 40))
    W = rng.normal(size=(40, 3))
    target = backward_target("pinv", rng.normal(size=(200, 3)), W, np.zeros(3), H)
    assert np.linalg.matrix_rank(target) == 3
    prox = backward_target("proximal", rng.normal(size=(200, 3)), W, np.zeros(3), H)
    assert np.linalg.matrix_rank(prox) == 40


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="backward must be one of"):
        backward_target(
            "transpose", np.zeros((2, 1)), np.ones((3, 1)), np.zeros(1), np.ones((2, 3))
        )


def _layer(scale=7.0):
    rng = np.random.default_rng(5)
    n, d, k = 30, 6, 3
    T, W = rng.normal(size=(n, k)), scale * rng.normal(size=(d, k))
    return T, W, rng.normal(size=k), rng.normal(size=(n, d))


def test_proximal_target_is_the_argmin_at_the_default_mu():
    # |H* W + b - T|^2 + mu |H* - H|^2 with mu = 1 * |W|_F^2 / d: the gradient vanishes
    # (|W|^2 != d k here, so the relative scaling of mu shows; issue 21's surviving mutants)
    T, W, b, H = _layer()
    target = backward_target("proximal", T, W, b, H)
    mu = np.sum(W * W) / W.shape[0]
    gradient = (target @ W - (T - b)) @ W.T + mu * (target - H)
    np.testing.assert_allclose(gradient, 0.0, atol=1e-9 * np.abs(mu * H).max())


def test_zero_weights_pull_nothing_back():
    # no signal from above: the proximal target keeps H, the pseudo-inverse target is 0
    T, W, b, H = _layer()
    W = np.zeros_like(W)
    np.testing.assert_allclose(backward_target("proximal", T, W, b, H), H)
    np.testing.assert_allclose(backward_target("pinv", T, W, b, H), 0.0)


@pytest.mark.parametrize("mode", ["proximal", "pinv", "adjoint"])
def test_float32_features_give_float32_targets(mode):
    T, W, b, H = _layer()
    assert backward_target(mode, T, W, b, H.astype(np.float32)).dtype == np.float32
