# SPDX-License-Identifier: BSD-3-Clause
"""Property-based tests (Hypothesis) of AdaSLS, SLS and SPS.

Random hyperparameters (valid and invalid), least-squares problems of random
shapes with NaN, inf, 1e300, 1e-300, constant columns or duplicate rows, and
closures returning odd things. Every construction either succeeds or raises
``ValueError``/``TypeError`` naming the argument; every step either returns a
finite loss with finite parameters (never above the starting loss for an
Armijo search on a deterministic closure), or raises with the parameters and
the optimizer state bit-identical.
"""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from solvers.torch import SLS, SPS, AdaSLS

OPTIMIZERS = {"adasls": AdaSLS, "sls": SLS, "sps": SPS}

#: (name, values): each hyperparameter with valid and invalid values
HYPER = {
    "lr": [1e-3, 1.0, 100.0, 0.0, -1.0, math.nan, math.inf, True, "1"],
    "c": [0.1, 0.5, 0.9, 0.0, 1.5, -0.1, math.nan],
    "beta_b": [0.5, 0.9, 0.0, 1.0, 2.0, math.nan],
    "beta_f": [2.0, 1.5, 0.5, math.inf],
    "max_backtracks": [1, 20, 0, -1, 2.5, None],
    "reset": ["grow", "conservative", "max", "bogus", 3],
    "gamma": [2.0, 1.0, 0.5, math.nan],
    "n_batches_per_epoch": [1, 500, 0, -3, math.inf],
    "f_star": [0.0, -1.0, math.nan, math.inf],
    "eps": [1e-8, 0.0, -1e-8, math.nan],
    "betas": [(0.9, 0.99), (0.0, 0.0), (1.0, 0.9), (0.9,), (0.5, math.nan)],
    "polyak_init": [True, False],
}
hyper = st.dictionaries(st.sampled_from(sorted(HYPER)), st.just(None), max_size=3).flatmap(
    lambda keys: st.fixed_dictionaries({k: st.sampled_from(HYPER[k]) for k in keys})
)
special = st.sampled_from([None, math.nan, math.inf, 1e300, 1e-300, "constant", "dup"])


def problem(n, d, plant, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = X @ torch.randn(d, generator=g, dtype=torch.float64)
    if plant == "constant":
        X[:, 0] = 2.0
    elif plant == "dup":
        X[1:] = X[0]
    elif plant is not None:
        X[0, d - 1] = plant
    return X.to(dtype), y.to(dtype)


def state_bytes(opt, w):
    """Parameters and every tensor of the optimizer state, bit for bit (plus plain values)."""
    out = [w.detach().numpy().tobytes(), repr(opt.totals), repr(opt.last_step)]
    for group in opt.param_groups:
        out.append(repr({k: v for k, v in group.items() if k != "params"}))
    for s in opt.state.values():
        for k in sorted(s):
            v = s[k]
            out.append((k, v.numpy().tobytes() if torch.is_tensor(v) else repr(v)))
    return out


def names_a_hyperparameter(message, given_keys):
    return any(k in message for k in (*given_keys, "betas", "lr"))


@given(kind=st.sampled_from(sorted(OPTIMIZERS)), kwargs=hyper)
def test_construction_succeeds_or_names_the_argument(kind, kwargs):
    w = torch.zeros(3, requires_grad=True)
    try:
        opt = OPTIMIZERS[kind]([w], **kwargs)
    except (ValueError, TypeError) as e:
        assert names_a_hyperparameter(str(e), kwargs), str(e)
    else:
        for k, v in kwargs.items():  # kept as given (a rule ignores settings it does not take)
            assert repr(opt.param_groups[0][k]) == repr(tuple(v) if k == "betas" else v)


@given(
    kind=st.sampled_from(sorted(OPTIMIZERS)),
    n=st.integers(1, 6),
    d=st.integers(1, 5),
    plant=special,
    dtype=st.sampled_from([torch.float32, torch.float64]),
    steps=st.integers(1, 3),
    lr=st.sampled_from([1e-3, 1.0, 100.0]),
)
def test_step_is_finite_and_decreasing_or_leaves_everything_unchanged(
    kind, n, d, plant, dtype, steps, lr
):
    X, y = problem(n, d, plant, dtype)
    w = torch.zeros(d, dtype=dtype, requires_grad=True)
    opt = OPTIMIZERS[kind]([w], lr=lr, n_batches_per_epoch=4)

    def closure():
        opt.zero_grad()
        loss = 0.5 * ((X @ w - y) ** 2).mean()
        loss.backward()
        return loss

    for _ in range(steps):
        before = state_bytes(opt, w)
        try:
            loss = opt.step(closure)
        except ValueError as e:
            assert "not finite" in str(e), str(e)
            assert not torch.isfinite(X).all() or not torch.isfinite(closure()), plant
            assert state_bytes(opt, w) == before
            return
        assert torch.isfinite(loss) and torch.isfinite(w).all()
        if kind == "sls" and opt.last_step["step_size"] > 0:
            # Armijo without momentum: an accepted step never raises the (deterministic) loss
            with torch.no_grad():
                assert 0.5 * ((X @ w - y) ** 2).mean() <= loss
    assert torch.isfinite(X).all() or (plant == 1e300 and dtype == torch.float64)


ODD = {
    "none": lambda loss: None,
    "per-sample": lambda loss: loss.detach().repeat(3).requires_grad_(),
    "float": lambda loss: float(loss),
    "nan": lambda loss: loss * math.nan,
    "int tensor": lambda loss: torch.tensor(3),
}


@given(kind=st.sampled_from(sorted(OPTIMIZERS)), odd=st.sampled_from(sorted(ODD)))
def test_odd_closures_raise_or_step_finitely(kind, odd):
    X, y = problem(4, 2, None, torch.float64)
    w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = OPTIMIZERS[kind]([w], lr=1.0)

    def closure():
        opt.zero_grad()
        loss = 0.5 * ((X @ w - y) ** 2).mean()
        loss.backward()
        return ODD[odd](loss)

    before = state_bytes(opt, w)
    try:
        out = opt.step(closure)
    except (ValueError, TypeError) as e:
        assert "closure" in str(e) or "loss" in str(e), str(e)
        assert state_bytes(opt, w) == before
    else:
        assert odd in ("float", "int tensor"), odd
        assert math.isfinite(float(out)) and torch.isfinite(w).all()


@given(
    kind=st.sampled_from(sorted(OPTIMIZERS)),
    other=st.sampled_from(["adam", *sorted(OPTIMIZERS)]),
    corrupt=st.sampled_from(["none", "groups", "lr", "not a dict"]),
)
def test_failed_load_state_dict_changes_nothing(kind, other, corrupt):
    X, y = problem(5, 3, None, torch.float64)

    def trained(factory):
        w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
        opt = factory([w])

        def closure():
            opt.zero_grad()
            loss = 0.5 * ((X @ w - y) ** 2).mean()
            loss.backward()
            return loss

        opt.step(closure)
        return opt, w

    opt, w = trained(lambda p: OPTIMIZERS[kind](p, lr=1.0))
    source, _ = trained(
        (lambda p: torch.optim.Adam(p, lr=0.1)) if other == "adam" else OPTIMIZERS[other]
    )
    state = source.state_dict()
    if corrupt == "groups":
        state["param_groups"] = state["param_groups"] * 2
    elif corrupt == "lr":
        state["param_groups"][0]["lr"] = math.nan
    elif corrupt == "not a dict":
        state = list(state.items())
    before = state_bytes(opt, w)
    compatible = other == kind and corrupt == "none"
    if compatible:
        opt.load_state_dict(state)
        assert opt.param_groups[0]["step_size"] == source.param_groups[0]["step_size"]
        return
    with pytest.raises((ValueError, TypeError)) as err:
        opt.load_state_dict(state)
    message = str(err.value)
    assert any(w in message for w in ("state_dict", "state dict", "param_groups", "lr")), message
    assert state_bytes(opt, w) == before


@given(odd=st.sampled_from(["per-sample", "string", "none-like list", "fine"]))
def test_step_with_loss_checks_the_loss(odd):
    """``step(loss=...)`` (SPS, after the caller's backward) refuses what is not one number."""
    X, y = problem(4, 2, None, torch.float64)
    w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = SPS([w])
    loss = 0.5 * ((X @ w - y) ** 2).mean()
    loss.backward()
    given_loss = {
        "per-sample": loss.detach().repeat(3),
        "string": "0.5",
        "none-like list": [],
        "fine": loss,
    }[odd]
    before = state_bytes(opt, w)
    try:
        opt.step(loss=given_loss)
    except (ValueError, TypeError) as e:
        assert odd != "fine" and str(e).startswith("step(loss=...) got a"), str(e)
        assert state_bytes(opt, w) == before
    else:
        assert odd == "fine" and torch.isfinite(w).all() and opt.totals["steps"] == 1
