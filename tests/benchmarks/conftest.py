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
