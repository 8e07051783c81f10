# SPDX-License-Identifier: BSD-3-Clause
"""Shared fixtures of the benchmark tests."""

import os

import pytest

MNIST = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "mnist.npz")


@pytest.fixture
def mnist_path():
    """The MNIST ``.npz`` next to the repository (skips the test where it is absent)."""
    if not os.path.exists(MNIST):
        pytest.skip("MNIST file ../shared/data/mnist.npz not present")
    return MNIST


@pytest.fixture
def read_png():
    """``read_png(path)``: the image's pixels (matplotlib is needed to draw them anyway)."""
    image = pytest.importorskip("matplotlib.image")
    return image.imread


@pytest.fixture
def shrink_digits(monkeypatch):
    """``shrink_digits(suite, n_train, n_test=64)``: the suite's ``datasets.load`` cut to a
    few digits (the first ``n_train`` training and ``n_test`` test images)."""

    def shrink(suite, n_train, n_test=64):
        load, size = suite.datasets.load, n_train

        def small(data=None, n_train=None):  # the suite's own n_train is overridden
            ds = load(data, n_train=size)
            ds.X_test, ds.y_test = ds.X_test[:n_test], ds.y_test[:n_test]
            return ds

        monkeypatch.setattr(suite.datasets, "load", small)

    return shrink
