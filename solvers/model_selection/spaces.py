# SPDX-License-Identifier: BSD-3-Clause
"""Example search spaces (``param_distributions``) for the library's estimators.

Each function returns a dict for :class:`~solvers.model_selection.GBDTSearchCV`
(or :class:`~sklearn.model_selection.RandomizedSearchCV`): lists for discrete
choices, ``scipy.stats.loguniform`` for positive scales, so that the search
space's log encoding and quartile regions follow the orders of magnitude.
A ``prefix`` (``"clf__"``) addresses the estimator inside a pipeline.

The sparse-training settings of a torch model (density, growth rule, update
interval, drop fraction) need a scikit-learn wrapper of a torch training loop,
which the library does not ship yet; no space is given for them here.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import loguniform

__all__ = ["eigenpro_space", "manifold_net_space"]


def manifold_net_space(*, widths=(100, 200, 500, 1000, 2000), prefix=""):
    """ManifoldNet's width, activation, draw, head, penalty and backward sweeps.

    Parameters
    ----------
    widths : sequence of int, default=(100, 200, 500, 1000, 2000)
        Hidden widths (one layer) to choose among.
    prefix : str, default=""
        Prepended to every name (``"clf__"`` in a pipeline).

    Returns
    -------
    dict
        ``hidden_layer_sizes``, ``activation`` (every activation of
        :mod:`closedform.activations`), ``init`` (``samples``/``gaussian``),
        ``init_scale`` log-uniform on [0.1, 100], ``head`` (``ridge``,
        ``stiefel``: the ``gpi`` head is left out, ~20 x slower on digits for
        no gain), ``alpha`` log-uniform on [1e-8, 10] (below ~1e-7 the head's
        Cholesky can fail: the search's ``error_score`` handles it) and
        ``max_iter`` (1-3: up to two backward sweeps).

    Examples
    --------
    >>> space = manifold_net_space(widths=(50, 100), prefix="clf__")
    >>> sorted(space)[:3]
    ['clf__activation', 'clf__alpha', 'clf__head']
    >>> space["clf__hidden_layer_sizes"]
    [(50,), (100,)]
    """
    space = {
        "hidden_layer_sizes": [(int(w),) for w in widths],
        "activation": ["sigmoid", "tanh", "softplus", "leaky_relu", "identity"],
        "init": ["samples", "gaussian"],
        "init_scale": loguniform(0.1, 100.0),
        "head": ["ridge", "stiefel"],
        "alpha": loguniform(1e-8, 10.0),
        "max_iter": [1, 2, 3],
    }
    return {prefix + k: v for k, v in space.items()}


def eigenpro_space(X=None, *, prefix=""):
    """EigenPro's kernel, bandwidth, penalty and epochs.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features) or None, default=None
        With data, the bandwidth is log-uniform on ``[s / 4, 4 s]`` around its
        root-mean-square distance ``s`` between rows (of at most 1000 rows);
        without, it is ``"auto"`` (chosen by leave-one-out at each fit).
    prefix : str, default=""
        Prepended to every name.

    Returns
    -------
    dict
        ``kernel`` (gaussian, laplacian, cauchy, matern32, matern52),
        ``bandwidth``, ``alpha`` log-uniform on [1e-6, 1] and ``n_epochs``
        (1, 2, 5, 10).

    Examples
    --------
    >>> import numpy as np
    >>> space = eigenpro_space(np.eye(4))
    >>> round(float(space["bandwidth"].support()[0]), 4)  # sqrt(2) / 4
    0.3536
    """
    if X is None:
        bandwidth = ["auto"]
    else:
        X = np.asarray(X, dtype=float)[:1000]
        sq = (X * X).sum(axis=1)
        d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * X @ X.T, 0.0)
        n = len(X)
        s = float(np.sqrt(d2.sum() / max(n * (n - 1), 1)))
        bandwidth = loguniform(s / 4.0, 4.0 * s)
    space = {
        "kernel": ["gaussian", "laplacian", "cauchy", "matern32", "matern52"],
        "bandwidth": bandwidth,
        "alpha": loguniform(1e-6, 1.0),
        "n_epochs": [1, 2, 5, 10],
    }
    return {prefix + k: v for k, v in space.items()}
