# SPDX-License-Identifier: BSD-3-Clause
"""Small image classifiers, their data as tensors, and calibration metrics.

Shared by the ``ensemble`` and ``proximal`` suites: LeNet-300-100 (an MLP),
LeNet-5 (LeCun et al. 1998, with ReLU and max pooling, optionally BatchNorm),
image tensors of a :class:`benchmarks.datasets.Dataset` (digits' 8x8 images
are resized to 28x28 so both datasets use the same LeNet-5), and the metrics
of a matrix of class probabilities: accuracy, negative log-likelihood and
expected calibration error.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

#: side of LeNet-5's input
SIDE = 28


def mlp(d_in=SIDE * SIDE, seed=0):
    """LeNet-300-100 on flattened images."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(d_in, 300),
        nn.ReLU(),
        nn.Linear(300, 100),
        nn.ReLU(),
        nn.Linear(100, 10),
    )


def lenet5(seed=0, batchnorm=False):
    """LeNet-5 on 1x28x28 images: conv 6@5x5 (padded), pool, conv 16@5x5, pool, 120, 84, 10."""
    import torch
    from torch import nn

    torch.manual_seed(seed)

    def norm(c, two_d=True):
        if not batchnorm:
            return nn.Identity()
        return nn.BatchNorm2d(c) if two_d else nn.BatchNorm1d(c)

    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2),
        norm(6),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        norm(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        norm(120, False),
        nn.ReLU(),
        nn.Linear(120, 84),
        norm(84, False),
        nn.ReLU(),
        nn.Linear(84, 10),
    )


def image_tensors(data):
    """``(X_train, y_train, X_test, y_test)`` with images as ``(n, 1, 28, 28)`` float32."""
    import torch

    def images(X):
        side = round(math.sqrt(X.shape[1]))
        t = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).reshape(-1, 1, side, side)
        if side != SIDE:
            t = torch.nn.functional.interpolate(t, size=(SIDE, SIDE), mode="bilinear")
        return t.contiguous()

    return (
        images(data.X_train),
        torch.from_numpy(data.y_train),
        images(data.X_test),
        torch.from_numpy(data.y_test),
    )


def predict_proba(model, X, batch=2000):
    """Softmax of ``model`` on ``X`` in eval mode (the mode is restored)."""
    import torch

    was = model.training
    model.eval()
    with torch.no_grad():
        out = torch.cat(
            [torch.softmax(model(X[i : i + batch]), 1) for i in range(0, len(X), batch)]
        )
    model.train(was)
    return out


def metrics(proba, y, bins=15):
    """Accuracy, mean negative log-likelihood and expected calibration error (``bins`` bins).

    ECE (Guo et al. 2017, "On calibration of modern neural networks", eq. 3):
    ``sum_b |B_b| / n |acc(B_b) - conf(B_b)|`` over equal-width confidence bins.
    """
    import torch

    proba = proba.double()
    conf, pred = proba.max(1)
    correct = (pred == y).double()
    nll = -torch.log(proba[torch.arange(len(y)), y].clamp_min(1e-12)).mean()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges.tolist()):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            ece += float(
                inside.double().mean() * (correct[inside].mean() - conf[inside].mean()).abs()
            )
    return {"acc": float(correct.mean()), "nll": float(nll), "ece": ece}
