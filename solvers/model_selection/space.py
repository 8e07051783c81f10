# SPDX-License-Identifier: BSD-3-Clause
"""A search space as tabular features: sampling, encoding and pruning state.

:class:`SearchSpace` reads ``param_distributions`` as
:class:`~sklearn.model_selection.RandomizedSearchCV` does (a dict, or a list of
dicts sampled uniformly; each value a list sampled uniformly or an object with
``rvs``) and turns every configuration into a row of numbers for a tabular
predictor (GBDT-NAS, Luo et al. 2020, arXiv 2007.04785, section 3.1: one-hot
operations per layer):

- a list of values is **one-hot** (a column per value), except a list of two or
  more distinct real numbers, which is **ordinal** (one column holding the
  value; its logarithm when they are all positive);
- a distribution is one column holding the drawn value, its base-10
  logarithm when the support is strictly positive (``loguniform``,
  ``randint(1, ...)``), NaN when a draw is not a real number;
- with a list of dicts, a one-hot column per dict, and the columns of a
  parameter are per dict (NaN where the dict does not draw it;
  :class:`~sklearn.ensemble.HistGradientBoostingRegressor` routes missing
  values natively).

Trees are invariant to monotone maps of a column, so the log scale matters
for the regions below, not for the predictor.

Pruning removes *choices*: a value of a list, or a *region* of a distribution
that has a ``cdf`` (scipy's frozen distributions): the :data:`N_REGIONS`
intervals of equal prior mass ``[q_k, q_{k+1})`` with ``q_k = F^{-1}(k / R)``,
equal widths in the encoded scale for ``loguniform`` and ``uniform``. Pruned
choices are never drawn again: lists sample among the values kept,
distributions redraw (``rvs``) until the draw's region is kept.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from numbers import Real

import numpy as np

__all__ = ["N_REGIONS", "Dimension", "SearchSpace"]

#: regions of equal prior mass a distribution with a ``cdf`` is cut into for pruning
N_REGIONS = 4

#: redraws of a distribution before a draw in a pruned region is accepted anyway
MAX_REDRAWS = 200

#: an all-list space with at most this many configurations is enumerated when
#: random draws stop finding new ones
MAX_ENUMERATED = 100_000


def _is_real(v):
    return isinstance(v, Real) and not isinstance(v, (bool, np.bool_))


@dataclass
class Dimension:
    """One parameter of one dict of the space, with its columns and its pruned choices.

    ``kind``: ``"categorical"`` (a list, one-hot), ``"ordinal"`` (a list of real
    numbers, one column) or ``"distribution"`` (an object with ``rvs``).
    ``choices``: the number of prunable choices (list values, or regions of a
    distribution with a ``cdf``; 0 for other distributions). ``pruned``: the
    indices of the pruned choices.
    """

    subspace: int
    name: str
    kind: str
    values: list | None = None
    dist: object = None
    log: bool = False
    columns: list = field(default_factory=list)
    pruned: set = field(default_factory=set)

    @property
    def choices(self):
        if self.values is not None:
            return len(self.values)
        return N_REGIONS if _has_cdf(self.dist) else 0

    def encode_value(self, v):
        """The column value of ``v`` (ordinal lists and distributions)."""
        if not _is_real(v) or not math.isfinite(float(v)):
            return math.nan
        v = float(v)
        if self.log:
            return math.log10(v) if v > 0 else math.nan
        return v

    def choice_of(self, v):
        """The index of the choice ``v`` falls in (a list index or a region), or None."""
        if self.values is not None:
            for i, w in enumerate(self.values):
                if _same(v, w):
                    return i
            return None
        if not _has_cdf(self.dist) or not _is_real(v):
            return None
        q = float(self.dist.cdf(v))
        return min(int(q * N_REGIONS), N_REGIONS - 1)

    def describe(self, i):
        """``i``-th choice in words: ``name=value`` or ``name in [a, b)``."""
        if self.values is not None:
            return f"{self.name}={self.values[i]!r}"
        lo, hi = self.region(i)
        return f"{self.name} in [{lo:.3g}, {hi:.3g})"

    def region(self, i):
        """The bounds ``(F^{-1}(i/R), F^{-1}((i+1)/R))`` of region ``i``."""
        return float(self.dist.ppf(i / N_REGIONS)), float(self.dist.ppf((i + 1) / N_REGIONS))

    def representative(self, i):
        """A value standing for choice ``i``: the list value, or the region's median."""
        if self.values is not None:
            return self.values[i]
        return float(self.dist.ppf((i + 0.5) / N_REGIONS))

    def set_choice(self, rows, i):
        """Write choice ``i`` into the columns of ``rows`` (in place)."""
        if self.kind == "categorical":
            rows[:, self.columns] = 0.0
            rows[:, self.columns[i]] = 1.0
        else:
            rows[:, self.columns[0]] = self.encode_value(self.representative(i))


def _has_cdf(dist):
    return dist is not None and hasattr(dist, "cdf") and hasattr(dist, "ppf")


def _same(a, b):
    """``a`` and ``b`` are the same list value (numbers by value, others by type and ==)."""
    if a is b:
        return True
    if _is_real(a) and _is_real(b):
        return float(a) == float(b)
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if type(a) is not type(b):
        return False
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _like(v, template):
    """``v`` as the type of ``template`` (a discrete distribution's ``ppf`` gives floats)."""
    if isinstance(template, (int, np.integer)) and not isinstance(template, bool):
        return type(template)(round(float(v)))
    return float(v)


def _positive_support(dist):
    try:
        low = dist.support()[0]
    except (AttributeError, TypeError, ValueError):
        return False
    return bool(np.isfinite(low) and low > 0)


class SearchSpace:
    """``param_distributions`` as sampled configurations and their feature rows.

    Parameters
    ----------
    param_distributions : dict or list of dicts
        As for :class:`~sklearn.model_selection.RandomizedSearchCV`.

    Raises
    ------
    ValueError
        The space is empty (no dict, or a dict without parameters, or a list
        without values), naming ``param_distributions``.
    TypeError
        A value is neither a list nor an object with ``rvs``.

    Examples
    --------
    >>> from scipy.stats import loguniform
    >>> space = SearchSpace({"kernel": ["rbf", "laplacian"], "alpha": loguniform(1e-6, 1)})
    >>> space.feature_names
    ['alpha', 'kernel=rbf', 'kernel=laplacian']
    >>> params, row = space.sample(np.random.RandomState(0))
    >>> params["kernel"], bool(row[0] == np.log10(params["alpha"]))
    ('laplacian', True)
    """

    def __init__(self, param_distributions):
        dicts = self._as_dicts(param_distributions)
        self.n_subspaces = len(dicts)
        self.dimensions = []
        self.feature_names = []
        many = self.n_subspaces > 1
        if many:
            self.feature_names += [f"subspace={s}" for s in range(self.n_subspaces)]
        for s, d in enumerate(dicts):
            for name, spec in sorted(d.items()):
                dim = self._dimension(s, name, spec)
                prefix = f"[{s}] {name}" if many else name
                if dim.kind == "categorical":
                    for v in dim.values:
                        dim.columns.append(len(self.feature_names))
                        self.feature_names.append(f"{prefix}={v}")
                else:
                    dim.columns.append(len(self.feature_names))
                    self.feature_names.append(prefix)
                self.dimensions.append(dim)
        self.dicts = dicts
        self.names = sorted({name for d in dicts for name in d})

    @staticmethod
    def _as_dicts(param_distributions):
        if isinstance(param_distributions, Mapping):
            if not param_distributions:
                raise ValueError("param_distributions is empty: give at least one parameter.")
            param_distributions = [param_distributions]
        if not isinstance(param_distributions, Iterable) or isinstance(param_distributions, str):
            raise TypeError(
                "param_distributions must be a dict or a list of dicts; "
                f"got {type(param_distributions).__name__}."
            )
        dicts = list(param_distributions)
        if not dicts:
            raise ValueError("param_distributions is empty: give at least one parameter.")
        for d in dicts:
            if not isinstance(d, Mapping):
                raise TypeError(f"param_distributions must hold dicts; got {d!r}.")
            if not d:
                raise ValueError(
                    "param_distributions holds an empty dict: every dict needs a parameter."
                )
        return [dict(d) for d in dicts]

    @staticmethod
    def _dimension(s, name, spec):
        if hasattr(spec, "rvs"):
            return Dimension(s, name, "distribution", dist=spec, log=_positive_support(spec))
        if isinstance(spec, str) or not isinstance(spec, Iterable):
            raise TypeError(
                f"param_distributions[{name!r}] must be a list of values or a distribution "
                f"with an rvs method; got {spec!r}."
            )
        values = list(spec)
        if not values:
            raise ValueError(
                f"param_distributions[{name!r}] is an empty list: give at least one value."
            )
        reals = all(_is_real(v) and math.isfinite(float(v)) for v in values)
        if reals and len({float(v) for v in values}) == len(values) and len(values) >= 2:
            log = all(float(v) > 0 for v in values)
            return Dimension(s, name, "ordinal", values=values, log=log)
        return Dimension(s, name, "categorical", values=values)

    # -- sampling -------------------------------------------------------------------------

    def dims_of(self, s):
        return [d for d in self.dimensions if d.subspace == s]

    def sample(self, rng):
        """One configuration drawn from the choices kept: ``(params, row)``.

        The dict is drawn uniformly, then each parameter in name order (lists
        uniformly among the values kept; distributions by ``rvs`` with
        ``random_state=rng``, redrawn while in a pruned region), as
        :class:`~sklearn.model_selection.ParameterSampler` draws.
        """
        s = rng.randint(self.n_subspaces) if self.n_subspaces > 1 else 0
        params, choices = {}, {}
        for dim in self.dims_of(s):
            if dim.values is not None:
                kept = [i for i in range(len(dim.values)) if i not in dim.pruned]
                i = kept[rng.randint(len(kept))]
                params[dim.name] = dim.values[i]
                choices[dim.name] = i
            else:
                v = dim.dist.rvs(random_state=rng)
                if dim.pruned:
                    for _ in range(MAX_REDRAWS):
                        if dim.choice_of(v) not in dim.pruned:
                            break
                        v = dim.dist.rvs(random_state=rng)
                params[dim.name] = v
        return params, self.encode(s, params, choices)

    def neighbour(self, row, params, rng, *, scale=0.1):
        """``params`` (feature row ``row``) with one parameter moved: ``(params, row)``.

        A list parameter is redrawn among the values kept; a distribution with
        a ``cdf`` moves in prior quantile, ``u' = F(x) + scale * N(0, 1)``
        (clipped to (0, 1)), ``x' = F^{-1}(u')``, and is redrawn if ``x'``
        falls in a pruned region; other distributions are redrawn.
        """
        s = self.subspace_of(row)
        dims = self.dims_of(s)
        dim = dims[rng.randint(len(dims))]
        new = dict(params)
        if dim.values is not None:
            kept = [i for i in range(len(dim.values)) if i not in dim.pruned]
            new[dim.name] = dim.values[kept[rng.randint(len(kept))]]
        else:
            v = None
            if _has_cdf(dim.dist) and _is_real(params[dim.name]):
                u = float(dim.dist.cdf(params[dim.name])) + scale * rng.standard_normal()
                v = dim.dist.ppf(min(max(u, 1e-9), 1.0 - 1e-9))
                v = _like(v, params[dim.name])
                if dim.choice_of(v) in dim.pruned:
                    v = None
            if v is None:
                v = dim.dist.rvs(random_state=rng)
                for _ in range(MAX_REDRAWS):
                    if dim.choice_of(v) not in dim.pruned:
                        break
                    v = dim.dist.rvs(random_state=rng)
            new[dim.name] = v
        return new, self.encode(s, new)

    def encode(self, s, params, choices=None):
        """The feature row of ``params``, a configuration of dict ``s``."""
        row = np.full(len(self.feature_names), np.nan)
        if self.n_subspaces > 1:
            row[: self.n_subspaces] = 0.0
            row[s] = 1.0
        for dim in self.dims_of(s):
            v = params[dim.name]
            if dim.kind == "categorical":
                i = (choices or {}).get(dim.name)
                i = dim.choice_of(v) if i is None else i
                row[dim.columns] = 0.0
                if i is not None:
                    row[dim.columns[i]] = 1.0
            else:
                row[dim.columns[0]] = dim.encode_value(v)
        return row

    def subspace_of(self, row):
        """The dict a feature row was drawn from."""
        if self.n_subspaces == 1:
            return 0
        return int(np.argmax(row[: self.n_subspaces]))

    def choice_in(self, dim, row):
        """The choice of ``dim`` a feature row holds (None: not in its dict, or unprunable)."""
        if self.subspace_of(row) != dim.subspace:
            return None
        if dim.kind == "categorical":
            return int(np.argmax(row[dim.columns]))
        if dim.kind == "ordinal":
            x = row[dim.columns[0]]
            return int(np.argmin([abs(dim.encode_value(v) - x) for v in dim.values]))
        if not _has_cdf(dim.dist) or not np.isfinite(row[dim.columns[0]]):
            return None
        x = row[dim.columns[0]]
        return dim.choice_of(10.0**x if dim.log else x)

    # -- finite spaces --------------------------------------------------------------------

    @property
    def all_lists(self):
        return all(d.values is not None for d in self.dimensions)

    def size(self):
        """The number of configurations kept (``inf`` with a distribution)."""
        if not self.all_lists:
            return math.inf
        return sum(
            math.prod(d.choices - len(d.pruned) for d in self.dims_of(s))
            for s in range(self.n_subspaces)
        )

    def enumerate(self):
        """Every configuration kept, ``(params, row)``, for an all-list space."""
        for s in range(self.n_subspaces):
            dims = self.dims_of(s)
            kept = [[i for i in range(d.choices) if i not in d.pruned] for d in dims]
            for combo in itertools.product(*kept):
                params = {d.name: d.values[i] for d, i in zip(dims, combo, strict=True)}
                choices = {d.name: i for d, i in zip(dims, combo, strict=True)}
                yield params, self.encode(s, params, choices)


def check_names(space, estimator):
    """Refuse parameter names ``estimator`` does not have, naming ``param_distributions``."""
    valid = set(estimator.get_params(deep=True))
    unknown = [n for n in space.names if n not in valid]
    if unknown:
        raise ValueError(
            f"param_distributions names {unknown}, which "
            f"{'is not a parameter' if len(unknown) == 1 else 'are not parameters'} of "
            f"{type(estimator).__name__}; its parameters are {sorted(valid)}."
        )
