# SPDX-License-Identifier: BSD-3-Clause
"""solvers.linesearch.config: the search settings both drivers read."""

import dataclasses
import math

import pytest

from solvers.linesearch.config import SearchConfig, plan_step
from solvers.linesearch.rules import NO_SEARCH, Armijo, FixedStep, Polyak, SearchOutcome

EPS = 2.0**-52


def test_config_is_frozen_and_growth_is_per_step():
    config = SearchConfig.from_settings("armijo", c=0.3, gamma=4.0, n_batches_per_epoch=2)
    assert isinstance(config.rule, Armijo) and config.rule.c == 0.3
    assert config.growth == 2.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.reset = "max"


@pytest.mark.parametrize(
    "f0, pp, eta_max, rule, status",
    [
        (1.0, math.nan, 1.0, Armijo(), "nonfinite_gradient"),
        (1.0, math.inf, 1.0, Armijo(), "nonfinite_gradient"),
        (1.0, 0.0, 1.0, Armijo(), "small_gradient"),
        (1.0, 1.0, 0.0, Armijo(), "zero_lr"),
        (0.0, 1.0, 1.0, Polyak(), "at_lower_bound"),
    ],
)
def test_reasons_to_take_no_step(f0, pp, eta_max, rule, status):
    config = SearchConfig(rule)
    assert config.first_trial(f0, pp, 0.5, eta_max, EPS) == (0.0, status)
    out = config.search(
        f0, pp, previous=0.5, eta_max=eta_max, eps=EPS, decrease=None, evaluate=None
    )
    assert out.status == status and status in NO_SEARCH and not out.searched
    assert out.step_size == 0.0 and out.next_step == 0.5 and out.n_evals == 0


def test_first_trial_is_the_reset_capped_by_polyak():
    config = SearchConfig(Armijo(c=0.5), reset="conservative")
    assert config.first_trial(1.0, 1.0, 0.5, 10.0, EPS) == (0.5, None)
    assert config.first_trial(1.0, 100.0, 0.5, 10.0, EPS) == (0.02, None)  # 1 / (0.5 * 100)
    no_cap = dataclasses.replace(config, polyak_init=False)
    assert no_cap.first_trial(1.0, 100.0, 0.5, 10.0, EPS) == (0.5, None)
    # below f*: no cap, the search starts from the reset
    assert config.first_trial(-1.0, 100.0, 0.5, 10.0, EPS) == (0.5, None)
    assert SearchConfig(FixedStep()).first_trial(1.0, 1.0, 0.5, 3.0, EPS) == (3.0, None)


def test_search_runs_the_rule_with_the_noise_slack():
    config = SearchConfig(Armijo(c=0.5, beta_b=0.5), reset="max", polyak_init=False)
    trials = []

    def evaluate(eta):
        trials.append(eta)
        return 1.0 - 0.5 * eta + 1e-17  # an exact tie up to rounding: accepted

    out = config.search(
        1.0, 1.0, previous=1.0, eta_max=4.0, eps=EPS, decrease=lambda e: e, evaluate=evaluate
    )
    assert out.status == "accepted" and out.searched and trials == [4.0]


def test_plan_step_is_first_trial():
    rule = Armijo(c=0.3)
    for reset in ("grow", "conservative", "max"):
        kw = dict(f0=2.0, pp=3.0, previous=0.1, eta_max=10.0, reset=reset, f_star=0.0, eps=EPS)
        config = SearchConfig(rule, reset=reset, gamma=1.5, n_batches_per_epoch=1)
        expected = config.first_trial(2.0, 3.0, 0.1, 10.0, EPS)
        assert plan_step(rule, growth=1.5, polyak_init=True, **kw) == expected


@pytest.mark.parametrize(
    "settings, match",
    [
        (dict(reset="never"), "'reset' parameter"),
        (dict(gamma=0.5), "'gamma' parameter"),
        (dict(n_batches_per_epoch=0), "'n_batches_per_epoch' parameter"),
        (dict(polyak_init=1), "'polyak_init' parameter"),
        (dict(f_star=math.inf), "'f_star' parameter"),
        (dict(line_search="newton"), "'line_search' parameter"),
        (dict(c=1.5), r"'c' parameter.* must be a float in the range \(0.0, 1.0\)"),
    ],
)
def test_from_settings_validates(settings, match):
    settings = {"line_search": "armijo", **settings}
    with pytest.raises(ValueError, match=match):
        SearchConfig.from_settings(**settings)


def test_no_search_outcome_keeps_the_previous_step_and_counts_nothing():
    # issue 21: a step refused before any trial reports zero evaluations and backtracks
    config = SearchConfig(Armijo(), reset="grow", gamma=2.0, n_batches_per_epoch=1)

    def forbidden(eta):
        raise AssertionError("no trial expected")

    out = config.search(
        1.0, 0.0, previous=0.3, eta_max=1.0, eps=1e-16, decrease=forbidden, evaluate=forbidden
    )
    assert out == SearchOutcome(0.0, 0, 0, "small_gradient", 0.3)


def test_polyak_rule_is_never_given_the_evaluate_function():
    config = SearchConfig(Polyak(c=0.5), reset="max", gamma=2.0, n_batches_per_epoch=1)
    calls = []
    out = config.search(
        1.0,
        4.0,
        previous=0.0,
        eta_max=10.0,
        eps=1e-16,
        decrease=lambda e: 4.0 * e,
        evaluate=calls.append,
    )
    # SPS: (f0 - f*) / (c pp) = 1 / 2, below eta_max
    assert out.step_size == 0.5 and out.status == "polyak" and calls == []


def test_lower_bound_uses_the_gap_to_f_star():
    # f0 = f* = 1: at the bound (the gap f0 - f* is 0), for any sign of f*
    for f_star in (1.0, -1.0):
        config = SearchConfig(
            Polyak(), reset="max", gamma=2.0, n_batches_per_epoch=1, f_star=f_star
        )
        eta0, status = config.first_trial(f_star, 1.0, 0.0, 1.0, 1e-16)
        assert (eta0, status) == (0.0, "at_lower_bound")


def test_plan_step_passes_f_star_to_the_polyak_cap():
    # Armijo's first trial with the Polyak cap: (f0 - f*) / (c pp) = (3 - 1) / (0.5 * 1) = 4
    eta0, status = plan_step(
        Armijo(c=0.5),
        f0=3.0,
        pp=1.0,
        previous=0.0,
        eta_max=10.0,
        reset="max",
        growth=1.0,
        f_star=1.0,
        polyak_init=True,
        eps=1e-16,
    )
    assert (eta0, status) == (4.0, None)


def test_from_settings_defaults_names_and_float_fields():
    # issue 21: Armijo by default, errors name SearchConfig, gamma and f* stored as floats
    config = SearchConfig.from_settings()
    assert isinstance(config.rule, Armijo)
    with pytest.raises(ValueError, match=r"^The 'gamma' parameter of SearchConfig"):
        SearchConfig.from_settings(gamma=0.5)
    config = SearchConfig.from_settings("polyak", gamma=3, f_star=-1)
    assert type(config.gamma) is float and type(config.f_star) is float
    assert (config.gamma, config.f_star) == (3.0, -1.0)


def test_resolve_line_search_deprecation_names_the_caller():
    from solvers.linesearch.config import resolve_line_search

    assert resolve_line_search("goldstein", None) == "goldstein"
    with pytest.warns(
        DeprecationWarning,
        match=r"^minimize\(step_rule=\.\.\.\) is deprecated; use line_search=\.\.\. \(the name "
        r"the torch optimizers use\)\.$",
    ):
        assert resolve_line_search("armijo", "polyak") == "polyak"
    with pytest.raises(TypeError, match=r"^minimize got both line_search and its deprecated"):
        resolve_line_search("goldstein", "polyak")
