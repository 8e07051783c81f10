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


def test_polyak_cap_never_excludes_an_acceptable_step():
    # f >= 0, so any Armijo step satisfies eta <= f / (c <g, d>)
    rule = Armijo(c=0.3)
    f0, pp = 2.0, 4.0
    assert rule.polyak_cap(f0, 0.0, pp) == pytest.approx(f0 / (0.3 * pp))


def test_reset_rules():
    assert initial_step("conservative", 0.5, 10.0, 2.0) == 0.5
    assert initial_step("grow", 0.5, 10.0, 2.0) == 1.0
    assert initial_step("grow", 8.0, 10.0, 2.0) == 10.0
    assert initial_step("max", 0.5, 10.0, 2.0) == 10.0


def test_make_step_rule_passes_only_known_settings():
    assert isinstance(make_step_rule("polyak", c=0.2, beta_b=0.9), Polyak)
    assert math.isclose(make_step_rule("armijo", c=0.3).c, 0.3)
