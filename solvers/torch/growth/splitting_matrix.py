# SPDX-License-Identifier: BSD-3-Clause
"""The terms of the splitting matrices, collected over a dataset.

For a ``Linear`` neuron ``S = X^T diag(C) X / n`` with rows ``x = [x; 1]``
and ``c = dL/dh sigma''(z)`` per sample (kept as ``X`` and ``C``); for a
``Conv2d`` channel the sum over output positions of the input patches,
accumulated batch by batch as a ``d x d`` matrix per channel (see
:mod:`solvers.torch.growth.splitting`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from solvers.torch.growth.splittable import second_derivative

__all__ = [
    "collect_splitting_terms",
    "conv_padding",
    "conv_patches",
    "iter_splitting_terms",
]


def conv_padding(conv):
    """``F.pad`` amounts ``(left, right, top, bottom)`` equal to ``conv``'s padding."""
    if conv.padding == "valid":
        return (0, 0, 0, 0)
    if conv.padding == "same":  # PyTorch puts the odd pixel on the right/bottom
        pad = []
        for d, k in zip(reversed(conv.dilation), reversed(conv.kernel_size), strict=True):
            total = d * (k - 1)
            pad += [total // 2, total - total // 2]
        return tuple(pad)
    ph, pw = conv.padding
    return (pw, pw, ph, ph)


def conv_patches(conv, x):
    """The ``(N * positions, C_in kh kw)`` input patches of ``conv``, in its weight's order."""
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    x = F.pad(x, conv_padding(conv), mode=mode)
    cols = F.unfold(x, conv.kernel_size, dilation=conv.dilation, stride=conv.stride)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


#: largest splitting-matrix stack (channels x d x d float64) a Conv2d may accumulate
_MAX_CONV_MATRIX_BYTES = 2 * 1024**3


def _allocate_conv_matrices(mods, layers):
    """Zero ``channels x d x d`` float64 stacks of the ``Conv2d`` layers (size checked)."""
    S = {}
    for i in layers:
        if type(mods[i]) is nn.Conv2d:
            conv = mods[i]
            d = conv.weight[0].numel() + (conv.bias is not None)
            size = conv.out_channels * d * d * 8
            if size > _MAX_CONV_MATRIX_BYTES:
                raise ValueError(
                    f"the splitting matrices of layer {i} ({conv.out_channels} channels of "
                    f"{d} x {d}) would take {size / 1024**3:.1f} GiB; split other layers "
                    "(layers=[...]) or use eigen='rayleigh'"
                )
            S[i] = torch.zeros(conv.out_channels, d, d, dtype=torch.float64,
                               device=conv.weight.device)  # fmt: skip
    return S


def iter_splitting_terms(model, layers, data, loss_fn):
    """Per batch, ``(n_samples, {layer: (x, c)})``: the terms of ``S_j = X^T diag(C_j) X``.

    ``x`` holds the layer's inputs ``[x, 1]`` (``x`` without a bias), one row
    per sample (``Linear``) or per sample and output position (``Conv2d``,
    its input patches), in float64; ``c`` the matching ``dL/dh sigma''(z)``,
    one column per neuron, with ``L`` the sum-reduced loss of the batch. One
    forward and one backward per batch: ``S_j v = x^T (c_j * (x v))`` costs
    what back-propagation through the layer costs.

    Raises
    ------
    ValueError
        A batch's inputs, the loss gradients or a layer's inputs hold NaN or inf.
    """
    mods = list(model)
    acts = {a: i for i, (a, _) in layers.items()}
    for batch, (xb, yb) in enumerate(data):
        if torch.is_tensor(xb) and xb.is_floating_point() and not torch.isfinite(xb).all():
            raise ValueError(
                f"data: the inputs of batch {batch} hold NaN or inf; splitting matrices "
                "need finite inputs"
            )
        out = xb
        inputs, pre, post = {}, {}, {}
        for k, m in enumerate(mods):
            if k in layers:
                inputs[k] = out.detach()
                out = m(out)
                pre[k] = out.detach().clone()  # an in-place activation overwrites out
            else:
                out = m(out)
                if k in acts:
                    post[k] = out
        # sum-reduced loss so that the gradients are per sample
        loss = loss_fn(out, yb) * xb.shape[0]
        grads = torch.autograd.grad(loss, [post[layers[i][0]] for i in layers])
        terms = {}
        for (i, (a, _)), g in zip(layers.items(), grads, strict=True):
            c = (g * second_derivative(mods[a])(pre[i])).detach().double()
            _check_finite(c, f"the loss gradients at layer {i} (batch {batch})")
            if type(mods[i]) is nn.Conv2d:  # rows: (sample, position); columns: channels
                x = conv_patches(mods[i], inputs[i]).double()
                c = c.permute(0, 2, 3, 1).reshape(-1, c.shape[1])
            else:
                x = inputs[i].reshape(inputs[i].shape[0], -1).double()
            if mods[i].bias is not None:  # theta = [w; b]
                x = torch.cat([x, torch.ones_like(x[:, :1])], 1)
            _check_finite(x, f"the inputs of layer {i}")
            terms[i] = (x, c)
        yield xb.shape[0], terms


def collect_splitting_terms(model, layers, data, loss_fn):
    """Per layer, the terms of the splitting matrices ``S_j = X^T diag(C_j) X / n``.

    ``Linear``: the inputs ``X = [x, 1]`` (``x`` without a bias) and
    ``C = dL/dh sigma''(z)``, one row per sample. ``Conv2d``: the matrices
    themselves, summed over batches (one row of ``X`` and ``C`` per sample
    and position would not fit). Returns ``(X, C, S, n)``.
    """
    mods = list(model)
    S = _allocate_conv_matrices(mods, layers)
    xs = {i: [] for i in layers if i not in S}
    cs = {i: [] for i in xs}
    n_total = 0
    for n, terms in iter_splitting_terms(model, layers, data, loss_fn):
        for i, (x, c) in terms.items():
            if i in S:
                for j in range(c.shape[1]):
                    S[i][j] += (x * c[:, j : j + 1]).T @ x
            else:
                xs[i].append(x)
                cs[i].append(c)
        n_total += n
    if n_total == 0:
        raise ValueError("data has no batches")
    X = {i: torch.cat(v) for i, v in xs.items()}
    C = {i: torch.cat(v) for i, v in cs.items()}
    S = {i: m / n_total for i, m in S.items()}
    for i, m in S.items():
        _check_finite(m, f"the splitting matrices of layer {i}")
    return X, C, S, n_total


def _check_finite(t, what):
    """Refuse NaN/inf before ``eigh`` meets it (its error would name no cause)."""
    if not torch.isfinite(t).all():
        raise ValueError(
            f"{what} hold NaN or inf: check the data, the targets, the model's parameters "
            "and loss_fn (an overflow in float32 also gives inf)"
        )
