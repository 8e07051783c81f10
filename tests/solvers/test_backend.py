# SPDX-License-Identifier: BSD-3-Clause
import numpy as np
import pytest

from solvers import backend
from solvers.backend import (
    get_namespace_and_device,
    inplace,
    map_row_chunks_,
    matmul_into,
    resolve_device,
    resolve_memory_budget,
    rows_per_block,
    take_rows,
    to_namespace,
    to_numpy,
)


def test_namespace_round_trip(backend):
    _xp, _device, to_xp = backend
    a = np.arange(12, dtype=np.float64).reshape(3, 4)
    x = to_xp(a)
    got_xp, got_device = get_namespace_and_device(x)
    np.testing.assert_array_equal(to_numpy(x), a)
    # moving numpy data to the namespace of x and back is lossless
    y = to_namespace(a * 2, got_xp, got_device)
    assert get_namespace_and_device(y)[0].__name__ == got_xp.__name__
    np.testing.assert_array_equal(to_numpy(y), a * 2)


def test_inplace_ops_and_gathers(backend):
    xp, _device, to_xp = backend
    rng = np.random.default_rng(0)
    a = rng.standard_normal((7, 5))
    b = rng.standard_normal((5, 3))
    out = to_xp(np.zeros((7, 3)))
    out = matmul_into(to_xp(a), to_xp(b), out)
    np.testing.assert_allclose(to_numpy(out), a @ b, rtol=1e-12)
    x = to_xp(a.copy())
    x = inplace(xp, x, "maximum", 0.0)
    x = inplace(xp, x, "exp")
    np.testing.assert_allclose(to_numpy(x), np.exp(np.maximum(a, 0)))
    idx = to_xp(np.array([0, 3, 6]))
    np.testing.assert_array_equal(to_numpy(take_rows(xp, to_xp(a), idx)), a[[0, 3, 6]])


def test_map_row_chunks_covers_every_row_once():
    x = np.zeros((1000, 700), dtype=np.float32)  # large enough to be split

    def bump(chunk, start, stop):
        assert chunk.shape[0] == stop - start
        chunk += 1.0
        chunk += np.arange(start, stop, dtype=np.float32)[:, None]

    map_row_chunks_(bump, x)
    np.testing.assert_array_equal(x[:, 0], np.arange(1000) + 1)
    assert np.all(x == x[:, :1])


def test_memory_budget_resolution(monkeypatch):
    monkeypatch.setattr(backend, "available_memory", lambda xp=None, device=None: 8 * 2**30)
    assert resolve_memory_budget("auto") == int(0.75 * 8 * 2**30)
    assert resolve_memory_budget(0.5) == 4 * 2**30
    assert resolve_memory_budget(123_456_789) == 123_456_789
    for bad in (-1, 0, float("nan"), "lots"):
        with pytest.raises(ValueError, match="memory_budget"):
            resolve_memory_budget(bad)


def test_available_memory_is_positive():
    assert backend.available_memory() > 0


def test_rows_per_block():
    assert rows_per_block(1000, 4, 4000 * 10) == 10
    assert rows_per_block(1000, 4, 4000 * 10, n_buffers=2) == 5
    assert rows_per_block(1000, 4, 1, min_rows=3) == 3
    assert rows_per_block(1000, 4, 10**12, max_rows=64) == 64


def test_resolve_device_errors():
    xp, _ = resolve_device("cpu")
    assert backend.namespace_kind(xp) == "numpy"
    with pytest.raises(ValueError, match="Unknown device"):
        resolve_device("tpu:3")
    with pytest.raises(ValueError, match="device must be a string"):
        resolve_device(3)
    xp, _dev = resolve_device("torch:cpu")
    assert backend.namespace_kind(xp) == "torch"


def test_thread_pool_survives_fork():
    import multiprocessing as mp

    map_row_chunks_(lambda c, a, b: c.__iadd__(1.0), np.zeros((2000, 500), np.float32))
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        result = pool.apply_async(_chunked_sum_in_child)
        assert result.get(timeout=60) == 2000 * 500


def _chunked_sum_in_child():
    x = np.zeros((2000, 500), np.float32)
    map_row_chunks_(lambda c, a, b: c.__iadd__(1.0), x)
    return int(x.sum())


@pytest.mark.parametrize("fmt", ["csr", "coo"])
def test_scipy_sparse_input_is_named_with_its_remedy(fmt):
    # issue 17: it used to reach array-api-compat's "csr_matrix is not a supported array
    # type" (eigenpro_solve, minimize) or an AttributeError
    import scipy.sparse

    from eigenpro import eigenpro_solve
    from solvers import minimize
    from solvers.glm import GLMObjective

    X = scipy.sparse.random(30, 4, density=0.5, format=fmt, random_state=0)
    y = np.where(np.arange(30) % 2, 1.0, -1.0)
    for call in (
        lambda: get_namespace_and_device(X),
        lambda: eigenpro_solve("gaussian", X, y, bandwidth=1.0, n_epochs=1),
        lambda: minimize(GLMObjective("logistic"), np.zeros(4), data=(X, y)),
    ):
        with pytest.raises(TypeError, match=r"SciPy sparse .* dense array .*\.toarray\(\)"):
            call()
