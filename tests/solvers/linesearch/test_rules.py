# SPDX-License-Identifier: BSD-3-Clause
"""solvers.linesearch.rules: Armijo, Goldstein, Polyak, the reset of the first trial."""

import math

import numpy as np
import pytest

from solvers.linesearch.rules import (
    RESETS,
    Armijo,
    FixedStep,
    Goldstein,
    Polyak,
    SearchOutcome,
    check_reset,
    initial_step,
    make_step_rule,
    noise_tolerance,
)


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


# -- issue 21: the rules' mutants that survived ----------------------------------------------


class _Line:
    """f(w - eta d) = f0 - eta pp + L eta^2 pp / 2 along the search line, with a call log."""

    def __init__(self, f0=1.0, pp=4.0, L=2.0):
        self.f0, self.pp, self.L, self.calls = f0, pp, L, []

    def decrease(self, eta):
        return eta * self.pp

    def evaluate(self, eta):
        self.calls.append(eta)
        return self.f0 - eta * self.pp + 0.5 * self.L * eta * eta * self.pp


def test_goldstein_grows_into_the_band_counting_every_trial():
    # Armijo holds for eta <= 2 (1 - c) / L = 0.75, the curvature bound for eta >= 2 c / L = 0.25
    line = _Line()
    out = Goldstein(c=0.25, beta_f=2.0).search(
        line.f0, 0.01, line.decrease, line.evaluate, 0.0, 8.0
    )
    # 0.01, 0.02, 0.04, 0.08, 0.16 fail the bound, 0.32 is inside
    assert line.calls == pytest.approx([0.01 * 2**j for j in range(6)])
    assert (out.step_size, out.n_evals, out.n_backtracks, out.status) == (
        pytest.approx(0.32),
        6,
        5,
        "accepted",
    )
    assert out.next_step == out.step_size


def test_goldstein_shrinks_into_the_band():
    line = _Line()
    out = Goldstein(c=0.25, beta_b=0.5).search(line.f0, 3.0, line.decrease, line.evaluate, 0.0, 8.0)
    assert line.calls == [3.0, 1.5, 0.75]  # 0.75: Armijo holds with equality
    assert (out.step_size, out.n_evals, out.n_backtracks) == (0.75, 3, 2)


def test_goldstein_stops_growing_at_eta_max():
    # eta_max = 0.2 is below the curvature band: the step eta_max is accepted on Armijo alone
    line = _Line()
    out = Goldstein(c=0.25, beta_f=2.0).search(
        line.f0, 0.05, line.decrease, line.evaluate, 0.0, 0.2
    )
    assert line.calls == pytest.approx([0.05, 0.1, 0.2])
    assert out.step_size == pytest.approx(0.2) and out.status == "accepted"
    assert out.n_backtracks == 2


def test_goldstein_out_of_trials_takes_the_largest_armijo_step():
    # a narrow band [0.45, 0.55] (c = 0.45, L = 2) that the trials jump over:
    # 0.4 (Armijo only), x2.5 -> 1.0 (fails Armijo), x0.6 -> 0.6 (fails), x0.6 -> 0.36 (Armijo only)
    line = _Line()
    rule = Goldstein(c=0.45, beta_b=0.6, beta_f=2.5, max_backtracks=3)
    out = rule.search(line.f0, 0.4, line.decrease, line.evaluate, 0.0, 8.0)
    assert line.calls == pytest.approx([0.4, 1.0, 0.6, 0.36, 0.4])  # last: back to the best
    assert out.step_size == pytest.approx(0.4) and out.next_step == pytest.approx(0.4)
    assert (out.n_evals, out.n_backtracks, out.status) == (5, 4, "accepted")


def test_goldstein_without_any_armijo_step_takes_none():
    calls = []

    def evaluate(eta):
        calls.append(eta)
        return 2.0  # above f0 = 1 for every step

    out = Goldstein(c=0.25, beta_b=0.5, max_backtracks=2).search(
        1.0, 4.0, lambda e: e, evaluate, 0.0, 8.0
    )
    assert calls == [4.0, 2.0, 1.0]
    assert (out.step_size, out.n_evals, out.n_backtracks, out.status, out.next_step) == (
        0.0,
        3,
        3,
        "max_backtracks",
        0.5,
    )


@pytest.mark.parametrize("bound", ["armijo", "curvature"])
def test_goldstein_tolerance_widens_both_bounds(bound):
    # f0 = 1, c = 0.25, eta = 1, pp = 1, tol = 0.125 (all exact in binary): a loss exactly on
    # the widened bound (1 - 0.25 + 0.125, or 1 - 0.75 - 0.125) is accepted at once
    f = 0.875 if bound == "armijo" else 0.125
    out = Goldstein(c=0.25).search(1.0, 1.0, lambda e: e, lambda e: f, 0.125, 4.0)
    assert (out.step_size, out.n_evals, out.n_backtracks) == (1.0, 1, 0)


def test_rules_without_trials_never_evaluate():
    def forbidden(eta):
        raise AssertionError("no forward pass expected")

    fixed = FixedStep().search(1.0, 0.3, forbidden, forbidden, 0.0, 0.7)
    assert fixed == SearchOutcome(0.7, 0, 0, "fixed", 0.7)  # eta_max, whatever the trial
    polyak = Polyak().search(1.0, 0.3, forbidden, forbidden, 0.0, 0.7)
    assert polyak == SearchOutcome(0.3, 0, 0, "polyak", 0.3)  # the capped first trial
    assert fixed.searched and polyak.searched


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: Goldstein(c=0.5), "c"),  # c < 1/2 for Goldstein
        (lambda: Goldstein(beta_b=1.0), "beta_b"),
        (lambda: Goldstein(beta_f=-2.0), "beta_f"),
        (lambda: Goldstein(max_backtracks=0), "max_backtracks"),
        (lambda: Polyak(c=0.0), "c"),
        (lambda: Armijo(beta_b=0.0), "beta_b"),
    ],
)
def test_rule_parameters_are_checked_by_name(make, name):
    with pytest.raises(ValueError, match=rf"^The '{name}' parameter"):
        make()


def test_goldstein_beta_f_must_exceed_one_and_polyak_c_is_unbounded():
    with pytest.raises(ValueError, match=r"^beta_f must be > 1, got 1\.0\.$"):
        Goldstein(beta_f=1.0)
    assert Polyak(c=5.0).c == 5.0  # SPS's c is any positive number


def test_check_reset_and_repr():
    assert [check_reset(r) for r in RESETS] == ["conservative", "grow", "max"]
    with pytest.raises(ValueError, match=r"^The 'reset' parameter"):
        check_reset("fast")
    rule = Goldstein(c=0.2, beta_b=0.5, beta_f=3.0, max_backtracks=7)
    assert repr(rule) == "Goldstein(c=0.2, beta_b=0.5, beta_f=3.0, max_backtracks=7)"
    assert repr(eval(repr(rule))) == repr(rule)  # the repr rebuilds the rule
    assert repr(FixedStep()) == "FixedStep()"


def test_armijo_accepts_on_the_tolerance_boundary_and_names_its_arguments():
    # f0 = 1, c = 0.25, eta = pp = 1, tol = 0.125: f = 0.875 is exactly on the widened bound
    out = Armijo(c=0.25).search(1.0, 1.0, lambda e: e, lambda e: 0.875, 0.125, 4.0)
    assert (out.step_size, out.n_evals, out.n_backtracks) == (1.0, 1, 0)
    with pytest.raises(ValueError, match=r"^The 'max_backtracks' parameter"):
        Armijo(max_backtracks=0)


def test_initial_step_restarts_from_eta_max_without_a_previous_step():
    for reset in RESETS:
        assert initial_step(reset, 0.0, 10.0, 2.0) == 10.0
        assert initial_step(reset, -1.0, 10.0, 2.0) == 10.0


def test_noise_tolerance_is_eight_ulps_of_the_loss():
    eps = 2.0**-52
    assert noise_tolerance(3.0, eps) == 24.0 * eps
    assert noise_tolerance(-3.0, eps) == 24.0 * eps
