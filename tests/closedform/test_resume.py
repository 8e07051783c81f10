# SPDX-License-Identifier: BSD-3-Clause
"""Streamed training resumes bit for bit from a pickled estimator (issue 17).

An estimator pickled after ``k`` calls of ``partial_fit``, loaded (as a new
process would) and fed the remaining batches ends in exactly the state of
the one that was never interrupted: every attribute (the streamed Gram
statistics, the weights, the temperature, the objective curve) and every
prediction, bit for bit.
"""

import pickle

import numpy as np
import pytest
from sklearn.datasets import make_regression

from closedform.manifold_net import ManifoldNetClassifier, ManifoldNetRegressor
from solvers.backend import to_numpy


def assert_identical(a, b, where="estimator"):
    """``a`` and ``b`` hold the same values, arrays bit for bit (and of the same dtype)."""
    if hasattr(a, "shape") and hasattr(a, "dtype"):
        a_np, b_np = to_numpy(a), to_numpy(b)
        assert type(a) is type(b) and a_np.dtype == b_np.dtype, where
        assert np.array_equal(a_np, b_np, equal_nan=True), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_identical(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{where}[{i}]")
    elif hasattr(a, "__dict__") and not callable(a):
        assert type(a) is type(b), where
        assert_identical(vars(a), vars(b), where)
    elif isinstance(a, float) and np.isnan(a):
        assert isinstance(b, float) and np.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def stream(estimator, batches, **kwargs):
    for X, y, w in batches:
        estimator.partial_fit(X, y, sample_weight=w, **kwargs)
    return estimator


def batches_of(X, y, n_batches, weighted=False):
    w = np.random.default_rng(1).uniform(0.5, 2.0, size=len(y)) if weighted else None
    parts = np.array_split(np.arange(len(y)), n_batches)
    return [(X[p], y[p], None if w is None else w[p]) for p in parts]


CASES = {
    "classifier-weighted": (ManifoldNetClassifier, {}, True),
    "classifier-stiefel": (ManifoldNetClassifier, {"head": "stiefel"}, False),
    "regressor": (ManifoldNetRegressor, {}, False),
}


@pytest.mark.parametrize("stop_after", [1, 3])
@pytest.mark.parametrize("case", list(CASES))
def test_pickled_after_k_batches_and_resumed_equals_uninterrupted(case, stop_after, make_problem):
    make, params, weighted = CASES[case]
    if make is ManifoldNetRegressor:
        X, y = make_regression(n_samples=300, n_features=8, noise=1.0, random_state=0)
        extra = {}
    else:
        X, y = make_problem(n=300, classes=3)
        extra = {"classes": np.unique(y)}
    batches = batches_of(X, y, 5, weighted)
    params = {"hidden_layer_sizes": (24,), "random_state": 0, **params}
    full = stream(make(**params), batches, **extra)
    saved = pickle.dumps(stream(make(**params), batches[:stop_after], **extra))
    resumed = stream(pickle.loads(saved), batches[stop_after:], **extra)
    assert_identical(vars(resumed), vars(full))
    assert np.array_equal(resumed.predict(X), full.predict(X))
    if make is ManifoldNetClassifier:
        assert np.array_equal(resumed.predict_proba(X), full.predict_proba(X))


def test_without_a_seed_the_pickled_copy_continues_like_the_original(make_problem):
    # random_state=None: the hidden layers are drawn once, on the first call, and travel in
    # the pickle; the copy and the original then see the same batches
    X, y = make_problem(n=300, classes=3)
    batches = batches_of(X, y, 4)
    original = stream(ManifoldNetClassifier((24,)), batches[:2], classes=np.unique(y))
    copy = pickle.loads(pickle.dumps(original))
    stream(original, batches[2:])
    stream(copy, batches[2:])
    assert_identical(vars(copy), vars(original))


def test_torch_inputs_resume_bit_for_bit(make_problem):
    import sklearn
    import torch  # a test dependency (pinned CPU wheel), never skipped

    X, y = make_problem(n=240, classes=3)
    batches = [(torch.asarray(a), torch.asarray(b), w) for a, b, w in batches_of(X, y, 4)]
    params = {"hidden_layer_sizes": (16,), "random_state": 0}
    extra = {"classes": np.unique(y)}
    with sklearn.config_context(array_api_dispatch=True):
        full = stream(ManifoldNetClassifier(**params), batches, **extra)
        saved = pickle.dumps(stream(ManifoldNetClassifier(**params), batches[:2], **extra))
        resumed = stream(pickle.loads(saved), batches[2:], **extra)
        F = resumed.decision_function(batches[0][0])
        assert isinstance(F, torch.Tensor)  # the computation ran in torch
        assert torch.equal(F, full.decision_function(batches[0][0]))
    assert_identical(vars(resumed), vars(full))
