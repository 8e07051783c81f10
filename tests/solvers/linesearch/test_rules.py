# SPDX-License-Identifier: BSD-3-Clause
"""solvers.linesearch.rules: Armijo, Goldstein, Polyak, the reset of the first trial."""

import math

import numpy as np
import pytest

from solvers.linesearch.rules import Armijo, Goldstein, Polyak, initial_step, make_step_rule


def test_armijo_accepts_only_sufficient_decrease():
    rng = np.random.default_rng(0)
    for _ in range(50):
        L = rng.uniform(0.1, 100.0)
        x0 = rng.normal()
        f = lambda x: 0.5 * L * x * x + 1.0  # noqa: E731
        g = L * x0
        rule = Armijo(c=0.5, beta_b=0.7)
        out = rule.search(
            f(x0), 10.0, lambda eta: eta * g * g, lambda eta: f(x0 - eta * g), 0.0, 10.0
        )
        assert out.status == "accepted"
        eta = out.step_size
        assert f(x0 - eta * g) <= f(x0) - 0.5 * eta * g * g
        # the step before the accepted one (eta / beta_b) was rejected
        if out.n_backtracks:
            prev = eta / 0.7
            assert f(x0 - prev * g) > f(x0) - 0.5 * prev * g * g


@pytest.mark.parametrize("c", [0.1, 0.3, 0.8])
def test_armijo_uses_c_not_one_minus_c(c):
    # On f(x) = L x^2 / 2 with d = g = L x0, Armijo's test f(x0 - eta g) <= f(x0) - c eta g^2
    # holds exactly for eta L <= 2 (1 - c). With c != 0.5 the bound differs from the one
    # of 1 - c (Goldstein's other constant), so the accepted step tells them apart.
    rng = np.random.default_rng(2)
    beta_b = 0.8
    for _ in range(30):
        L, x0 = rng.uniform(0.1, 100.0), rng.normal()
        f = lambda x, L=L: 0.5 * L * x * x  # noqa: E731
        g = L * x0
        eta0 = 1.99 / L
        out = Armijo(c=c, beta_b=beta_b).search(
            f(x0), eta0, lambda e, g=g: e * g * g, lambda e, g=g, x0=x0: f(x0 - e * g), 0.0, 10.0
        )
        # the first trial eta0 beta_b^k with eta0 beta_b^k L <= 2 (1 - c)
        k = math.ceil(math.log(2.0 * (1.0 - c) / 1.99) / math.log(beta_b) - 1e-9)
        k = max(k, 0)
        assert out.status == "accepted"
        assert out.n_backtracks == k
        assert out.step_size == pytest.approx(eta0 * beta_b**k, rel=1e-12)


def test_goldstein_accepts_inside_both_bounds():
    L, x0 = 3.0, 2.0
    f = lambda x: 0.5 * L * x * x  # noqa: E731
    g = L * x0
    for eta0 in (1e-4, 0.3, 5.0):
        out = Goldstein(c=0.25).search(
            f(x0), eta0, lambda e: e * g * g, lambda e: f(x0 - e * g), 0.0, 10.0
        )
        eta = out.step_size
        assert out.status == "accepted"
        assert f(x0) - 0.75 * eta * g * g <= f(x0 - eta * g) <= f(x0) - 0.25 * eta * g * g


def test_max_backtracks_takes_no_step_and_starts_lower_next_time():
    out = Armijo(c=0.5, beta_b=0.5, max_backtracks=3).search(
        1.0, 8.0, lambda e: e, lambda e: 2.0, 0.0, 8.0
    )
    assert out.status == "max_backtracks" and out.step_size == 0.0
    assert out.n_evals == 4 and out.next_step == 0.5


@pytest.mark.parametrize("c", [0.1, 0.3, 0.8])
@pytest.mark.parametrize("f_star", [0.0, -1.5, 0.7])
def test_polyak_cap_never_excludes_an_acceptable_step(c, f_star):
    # For any loss bounded below by f*, every step that passes Armijo's test lies
    # at or below the cap; scan many such losses along the search line.
    rng = np.random.default_rng(1)
    rule = Armijo(c=c)
    etas = np.linspace(0.0, 20.0, 4001)[1:]
    for _ in range(40):
        pp = rng.uniform(0.1, 10.0)
        f0 = f_star + rng.uniform(0.01, 5.0)
        cap = rule.polyak_cap(f0, f_star, pp)
        L = rng.uniform(0.01, 50.0)
        # a convex quadratic along the line, clipped from below at f*
        f = np.maximum(f0 - etas * pp + 0.5 * L * etas**2 * pp, f_star)
        acceptable = etas[f <= f0 - c * etas * pp]
        assert acceptable.size and acceptable.max() <= cap * (1 + 1e-12)
    # and the cap is tight: the loss that decreases at exactly c <g, d> until it
    # reaches f* accepts every step up to the cap, so a smaller cap would exclude one
    f0, pp = f_star + 2.0, 4.0
    cap = rule.polyak_cap(f0, f_star, pp)
    f = np.maximum(f0 - c * etas * pp, f_star)
    acceptable = etas[f <= f0 - c * etas * pp + 1e-12]
    assert acceptable.max() == pytest.approx(cap, abs=etas[1] - etas[0])


def test_reset_rules():
    assert initial_step("conservative", 0.5, 10.0, 2.0) == 0.5
    assert initial_step("grow", 0.5, 10.0, 2.0) == 1.0
    assert initial_step("grow", 8.0, 10.0, 2.0) == 10.0
    assert initial_step("max", 0.5, 10.0, 2.0) == 10.0


def test_make_step_rule_passes_only_known_settings():
    assert isinstance(make_step_rule("polyak", c=0.2, beta_b=0.9), Polyak)
    assert math.isclose(make_step_rule("armijo", c=0.3).c, 0.3)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_make_step_rule_refuses_a_non_finite_setting_it_does_not_use(value):
    # issue 17: SPS(beta_b=nan) used to be accepted because Polyak does not read beta_b
    with pytest.raises(ValueError, match=r"'beta_b' setting must be a finite number"):
        make_step_rule("polyak", c=0.2, beta_b=value)
    with pytest.raises(ValueError, match=r"'beta_f' setting"):
        make_step_rule("armijo", c=0.1, beta_f=value)
