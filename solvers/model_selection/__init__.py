# SPDX-License-Identifier: BSD-3-Clause
"""Hyperparameter search for the library's estimators.

- :class:`GBDTSearchCV` (:mod:`solvers.model_selection.gbdt_search`): search
  guided by a gradient-boosted-tree predictor of the CV score (GBDT-NAS, Luo
  et al. 2020) in scikit-learn's SearchCV API;
- :class:`SearchSpace` (:mod:`solvers.model_selection.space`): a
  ``param_distributions`` as sampled configurations and their tabular
  encoding (one-hot, ordinal, log scale) with the choices pruned;
- :mod:`solvers.model_selection.pruning`: the pruning rule (per-choice
  partial-dependence effect of the predictor);
- :mod:`solvers.model_selection.spaces`: example spaces for EigenPro and
  ManifoldNet.
"""

from solvers.model_selection.gbdt_search import GBDTSearchCV, default_predictor
from solvers.model_selection.pruning import PrunedChoice
from solvers.model_selection.space import SearchSpace
from solvers.model_selection.spaces import eigenpro_space, manifold_net_space

__all__ = [
    "GBDTSearchCV",
    "PrunedChoice",
    "SearchSpace",
    "default_predictor",
    "eigenpro_space",
    "manifold_net_space",
]
