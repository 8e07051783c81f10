# SPDX-License-Identifier: BSD-3-Clause
"""solvers.linesearch.config: the search settings both drivers read."""

import dataclasses
import math

import pytest

from solvers.linesearch.config import SearchConfig, plan_step
from solvers.linesearch.rules import NO_SEARCH, Armijo, FixedStep, Polyak

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
