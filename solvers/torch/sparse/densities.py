# SPDX-License-Identifier: BSD-3-Clause
"""Per-layer densities from a global one: uniform, Erdos-Renyi(-Kernel), or a map.

ERK (Evci et al. 2020, "Rigging the lottery", §3 and appendix; ER from
Mocanu et al. 2018) gives layer ``l`` the density

    p_l = eps * (sum(shape_l) / prod(shape_l)) ** power,

with ``eps`` chosen so that ``sum_l p_l N_l = density * sum_l N_l``; a layer
whose ``p_l`` would exceed 1 is made dense and ``eps`` recomputed, largest
first. Counts are then exact: :func:`active_count` rounds ``d_l N_l``.
"""

from __future__ import annotations

import math
import re
from numbers import Real

from solvers._validation import (
    StrOptions,
    check_positive,
    interval,
    validate_params,
)

__all__ = ["DISTRIBUTIONS", "active_count", "check_density", "erk_densities", "layer_densities"]

#: the named spreads of a global density over layers
DISTRIBUTIONS = ("uniform", "erk", "er")

_CONSTRAINTS = {
    "distribution": [StrOptions(set(DISTRIBUTIONS)), callable],
    "power": [interval(Real, 0, None, closed="left")],
    "include_kernel": ["boolean"],
}


def check_density(density, name="density", owner=None):
    """A density in (0, 1] (a sparsity in [0, 1)), returned as a float.

    A density of 0 leaves no weights to train; NaN, booleans and non-numbers
    are refused (:class:`~solvers._validation.InvalidParameterError`, both a
    ``ValueError`` and a ``TypeError``).
    """
    return check_positive(name, density, upper=1.0, upper_open=False, owner=owner)


def erk_densities(shapes, density, power=1.0, dense=(), include_kernel=True):
    """Erdos-Renyi-Kernel densities with the dense-layer fallback (module docstring).

    ``power=0`` is uniform.

    Parameters
    ----------
    shapes : dict of str to tuple
    density : float
    power : float, default 1.0
    dense : iterable of str
        Layers forced dense.
    include_kernel : bool, default True
        False gives ER: only the first two dimensions (fan-out, fan-in) enter
        the ratio.

    Returns
    -------
    dict of str to float
    """
    density = check_density(density)
    validate_params(
        _CONSTRAINTS, {"power": power, "include_kernel": include_kernel}, "erk_densities"
    )
    numel = {k: math.prod(s) for k, s in shapes.items()}
    ratio_dims = {k: tuple(s) if include_kernel else tuple(s[:2]) for k, s in shapes.items()}
    raw = {k: (sum(s) / math.prod(s)) ** power for k, s in ratio_dims.items()}
    dense = set(dense)
    unknown = dense - set(shapes)
    if unknown:
        raise ValueError(f"dense layers {sorted(unknown)} are not among the sparse layers")
    total = sum(numel.values())
    while True:
        free = [k for k in shapes if k not in dense]
        budget = density * total - sum(numel[k] for k in dense)
        if not free or budget <= 0:
            raise ValueError(
                f"density {density} is too low for the layers kept dense ({sorted(dense)})"
            )
        eps = budget / sum(raw[k] * numel[k] for k in free)
        worst = max(free, key=lambda k: raw[k])
        if eps * raw[worst] <= 1.0:
            break
        dense.add(worst)
    return {k: 1.0 if k in dense else eps * raw[k] for k in shapes}


def _densities_by_pattern(shapes, density):
    """``{name regex: density}`` resolved per layer; the first matching pattern wins."""
    out = {}
    for name in shapes:
        hit = [d for pat, d in density.items() if re.search(pat, name)]
        if not hit:
            raise ValueError(f"no density given for layer {name!r} (patterns {list(density)})")
        out[name] = check_density(hit[0], owner=f"layer {name}")
    return out


def layer_densities(shapes, density, distribution="uniform"):
    """Per-layer densities.

    Parameters
    ----------
    shapes : dict of str to tuple
    density : float or dict
        A global density in (0, 1], or ``{name regex: density}`` (every layer
        must match one pattern; the first match wins).
    distribution : {"uniform", "erk", "er"} or callable
        How a global density is spread: the same in every layer, ERK (fan-in,
        fan-out and kernel size), or ER (fan-in and fan-out only); a callable
        ``f(shapes, density) -> {name: density}``.

    Returns
    -------
    dict of str to float
    """
    if isinstance(density, dict):
        return _densities_by_pattern(shapes, density)
    density = check_density(density)
    validate_params(_CONSTRAINTS, {"distribution": distribution}, "layer_densities")
    if callable(distribution):
        out = distribution(shapes, density)
        return {k: check_density(out[k], owner=f"layer {k}") for k in shapes}
    if distribution == "uniform":
        return dict.fromkeys(shapes, density)
    return erk_densities(shapes, density, include_kernel=distribution == "erk")


def active_count(numel, density):
    """Exact number of active weights: ``round(density * numel)``, at least 1."""
    return min(numel, max(1, round(density * numel)))
