# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch.growth.rayleigh: stochastic Rayleigh-quotient eigenpairs against exact ones."""

import pytest
import torch

from solvers.torch import NeuronSplitting


def _batches(X, y, size):
    return [(X[i : i + size], y[i : i + size]) for i in range(0, X.shape[0], size)]


@pytest.mark.parametrize("model", ["mlp", "conv"])
def test_rayleigh_matches_the_exact_eigenpairs(model, smooth_net, split_data, conv_net, conv_data):
    net, (X, y) = (smooth_net(), split_data()) if model == "mlp" else (conv_net(), conv_data(80))
    data = _batches(X, y, 20 if model == "conv" else 50)
    exact = NeuronSplitting(net, eigen="exact").score(data)
    fast = NeuronSplitting(net, eigen="rayleigh", rayleigh_epochs=20, seed=1).score(data)
    assert exact.keys() == fast.keys()
    for i, e in exact.items():
        q = fast[i]
        spread = e.lambda_max - e.lambda_min
        # the eigenvalue is the Rayleigh quotient of v over all the data: >= lambda_min
        assert (q.lambda_min >= e.lambda_min - 1e-12 * spread).all()
        assert (q.lambda_max <= e.lambda_max + 1e-12 * spread).all()
        # measured: median 1e-4, worst 2.6 % of the spread (a neuron with a small gap)
        err_min = ((q.lambda_min - e.lambda_min) / spread).abs()
        err_max = ((q.lambda_max - e.lambda_max) / spread).abs()
        assert err_min.max() < 0.05 and err_max.max() < 0.05
        assert err_min.median() < 0.005 and err_max.median() < 0.005
        torch.testing.assert_close(q.v_min.norm(dim=1), torch.ones_like(q.lambda_min))
        overlap = (q.v_min * e.v_min).sum(1).abs()
        assert overlap.median() > 0.99


def test_rayleigh_split_lowers_the_loss_by_its_estimate(smooth_net, split_data, loss_of):
    net = smooth_net()
    X, y = split_data()
    splitter = NeuronSplitting(net, eigen="rayleigh", rayleigh_epochs=5)
    eig = splitter.score(_batches(X, y, 50))
    (i, j, _), *_ = splitter.select(1)
    eps = 1e-3
    grown = splitter.split(1, eps=eps, warn=False)
    actual = (loss_of(grown, X, y) - loss_of(net, X, y)) / (eps**2 / 2)
    assert actual == pytest.approx(float(eig[i].lambda_min[j]), rel=0.02)


def test_rayleigh_needs_data_it_can_read_again(smooth_net, split_data):
    X, y = split_data()
    splitter = NeuronSplitting(smooth_net(), eigen="rayleigh", rayleigh_epochs=2)
    with pytest.raises(ValueError, match="not an iterator"):
        splitter.score(iter(_batches(X, y, 50)))
    with pytest.raises(ValueError, match="no batches"):
        splitter.score([])
    assert not hasattr(splitter, "eigen_")
    bad = X.clone()
    bad[3, 1] = float("nan")
    splitter.score(_batches(X, y, 50))
    before = {i: e.lambda_min.clone() for i, e in splitter.eigen_.items()}
    with pytest.raises(ValueError, match="NaN or inf"):
        splitter.score(_batches(bad, y, 50))
    for i, lam in before.items():
        assert torch.equal(splitter.eigen_[i].lambda_min, lam)


def test_rayleigh_never_forms_the_matrices(monkeypatch, conv_net, conv_data):
    import solvers.torch.growth.splitting as splitting

    def refuse(*args, **kwargs):
        raise AssertionError("the d x d matrices were formed")

    monkeypatch.setattr(splitting, "collect_splitting_terms", refuse)
    X, y = conv_data(20)
    eig = NeuronSplitting(conv_net(), eigen="rayleigh", rayleigh_epochs=1).score([(X, y)])
    assert eig[0].v_min.shape == (3, 2 * 9 + 1)
    with pytest.raises(ValueError, match="eigen"):
        NeuronSplitting(conv_net(), eigen="power")
    with pytest.raises(ValueError, match="rayleigh_lr"):
        NeuronSplitting(conv_net(), eigen="rayleigh", rayleigh_lr=1.5)
