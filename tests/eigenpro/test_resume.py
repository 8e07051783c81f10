# SPDX-License-Identifier: BSD-3-Clause
"""An interrupted EigenPro run resumes bit for bit from its checkpoint (issue 17).

A run stopped at an epoch boundary (the callback raises ``StopIteration``)
and resumed from the :class:`eigenpro.solver.EigenProCheckpoint` its callback
received, after a pickle round trip, ends with the uninterrupted run's
coefficients, history, step size and generator state, exactly.
"""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from eigenpro.solver import EigenProCheckpoint, eigenpro_solve
from solvers._validation import InvalidParameterError


@pytest.fixture(scope="module")
def problem(regression_data):
    X, Y = regression_data
    return X, Y, dict(kernel="gaussian", bandwidth=0.6, subsample_size=100, batch_size=64)


def interrupted(X, Y, stop_at, **kw):
    """The checkpoint of a run stopped after epoch ``stop_at``, through a pickle round trip."""
    saved = []

    def stop(result):
        saved.append(pickle.dumps(result.checkpoint))
        if result.nit == stop_at:
            raise StopIteration

    part = eigenpro_solve(X=X, Y=Y, callback=stop, **kw)
    assert part.nit == stop_at and part.status == 99
    return pickle.loads(saved[-1])


def assert_same_run(resumed, full):
    assert np.array_equal(resumed.x, full.x)
    assert resumed.nit == full.nit and resumed.status == full.status
    assert resumed.message == full.message and resumed.step_size == full.step_size
    assert resumed.history["epoch"] == full.history["epoch"]
    assert resumed.history["train_mse"] == full.history["train_mse"]
    a, b = resumed.checkpoint, full.checkpoint
    assert a.rng_state[0] == b.rng_state[0] and np.array_equal(a.rng_state[1], b.rng_state[1])
    assert a.rng_state[2:] == b.rng_state[2:]
    assert (a.epoch, a.halvings, a.best_mse, a.mse0) == (b.epoch, b.halvings, b.best_mse, b.mse0)


@pytest.mark.parametrize(
    "stop_at, extra",
    [
        (1, {}),
        (3, {"precompute_kernel": False}),  # the blocked (streamed) kernel path
        (2, {"alpha": 1e-3, "vector": True}),  # ridge, a 1-D target
        (2, {"n_components": 0}),  # plain SGD
    ],
    ids=["epoch-1", "streamed-kernel", "ridge-vector", "sgd"],
)
def test_resumed_run_is_the_uninterrupted_one(stop_at, extra, problem):
    X, Y, kw = problem
    extra = dict(extra)
    if extra.pop("vector", False):
        Y = Y[:, 0]
    kw = {**kw, **extra, "n_epochs": 5, "random_state": 3}
    full = eigenpro_solve(X=X, Y=Y, **kw)
    checkpoint = interrupted(X, Y, stop_at, **kw)
    assert isinstance(checkpoint, EigenProCheckpoint) and checkpoint.epoch == stop_at
    resumed = eigenpro_solve(X=X, Y=Y, resume=checkpoint, **kw)
    assert_same_run(resumed, full)
    # the times go on from the checkpoint's (one clock, the interruption left out)
    assert resumed.history["time"][: stop_at + 1] == checkpoint.history["time"]
    assert np.all(np.diff(resumed.history["time"]) >= 0)


def test_a_warm_start_with_coef0_is_not_a_resume(problem):
    # coef0 alone draws a new permutation and batch orders: the very reason for resume
    X, Y, kw = problem
    kw = {**kw, "n_epochs": 4, "random_state": 3}
    full = eigenpro_solve(X=X, Y=Y, **kw)
    checkpoint = interrupted(X, Y, 2, **kw)
    warm = eigenpro_solve(X=X, Y=Y, coef0=checkpoint.coef, **{**kw, "n_epochs": 2})
    assert not np.array_equal(warm.x, full.x)


def test_resume_after_step_halvings_keeps_the_halved_step(problem):
    X, Y, kw = problem
    kw = {**kw, "step_size": 1e4, "n_epochs": 4, "random_state": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        full = eigenpro_solve(X=X, Y=Y, **kw)
        checkpoint = interrupted(X, Y, 2, **kw)
        assert checkpoint.halvings > 0 and checkpoint.step_size < 1e4
        resumed = eigenpro_solve(X=X, Y=Y, resume=checkpoint, **kw)
    assert_same_run(resumed, full)


def test_a_random_state_instance_ends_where_the_uninterrupted_run_leaves_it(problem):
    X, Y, kw = problem
    kw = {**kw, "n_epochs": 4}
    rs_full = np.random.RandomState(5)
    eigenpro_solve(X=X, Y=Y, random_state=rs_full, **kw)
    checkpoint = interrupted(X, Y, 1, random_state=np.random.RandomState(5), **kw)
    rs_resumed = np.random.RandomState(123)  # its own state is replaced by the checkpoint's
    eigenpro_solve(X=X, Y=Y, random_state=rs_resumed, resume=checkpoint, **kw)
    assert rs_resumed.randint(2**31) == rs_full.randint(2**31)


def test_the_result_checkpoint_trains_on(problem):
    X, Y, kw = problem
    kw = {**kw, "random_state": 2}
    short = eigenpro_solve(X=X, Y=Y, n_epochs=2, **kw)
    longer = eigenpro_solve(X=X, Y=Y, n_epochs=5, resume=short.checkpoint, **kw)
    assert_same_run(longer, eigenpro_solve(X=X, Y=Y, n_epochs=5, **kw))


def test_a_checkpoint_where_tol_was_reached_resumes_to_the_same_stop(problem):
    X, Y, kw = problem
    kw = {**kw, "n_epochs": 50, "tol": 1e-2, "random_state": 0}
    full = eigenpro_solve(X=X, Y=Y, **kw)
    assert full.nit < 50
    checkpoint = interrupted(X, Y, full.nit, **kw)
    assert_same_run(eigenpro_solve(X=X, Y=Y, resume=checkpoint, **kw), full)


def test_torch_inputs_resume_bit_for_bit(problem):
    torch = pytest.importorskip("torch")
    X, Y, kw = problem
    X, Y = torch.asarray(X), torch.asarray(Y)
    kw = {**kw, "n_epochs": 3, "random_state": 1}
    full = eigenpro_solve(X=X, Y=Y, **kw)
    resumed = eigenpro_solve(X=X, Y=Y, resume=interrupted(X, Y, 1, **kw), **kw)
    assert torch.equal(resumed.x, full.x)
    assert resumed.history["train_mse"] == full.history["train_mse"]


@pytest.fixture(scope="module")
def checkpoint(problem):
    X, Y, kw = problem
    return interrupted(X, Y, 2, n_epochs=3, random_state=0, **kw)


def test_a_checkpoint_that_does_not_fit_is_refused(problem, checkpoint):
    X, Y, kw = problem
    kw = {**kw, "n_epochs": 3, "random_state": 0}
    with pytest.raises(InvalidParameterError, match="'resume' parameter of eigenpro_solve"):
        eigenpro_solve(X=X, Y=Y, resume={"coef": checkpoint.coef}, **kw)
    with pytest.raises(ValueError, match="coef0 or resume, not both"):
        eigenpro_solve(X=X, Y=Y, resume=checkpoint, coef0=checkpoint.coef, **kw)
    with pytest.raises(ValueError, match="not a permutation of 399 points"):
        eigenpro_solve(X=X[:-1], Y=Y[:-1], resume=checkpoint, **kw)
    with pytest.raises(ValueError, match=r"coefficients have shape \(400, 2\); X and Y need"):
        eigenpro_solve(X=X, Y=Y[:, :1], resume=checkpoint, **kw)
    with pytest.raises(ValueError, match=r"other settings \(bandwidth=0\.6 then, 0\.7 now"):
        eigenpro_solve(X=X, Y=Y, resume=checkpoint, **{**kw, "bandwidth": 0.7})
    with pytest.raises(ValueError, match="batch_size=64 then, 32 now"):
        eigenpro_solve(X=X, Y=Y, resume=checkpoint, **{**kw, "batch_size": 32})
    with pytest.raises(ValueError, match="at epoch 2, past n_epochs=1"):
        eigenpro_solve(X=X, Y=Y, resume=checkpoint, **{**kw, "n_epochs": 1})
