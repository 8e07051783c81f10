# SPDX-License-Identifier: BSD-3-Clause
"""Predictor-guided hyperparameter search (GBDT-NAS) in scikit-learn's SearchCV API.

GBDT-NAS (Luo et al. 2020, arXiv 2007.04785; reference code
renqianluo/GBDT-NAS) replaces most evaluations of a search by a gradient
boosted tree that predicts a configuration's score from its tabular encoding.
:class:`GBDTSearchCV` runs it on cross-validated scores:

1. evaluate ``n_initial`` random configurations (round 0);
2. each round, fit the predictor ``f`` (``HistGradientBoostingRegressor``,
   seeded from ``random_state``) on ``(encoding, mean CV score)`` of every
   configuration evaluated so far; a failed fit (NaN score) counts as the
   worst score seen;
3. optionally prune choices whose estimated effect is clearly negative
   (:mod:`solvers.model_selection.pruning`; never the incumbent's);
4. draw ``n_candidates`` new configurations from the space kept, a fraction
   ``local_fraction`` of them neighbours of the best configurations so far
   (one parameter moved) and the rest random, and evaluate ``batch_size`` of
   them: each slot, with probability
   ``exploration``, is a uniformly random candidate of the pool; otherwise
   the first slot takes ``argmax_x f(x)`` over the pool and each further slot
   ``argmax_x f_b(x)`` of a predictor ``f_b`` fitted on a bootstrap resample
   of the evaluations (Thompson sampling by bootstrap: the batch spreads over
   the configurations that are plausibly best instead of one leaf of ``f``);
5. repeat until ``n_iter`` configurations are evaluated.

The encoding is :class:`solvers.model_selection.space.SearchSpace`'s. Against
the paper: the predictor is scikit-learn's histogram GBDT (LightGBM's
algorithm, no new dependency), sized for tens of points (leaves of at least
two samples) rather than the paper's 1000 architectures, its SHAP-based
pruning is replaced by partial dependence (see the pruning module), and the
candidates include neighbours of the best configurations (the paper ranks
random architectures only; with 30 evaluations instead of 1000, the local
candidates let the predictor refine the incumbent: on the search benchmark's
digits space, 4 of 5 seeds at or above random search with them, 2-3 of 5
without, in single runs; ``benchmarks/README.md`` has the committed figures).
"""

from __future__ import annotations

import math
import warnings
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.model_selection._search import BaseSearchCV
from sklearn.utils import check_random_state

from solvers._estimator import ValidatedEstimatorMixin
from solvers._validation import HasMethods, interval
from solvers.model_selection.pruning import prune
from solvers.model_selection.space import MAX_ENUMERATED, SearchSpace, check_names

__all__ = ["GBDTSearchCV", "default_predictor"]

#: the best configurations whose neighbours join each round's candidates
N_PARENTS = 5


def default_predictor(random_state=None):
    """The score predictor: a small, seeded ``HistGradientBoostingRegressor``.

    Tens of training points: leaves of at least 2 samples (scikit-learn's
    default of 20 would never split), 8 leaves, 100 rounds at learning rate
    0.1, no early stopping (the paper's LightGBM: 31 leaves, 100 rounds at
    0.05, on 1000 points).
    """
    return HistGradientBoostingRegressor(
        max_iter=100,
        learning_rate=0.1,
        max_leaf_nodes=8,
        min_samples_leaf=2,
        early_stopping=False,
        random_state=random_state,
    )


class GBDTSearchCV(ValidatedEstimatorMixin, BaseSearchCV):
    """Hyperparameter search guided by a gradient-boosted-tree score predictor.

    A drop-in for :class:`~sklearn.model_selection.RandomizedSearchCV`: the
    same ``param_distributions`` (lists, distributions with ``rvs``, lists of
    dicts), and the same fitted attributes (``best_params_``,
    ``best_estimator_``, ``cv_results_``...), ``refit``, ``n_jobs`` and
    ``error_score``. After ``n_initial`` random configurations, each round
    fits a predictor of the CV score on the configurations evaluated and
    spends ``batch_size`` evaluations on the candidates it ranks best (module
    docstring; GBDT-NAS, Luo et al. 2020).

    Parameters
    ----------
    estimator : estimator object
        Cloned for each fit; a pipeline takes ``step__param`` names.
    param_distributions : dict or list of dicts
        Parameter name -> list of values (one-hot, or ordinal for real
        numbers) or a distribution with ``rvs`` (log scale when its support
        is positive).
    n_iter : int, default=30
        Configurations evaluated in all (each costs ``n_splits_`` fits).
    n_initial : int, default=10
        Random configurations evaluated before the predictor is first fitted;
        at most ``n_iter``.
    batch_size : int, default=5
        Configurations evaluated per predictor round (in parallel with
        ``n_jobs``).
    n_candidates : int, default=1000
        Random configurations the predictor ranks each round.
    exploration : float in [0, 1], default=0.2
        Probability that a slot of a round goes to a uniformly random
        candidate instead of the next best predicted one.
    local_fraction : float in [0, 1], default=0.5
        Share of the ``n_candidates`` that are neighbours of the
        :data:`N_PARENTS` best configurations (one parameter moved,
        :meth:`SearchSpace.neighbour`) instead of random draws.
    prune : bool, default=True
        Prune choices (list values, quartile regions of distributions with a
        ``cdf``) whose partial-dependence effect is below ``-prune_threshold``
        standard deviations of the observed scores; never the choices of the
        best configuration so far.
    prune_threshold : float, default=1.0
        ``tau`` of the pruning rule, in standard deviations of the scores
        (0.5 also pruned good choices on the synthetic test objective).
    predictor : regressor or None, default=None
        The score predictor, cloned each round; None:
        :func:`default_predictor` seeded from ``random_state``.
    scoring, n_jobs, refit, cv, verbose, pre_dispatch, error_score, return_train_score
        As for :class:`~sklearn.model_selection.RandomizedSearchCV`. With
        several metrics, ``refit`` names the one that guides the search. A
        ``cv`` splitter that shuffles without a fixed seed gives each round
        different splits (as in successive halving).
    random_state : int, RandomState instance or None, default=None
        Seeds the draws and the predictor: an int gives the same search twice.

    Attributes
    ----------
    cv_results_ : dict of numpy arrays
        As for ``RandomizedSearchCV``, plus per configuration:
        ``search_round`` (0 for the initial sample), ``proposed_by``
        (``"initial"``, ``"random"`` or ``"predictor"``), ``predicted_score``
        (NaN unless proposed by the predictor) and ``n_pruned`` (choices
        pruned when it was drawn).
    best_estimator_, best_score_, best_params_, best_index_, scorer_, n_splits_
        As for ``RandomizedSearchCV`` (``refit_time_``, ``multimetric_`` too).
    pruned_ : list of dict
        Every pruned choice: ``round``, ``subspace``, ``param``, ``choice``
        (list index or region), ``description``, ``effect`` and ``threshold``
        (in score units) and ``n_evaluated``.
    n_rounds_ : int
        Rounds run, the initial sample included.
    predictor_ : regressor or None
        The predictor of the last round.
    feature_names_ : list of str
        The encoding's columns.

    See Also
    --------
    sklearn.model_selection.RandomizedSearchCV : the same search without predictor.
    sklearn.model_selection.HalvingRandomSearchCV : random search with successive halving.

    References
    ----------
    R. Luo, X. Tan, R. Wang, T. Qin, E. Chen, T.-Y. Liu. Accuracy Prediction
    with Non-neural Model for Neural Architecture Search. arXiv 2007.04785, 2020.

    Examples
    --------
    >>> from scipy.stats import loguniform
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> X, y = load_iris(return_X_y=True)
    >>> search = GBDTSearchCV(
    ...     LogisticRegression(max_iter=500),
    ...     {"C": loguniform(1e-4, 1e2), "fit_intercept": [True, False]},
    ...     n_iter=12, n_initial=6, batch_size=3, cv=3, random_state=0,
    ... ).fit(X, y)
    >>> len(search.cv_results_["params"]), search.n_rounds_
    (12, 3)
    >>> bool(search.best_score_ > 0.9)
    True
    """

    _parameter_constraints: ClassVar[dict] = {
        **BaseSearchCV._parameter_constraints,
        "param_distributions": [dict, list],
        "n_iter": [interval(Integral, 1, None, closed="left")],
        "n_initial": [interval(Integral, 1, None, closed="left")],
        "batch_size": [interval(Integral, 1, None, closed="left")],
        "n_candidates": [interval(Integral, 1, None, closed="left")],
        "exploration": [interval(Real, 0.0, 1.0, closed="both")],
        "local_fraction": [interval(Real, 0.0, 1.0, closed="both")],
        "prune": ["boolean"],
        "prune_threshold": [interval(Real, 0.0, None, closed="left")],
        "predictor": [HasMethods(["fit", "predict"]), None],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        estimator,
        param_distributions,
        *,
        n_iter=30,
        n_initial=10,
        batch_size=5,
        n_candidates=1000,
        exploration=0.2,
        local_fraction=0.5,
        prune=True,
        prune_threshold=1.0,
        predictor=None,
        scoring=None,
        n_jobs=None,
        refit=True,
        cv=None,
        verbose=0,
        pre_dispatch="2*n_jobs",
        random_state=None,
        error_score=np.nan,
        return_train_score=False,
    ):
        self.param_distributions = param_distributions
        self.n_iter = n_iter
        self.n_initial = n_initial
        self.batch_size = batch_size
        self.n_candidates = n_candidates
        self.exploration = exploration
        self.local_fraction = local_fraction
        self.prune = prune
        self.prune_threshold = prune_threshold
        self.predictor = predictor
        self.random_state = random_state
        super().__init__(
            estimator=estimator,
            scoring=scoring,
            n_jobs=n_jobs,
            refit=refit,
            cv=cv,
            verbose=verbose,
            pre_dispatch=pre_dispatch,
            error_score=error_score,
            return_train_score=return_train_score,
        )

    def fit(self, X, y=None, **params):
        """Run the search (module docstring), then refit the best configuration.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs), default=None
            Targets.
        **params : dict
            Passed to the estimator's ``fit``, the scorer and the splitter, as
            for ``RandomizedSearchCV``.

        Returns
        -------
        self : GBDTSearchCV
        """
        self._validate_params()
        self._check_search()
        return super().fit(X, y, **params)

    def _check_search(self):
        """The checks beyond single parameters, before any work (errors name the argument)."""
        if self.n_initial > self.n_iter:
            raise ValueError(
                f"n_initial={self.n_initial} must be at most n_iter={self.n_iter}: the "
                "initial random sample is part of the n_iter evaluations."
            )
        space = SearchSpace(self.param_distributions)
        check_names(space, self.estimator)
        multi = isinstance(self.scoring, (list, tuple, dict))
        if multi and not isinstance(self.refit, str):
            raise ValueError(
                "refit must name the metric that guides the search when scoring holds "
                f"several metrics; got refit={self.refit!r}."
            )
        return space

    # -- the search ---------------------------------------------------------------------------

    def _run_search(self, evaluate_candidates, *, callback_ctx=None):
        rng = check_random_state(self.random_state)
        space = SearchSpace(self.param_distributions)
        self.feature_names_ = list(space.feature_names)
        self.pruned_ = []
        self.predictor_ = None
        rows, seen = [], set()
        search_ctx = None
        if callback_ctx is not None:
            search_ctx = callback_ctx.subcontext(
                task_name="search", max_subtasks=None
            ).call_on_fit_task_begin(estimator=self)

        if space.size() < self.n_iter:
            warnings.warn(
                f"The space holds {space.size()} configurations, fewer than "
                f"n_iter={self.n_iter}; running {space.size()}.",
                UserWarning,
                stacklevel=3,
            )

        def evaluate(batch, round, proposed_by, predicted):
            n = len(batch)
            more = {
                "search_round": [round] * n,
                "proposed_by": proposed_by,
                "predicted_score": predicted,
                "n_pruned": [len(self.pruned_)] * n,
            }
            ctx = None
            if search_ctx is not None:
                ctx = search_ctx.subcontext(
                    task_name="search-round",
                    max_subtasks=n * self.n_splits_,
                    sequential_subtasks=False,
                ).call_on_fit_task_begin(estimator=self)
            results = evaluate_candidates(
                [p for p, _ in batch], more_results=more, callback_ctx=ctx
            )
            if ctx is not None:
                ctx.call_on_fit_task_end(estimator=self)
            for _, r in batch:
                rows.append(r)
                seen.add(r.tobytes())
            return results

        initial = _draw(space, rng, self.n_initial, seen)
        results = evaluate(initial, 0, ["initial"] * len(initial), [math.nan] * len(initial))
        round = 0
        while len(rows) < self.n_iter:
            round += 1
            X = np.asarray(rows)
            y = _guide_scores(results, self.refit)
            pool, local = self._pool(space, rng, seen, rows, results, y)
            if not pool:
                break
            finite = np.isfinite(y)
            predictor = None
            if finite.any():
                y = np.where(finite, y, np.min(y[finite]))
                predictor = self._make_predictor(rng).fit(_no_empty_columns(X), y)
                self.predictor_ = predictor
            if predictor is not None and self.prune:
                best = int(np.argmax(y))
                new = prune(
                    predictor, space, np.asarray([r for _, r in pool]), X, y, X[best],
                    threshold=self.prune_threshold, round=round,
                )  # fmt: skip
                if new:
                    self.pruned_ += [p.as_dict() for p in new]
                    pool = [(p, r) for p, r in pool if _kept(space, r)]
                    if not pool:
                        pool, local = self._pool(space, rng, seen, rows, results, y)
                        if not pool:
                            break
            n_new = min(self.batch_size, self.n_iter - len(rows), len(pool))
            batch, proposed_by, predicted = self._propose(pool, predictor, X, y, rng, n_new, local)
            results = evaluate(batch, round, proposed_by, predicted)
        self.n_rounds_ = round + 1
        if search_ctx is not None:
            search_ctx.call_on_fit_task_end(estimator=self)

    def _pool(self, space, rng, seen, rows, results, y):
        """A round's candidates (random, then neighbours of the best) and the neighbours' keys."""
        n_local = int(self.local_fraction * self.n_candidates)
        pool = _draw(space, rng, self.n_candidates - n_local, seen)
        if n_local == 0:
            return pool, set()
        finite = np.where(np.isfinite(y), y, -np.inf)
        top = np.argsort(-finite, kind="stable")[:N_PARENTS]
        top = [i for i in top if np.isfinite(finite[i])]
        if not top:
            return pool, set()
        keys = set(seen) | {r.tobytes() for _, r in pool}
        local = set()
        params = results["params"]
        for _ in range(2 * n_local):
            if n_local == 0:
                break
            i = top[rng.randint(len(top))]
            p, r = space.neighbour(rows[i], params[i], rng)
            if r.tobytes() not in keys and _kept(space, r):
                keys.add(r.tobytes())
                local.add(r.tobytes())
                pool.append((p, r))
                n_local -= 1
        return pool, local

    def _make_predictor(self, rng):
        seed = int(rng.randint(np.iinfo(np.int32).max))
        if self.predictor is None:
            return default_predictor(seed)
        predictor = clone(self.predictor)
        if "random_state" in predictor.get_params():
            predictor.set_params(random_state=seed)
        return predictor

    def _propose(self, pool, predictor, X, y, rng, n_new, local):
        """``n_new`` candidates of ``pool`` (module docstring, step 4)."""
        rows = np.asarray([r for _, r in pool])
        predicted = np.full(len(pool), np.nan) if predictor is None else predictor.predict(rows)
        used = np.zeros(len(pool), dtype=bool)
        is_random = np.array([r.tobytes() not in local for _, r in pool], dtype=bool)
        batch, proposed_by, scores = [], [], []
        for slot in range(n_new):
            explore = predictor is None or rng.uniform() < self.exploration
            if explore:  # a random candidate (a neighbour only when none is left)
                free = np.flatnonzero(~used & is_random)
                free = free if len(free) else np.flatnonzero(~used)
                i = int(free[rng.randint(len(free))])
            else:
                ranking = predicted
                if slot > 0:  # Thompson sampling by bootstrap: a plausible predictor
                    boot = rng.randint(len(y), size=len(y))
                    f_b = self._make_predictor(rng).fit(_no_empty_columns(X[boot]), y[boot])
                    ranking = f_b.predict(rows)
                i = int(np.argmax(np.where(used, -np.inf, ranking)))
            used[i] = True
            batch.append(pool[i])
            proposed_by.append("random" if explore else "predictor")
            scores.append(math.nan if explore else float(predicted[i]))
        return batch, proposed_by, scores


def _no_empty_columns(X):
    """``X`` with its all-NaN columns set to 0 (a dict not drawn yet; the GBDT's binning
    refuses a column without values)."""
    empty = np.isnan(X).all(axis=0)
    if not empty.any():
        return X
    X = X.copy()
    X[:, empty] = 0.0
    return X


def _guide_scores(results, refit):
    """The mean CV scores that guide the search (the refit metric with several)."""
    key = "mean_test_score" if "mean_test_score" in results else f"mean_test_{refit}"
    return np.asarray(results[key], dtype=float)


def _kept(space, row):
    for dim in space.dimensions:
        if dim.pruned and space.choice_in(dim, row) in dim.pruned:
            return False
    return True


def _draw(space, rng, n, seen):
    """Up to ``n`` new distinct configurations ``(params, row)`` not in ``seen``.

    Random draws first (at most ``4 n + 100``); an all-list space that runs
    short is enumerated (up to :data:`MAX_ENUMERATED` configurations) and the
    rest drawn from what is left, without replacement.
    """
    out, keys = [], set(seen)
    for _ in range(4 * n + 100):
        if len(out) == n:
            return out
        params, row = space.sample(rng)
        key = row.tobytes()
        if key not in keys:
            keys.add(key)
            out.append((params, row))
    if space.all_lists and space.size() <= MAX_ENUMERATED:
        rest = [(p, r) for p, r in space.enumerate() if r.tobytes() not in keys]
        for i in rng.permutation(len(rest))[: n - len(out)]:
            out.append(rest[i])
    return out
