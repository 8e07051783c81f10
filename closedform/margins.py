# SPDX-License-Identifier: BSD-3-Clause
"""One-vs-rest margin classifiers: label coding and the prediction methods they share.

A margin classifier scores each class (one output for two classes) and
predicts the largest score; probabilities are the softmax of the scores
divided by one temperature fitted on the training data by maximum likelihood
(Guo et al., "On calibration of modern neural networks", ICML 2017).
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.utils.multiclass import check_classification_targets

from closedform._base import check_weights
from solvers._estimator import restore_on_error  # re-exported: its home before the redesign
from solvers.backend import get_namespace_and_device, to_namespace, to_numpy
from solvers.distributed import Communicator

__all__ = ["MarginClassifierMixin", "encode_labels", "fit_temperature", "restore_on_error"]


def encode_labels(y, sample_weight=None, comm=None):
    """Classes, class indices and one-vs-rest codes in {-1, +1} of the labels ``y``.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
    sample_weight : array-like of shape (n_samples,), default=None
    comm : solvers.distributed.Communicator, default=None
        ``y`` holds this rank's labels: the classes are the union over the
        ranks (a rank may lack some), the weights' checks are global, and an
        error on one rank is raised on every rank.

    Returns
    -------
    classes : ndarray of shape (n_classes,)
    indices : ndarray of shape (n_samples,)
    codes : ndarray of shape (n_samples, n_outputs), float64
        One output (``+1`` for ``classes[1]``) for two classes, else one per class.
    weights : ndarray of shape (n_samples,) or None
        The validated sample weights (host float64).
    """
    comm = Communicator() if comm is None else comm
    if comm.distributed:
        return _encode_labels_across(y, sample_weight, comm)
    y_host = to_numpy(y)
    check_classification_targets(y_host)
    classes, indices = np.unique(y_host, return_inverse=True)
    if classes.shape[0] < 2:
        raise ValueError(
            f"The classifier needs samples of at least 2 classes; got 1 class ({classes[0]!r})."
        )
    weights = None
    if sample_weight is not None:
        weights = check_weights(sample_weight, y_host, positive_sum=True)
        if np.unique(indices[weights > 0]).shape[0] < 2:
            raise ValueError(
                "sample_weight leaves samples of only 1 class with positive weight; "
                "the classifier needs at least 2 classes."
            )
    return classes, indices, one_vs_rest_codes(indices, classes.shape[0]), weights


def _encode_labels_across(y, sample_weight, comm):
    """:func:`encode_labels` of the labels of every rank (each rank gets its rows')."""
    with comm.raise_together("Encoding the labels"):
        y_host = to_numpy(y)
        check_classification_targets(y_host)
        local = np.unique(y_host)
        weights = None
        if sample_weight is not None:
            weights = check_weights(sample_weight, y_host, positive_sum=False, allow_all_zero=True)
        labels = local.tolist()
    gathered = comm.all_gather_json(labels, "Gathering the classes")
    classes = np.unique(np.asarray([label for labels in gathered for label in labels]))
    if classes.dtype.kind in "biuf" and local.dtype.kind in "biuf":
        classes = classes.astype(np.result_type(classes.dtype, local.dtype))
    if classes.shape[0] < 2:
        raise ValueError(
            "The classifier needs samples of at least 2 classes over all ranks of the "
            f"process group; got 1 class ({classes[0]!r})."
        )
    indices = np.searchsorted(classes, y_host)
    if weights is not None:
        mass = np.bincount(indices, weights=weights, minlength=classes.shape[0])
        mass = comm.all_reduce_sum(mass, "Summing the sample weights per class")
        if not np.sum(mass) > 0:
            raise ValueError("sample_weight must be non-negative with a positive sum.")
        if np.count_nonzero(mass > 0) < 2:
            raise ValueError(
                "sample_weight leaves samples of only 1 class with positive weight; "
                "the classifier needs at least 2 classes."
            )
    return classes, indices, one_vs_rest_codes(indices, classes.shape[0]), weights


def one_vs_rest_codes(indices, n_classes):
    """``(n, 1)`` codes for two classes, else ``(n, n_classes)``, in {-1, +1}."""
    n_outputs = 1 if n_classes == 2 else n_classes
    Y = -np.ones((indices.shape[0], n_outputs))
    if n_outputs == 1:
        Y[indices == 1, 0] = 1.0
    else:
        Y[np.arange(indices.shape[0]), indices] = 1.0
    return Y


def fit_temperature(F, indices, sample_weight=None, comm=None):
    """Temperature ``T`` maximising the (weighted) training likelihood of softmax(F / T).

    With ``comm`` (the rows spread over its ranks) the outputs, indices and
    weights are gathered (``n (c + 2)`` floats), so every rank fits the
    temperature of the concatenated rows.
    """
    from scipy.optimize import minimize_scalar

    if comm is not None and comm.distributed:
        F = comm.all_gather_rows(np.asarray(F, dtype=np.float64), "Gathering the outputs")
        indices = comm.all_gather_rows(np.asarray(indices, dtype=np.int64), "Gathering labels")
        if sample_weight is not None:
            sample_weight = comm.all_gather_rows(
                np.asarray(sample_weight, dtype=np.float64), "Gathering the sample weights"
            )

    F = np.asarray(F, dtype=np.float64)
    if F.ndim == 1:
        F = F[:, None]
    if F.shape[1] == 1:
        F = np.concatenate([-0.5 * F, 0.5 * F], axis=1)
    rows = np.arange(F.shape[0])
    w = np.full(F.shape[0], 1.0 / F.shape[0]) if sample_weight is None else sample_weight
    w = w / w.sum()

    def nll(log_t):
        S = F / math.exp(log_t)
        S = S - S.max(axis=1, keepdims=True)
        return float(w @ (np.log(np.exp(S).sum(axis=1)) - S[rows, indices]))

    res = minimize_scalar(nll, bounds=(-10.0, 10.0), method="bounded")
    return float(math.exp(res.x))


class MarginClassifierMixin:
    """``decision_function``, ``predict``, ``predict_proba`` from a ``_decision`` method.

    The class provides ``_decision(X, method)`` returning the scores ``(n,
    n_outputs)`` in the namespace of ``X``, and sets ``classes_``,
    ``temperature_`` and ``_classes_compute`` (the classes in the training
    namespace, or None for non-numeric labels) when fitted.
    """

    def _set_classes(self, classes, xp, device):
        self.classes_ = classes
        self._classes_compute = (
            to_namespace(classes, xp, device) if classes.dtype.kind in "biuf" else None
        )

    def decision_function(self, X):
        """Margins per output.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : array of shape (n_samples,) for two classes (positive for
            ``classes_[1]``), else (n_samples, n_classes); in the namespace of ``X``.
        """
        F = self._decision(X, "decision_function")
        return F[:, 0] if F.shape[1] == 1 else F

    def predict(self, X):
        """Predict class labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_pred : array of shape (n_samples,)
            In the namespace of ``X`` for numeric labels, NumPy otherwise.
        """
        F = self._decision(X, "predict")
        xp, _ = get_namespace_and_device(F)
        winners = xp.astype(F[:, 0] > 0, xp.int64) if F.shape[1] == 1 else xp.argmax(F, axis=1)
        if self._classes_compute is not None:
            return xp.take(self._classes_compute, winners, axis=0)
        return self.classes_[to_numpy(winners)]

    def predict_proba(self, X):
        """Class probabilities: softmax (sigmoid for two classes) of the scaled margins.

        The margins are divided by ``temperature_``, fitted on the training
        data; a squared-hinge margin is not a log-odds, so for calibrated
        probabilities use :class:`sklearn.calibration.CalibratedClassifierCV`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : array of shape (n_samples, n_classes)
            In the namespace of ``X``.
        """
        return self._proba(X, "predict_proba")

    def _proba(self, X, method):
        F = self._decision(X, method)
        xp, _ = get_namespace_and_device(F)
        F = F / self.temperature_
        if F.shape[1] == 1:
            F = xp.concat([-0.5 * F, 0.5 * F], axis=1)
        F = F - xp.max(F, axis=1, keepdims=True)
        E = xp.exp(F)
        return E / xp.sum(E, axis=1, keepdims=True)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_proba : array of shape (n_samples, n_classes)
        """
        P = self._proba(X, "predict_log_proba")
        xp, _ = get_namespace_and_device(P)
        return xp.log(xp.clip(P, min=xp.finfo(P.dtype).smallest_normal))
