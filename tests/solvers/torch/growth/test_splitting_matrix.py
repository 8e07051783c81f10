# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch.growth.splitting_matrix: the splitting matrices and conv patches."""

import pytest
import torch
from torch import nn

from solvers.torch import NeuronSplitting
from solvers.torch.growth.splitting_matrix import conv_patches


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"padding": "same", "pool": False, "head": "flatten", "bias": False},
        {"padding": 0, "stride": 2, "pool": False, "padding_mode": "zeros"},
        {"padding": 1, "padding_mode": "reflect", "head": "flatten"},
    ],
)
def test_conv_splitting_matrix_is_the_sum_over_positions(kw, conv_net, conv_data):
    """S_j from unfold equals the definition, with patches cut out by hand."""
    net = conv_net(**kw)
    X, y = conv_data(20)
    splitter = NeuronSplitting(net, layers=[0])
    eig = splitter.score([(X[:10], y[:10]), (X[10:], y[10:])])
    conv = net[0]
    z = conv(X)
    h = torch.tanh(z)
    rest = net[2:]
    g = torch.autograd.grad(nn.functional.cross_entropy(rest(h), y, reduction="sum"), h)[0]
    c = (g * -2 * torch.tanh(z) * (1 - torch.tanh(z) ** 2)).detach()
    padding, mode = kw.get("padding", 1), kw.get("padding_mode", "zeros")
    pad = (1, 1, 1, 1) if padding == "same" else (padding,) * 4
    Xp = nn.functional.pad(X, pad, mode="constant" if mode == "zeros" else mode)
    stride = kw.get("stride", 1)
    d = 2 * 9 + (conv.bias is not None)
    S = torch.zeros(3, d, d, dtype=torch.float64)
    for a in range(z.shape[2]):
        for b_ in range(z.shape[3]):
            patch = Xp[:, :, a * stride : a * stride + 3, b_ * stride : b_ * stride + 3]
            x = patch.reshape(X.shape[0], -1)
            if conv.bias is not None:
                x = torch.cat([x, torch.ones(X.shape[0], 1, dtype=x.dtype)], 1)
            for j in range(3):
                S[j] += (x * c[:, j, a, b_, None]).T @ x
    vals = torch.linalg.eigvalsh(S / X.shape[0])
    torch.testing.assert_close(eig[0].lambda_min, vals[:, 0])
    torch.testing.assert_close(eig[0].lambda_max, vals[:, -1])


@pytest.mark.parametrize(
    "kw",
    [
        {"kernel_size": 4, "padding": "same"},
        {"kernel_size": (3, 2), "padding": "same", "dilation": 2},
        {"kernel_size": 3, "padding": (2, 1), "stride": (2, 1), "padding_mode": "circular"},
        {"kernel_size": 3, "padding": 1, "padding_mode": "replicate"},
        {"kernel_size": 2, "padding": "valid", "stride": 2},
    ],
)
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
def test_conv_patches_reproduce_the_convolution(kw):
    torch.manual_seed(8)
    conv = nn.Conv2d(2, 3, bias=False, **kw).double()
    x = torch.randn(4, 2, 9, 7, dtype=torch.float64)
    z = conv(x).detach()
    rows = conv_patches(conv, x) @ conv.weight.detach().reshape(3, -1).T
    torch.testing.assert_close(rows, z.permute(0, 2, 3, 1).reshape(-1, 3))
