# SPDX-License-Identifier: BSD-3-Clause
"""solvers.linesearch.preconditioners: the array and ``_foreach`` halves agree."""

import pickle

import numpy as np
import pytest
import torch

from solvers.linesearch.preconditioners import (
    AdaGrad,
    AMSGrad,
    EMAMomentum,
    HeavyBall,
    Identity,
    NoMomentum,
    default_momentum,
    make_momentum,
    make_preconditioner,
)
from solvers.torch.optim._functional import GroupStep


def _array_steps(precond, mom, grads, eta):
    x = np.zeros(grads[0].shape)
    p_state, m_state = precond.init(x, np), mom.init(x, np)
    for k, g in enumerate(grads, start=1):
        p_state, inverse = precond.update(p_state, g, k, np)
        m_state = mom.update(m_state, g, k, np)
        m_state, delta = mom.displacement(m_state, g, inverse, eta, k, np)
        x = x + delta
    return x


def _foreach_steps(precond, mom, grads, eta):
    params = [torch.zeros(grads[0].shape, dtype=torch.float64)]
    state = {}
    for k, g in enumerate(grads, start=1):
        gt = [torch.as_tensor(g)]
        states = [state.get(0, {})]
        new, d, denom = precond.update_foreach(params, gt, states, [k])
        st = state.setdefault(0, {})
        if not st:
            st.update(mom.init_foreach(params[0]))
        st["step"] = k
        st.update(new[0])
        mom.update_foreach_([st], gt)
        mom.finish_foreach_(GroupStep({}, params, gt, [k], new, d, denom), [st], eta)
    return params[0].numpy()


@pytest.mark.parametrize("precond", [Identity(), AdaGrad(), AMSGrad(beta2=0.9)])
@pytest.mark.parametrize("mom", [NoMomentum(), EMAMomentum(0.8), HeavyBall(0.3)])
def test_array_and_foreach_updates_agree(precond, mom):
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=7) for _ in range(6)]
    np.testing.assert_allclose(
        _array_steps(precond, mom, grads, 0.1),
        _foreach_steps(precond, mom, grads, 0.1),
        rtol=1e-12,
        atol=1e-15,
    )


def test_the_foreach_update_is_out_of_place():
    p = [torch.ones(3, dtype=torch.float64)]
    states = [{"step": 1, "exp_avg_sq": torch.ones(3), "max_exp_avg_sq": torch.ones(3)}]
    before = {k: v.clone() if torch.is_tensor(v) else v for k, v in states[0].items()}
    AMSGrad().update_foreach(p, [torch.full((3,), 2.0)], states, [2])
    for k, v in before.items():
        assert torch.equal(torch.as_tensor(states[0][k]), torch.as_tensor(v))


def test_sums_of_squares_start_at_the_smallest_normal():
    state = AdaGrad().init(np.zeros(2, np.float32), np)
    assert state["sum_sq"][0] == np.finfo(np.float32).smallest_normal
    new, _, _ = AdaGrad().update_foreach([torch.zeros(2)], [torch.zeros(2)], [{}], [1])
    assert new[0]["sum_sq"][0] == torch.finfo(torch.float32).tiny


def test_heavy_ball_gamma_is_deprecated():
    with pytest.warns(DeprecationWarning, match="heavy_ball"):
        hb = HeavyBall(gamma=0.4)
    assert hb.heavy_ball == 0.4
    with pytest.warns(DeprecationWarning, match="heavy_ball"):
        assert make_momentum("heavy_ball", gamma=0.3).heavy_ball == 0.3
    assert make_momentum("heavy_ball", heavy_ball=0.2).heavy_ball == 0.2
    assert HeavyBall(0.1).heavy_ball == 0.1
    with pytest.warns(DeprecationWarning, match="heavy_ball"):
        assert HeavyBall(0.1).gamma == 0.1
    with pytest.raises(TypeError, match="both heavy_ball and"):
        HeavyBall(0.3, gamma=0.5)
    with pytest.raises(TypeError, match="both heavy_ball and"):
        make_momentum("heavy_ball", heavy_ball=0.3, gamma=0.5)


def test_heavy_ball_pickled_before_the_rename_loads():
    old = HeavyBall.__new__(HeavyBall)
    old.__dict__["gamma"] = 0.4  # the attribute name of the previous version
    loaded = pickle.loads(pickle.dumps(old))
    assert loaded.heavy_ball == 0.4 and "gamma" not in vars(loaded)


def test_factories():
    assert isinstance(make_preconditioner("adagrad"), AdaGrad)
    assert make_preconditioner(ams := AMSGrad()) is ams
    assert isinstance(make_momentum(None), NoMomentum)
    assert default_momentum("amsgrad") == "ema" and default_momentum(AdaGrad()) == "none"
    with pytest.raises(ValueError, match="preconditioner must be"):
        make_preconditioner("adam")
    with pytest.raises(ValueError, match="momentum"):
        make_momentum("nesterov")
    with pytest.raises(ValueError, match="heavy_ball"):
        HeavyBall(1.0)


def test_zero_eps_and_zero_heavy_ball_are_allowed_and_bad_values_named():
    # issue 21: eps = 0 and heavy_ball = 0 are in range (closed at 0); the error names the argument
    assert AdaGrad(eps=0.0).eps == 0.0
    assert HeavyBall(heavy_ball=0.0).heavy_ball == 0.0
    with pytest.raises(ValueError, match=r"^The 'eps' parameter"):
        AdaGrad(eps=-1.0)
    with pytest.raises(ValueError, match=r"^The 'heavy_ball' parameter"):
        HeavyBall(heavy_ball=1.0)  # [0, 1): 1 would never forget
    with pytest.raises(TypeError, match=r"^HeavyBall got both heavy_ball"):
        HeavyBall(0.3, gamma=0.5)
    with pytest.warns(DeprecationWarning, match=r"^HeavyBall\(gamma=\.\.\.\) is deprecated"):
        HeavyBall(gamma=0.4)
    # the heavy-ball state starts at rest, shaped like x
    x = np.arange(3.0)
    np.testing.assert_array_equal(HeavyBall().init(x, np)["displacement"], np.zeros(3))


def test_moment_parameters_are_in_their_documented_ranges():
    # issue 21: beta1, beta2 in [0, 1), eps >= 0; errors name the argument
    ams = AMSGrad(beta2=0.0, eps=0.0)
    assert (ams.beta2, ams.eps) == (0.0, 0.0)
    assert EMAMomentum(beta1=0.0).beta1 == 0.0
    for make, name in [
        (lambda: AMSGrad(beta2=1.0), "beta2"),
        (lambda: AMSGrad(eps=-1e-8), "eps"),
        (lambda: EMAMomentum(beta1=1.0), "beta1"),
    ]:
        with pytest.raises(ValueError, match=rf"^The '{name}' parameter"):
            make()
    built = make_preconditioner("amsgrad", beta2=0.5, eps=0.25)
    assert (built.beta2, built.eps) == (0.5, 0.25)
    # the default momentum follows the preconditioner, named or given as an object
    assert default_momentum(AMSGrad()) == default_momentum("amsgrad") == "ema"
    assert default_momentum(AdaGrad()) == default_momentum("adagrad") == "none"


def test_factories_have_usable_defaults():
    # issue 21: every default is inside its documented range, and an object without a name
    # gets the paper's default momentum
    assert make_preconditioner("amsgrad").beta2 == 0.99
    assert make_preconditioner("adagrad").eps == AMSGrad().eps == AdaGrad().eps == 1e-8
    assert make_momentum("ema").beta1 == EMAMomentum().beta1 == 0.9
    assert default_momentum(object()) == "none"
    with pytest.raises(ValueError, match=r"^The 'momentum' parameter"):
        make_momentum("nesterov")
    with pytest.raises(TypeError, match=r"^make_momentum got both heavy_ball"):
        make_momentum("heavy_ball", heavy_ball=0.3, gamma=0.5)
    with pytest.warns(
        DeprecationWarning, match=r"use heavy_ball=\.\.\. for the heavy-ball coefficient\.$"
    ):
        make_momentum("heavy_ball", gamma=0.3)
