# SPDX-License-Identifier: BSD-3-Clause
"""Neuron splitting: splitting steepest descent and signed splitting.

A hidden neuron ``h = sigma(theta^T [x; 1])`` of a ``Linear`` layer with a
smooth activation is replaced by two offspring ``theta + eps delta_i`` whose
outgoing weights ``w_i`` sum to the original (``sum w_i = 1``) and
``sum w_i delta_i = 0``. The loss then changes by (Liu, Wang & Liu 2019,
"Splitting steepest descent for growing neural architectures", Thm. 2.2)

    L_split - L = eps^2 / 2 sum_i w_i delta_i^T S delta_i + O(eps^3),
    S = E_x[ dL/dh  sigma''(z)  [x; 1] [x; 1]^T ],

the *splitting matrix* of the neuron (``z`` its pre-activation; the first
order term vanishes). Two schemes:

- S2D: ``w = (1/2, 1/2)``, ``delta = (+v, -v)`` with ``v`` the eigenvector of
  ``lambda_min(S)``: change ``eps^2 lambda_min / 2``, a decrease only when
  ``lambda_min < 0``;
- signed (Wu et al. 2020, "Steepest descent neural architecture optimization:
  escaping local optimum with signed neural splitting"): one negative
  offspring, here ``w = (2, -1)``, ``delta = (v/2, v)`` with ``v`` the
  eigenvector of ``lambda_max(S)`` (offspring within ``eps`` of the parent):
  change ``-eps^2 lambda_max / 4``, a decrease whenever ``lambda_max > 0``.
  The paper's exact offspring weights may differ; this pair is derived from
  the expansion above.

Each neuron is scored by its predicted change per ``eps^2 / 2``
(``lambda_min``, or ``min(lambda_min, -lambda_max / 2)`` when signed) and the
most negative are split, across layers, under a budget of new neurons.
Eigenpairs are exact (``eigh`` of the ``d x d`` matrices, ``d`` = fan-in, plus 1
with a bias) for small fan-in and from a batched Lanczos iteration with full
reorthogonalisation otherwise, whose matrix-vector products
``S v = X^T (c * (X v)) / n`` never form ``S``.

``Conv2d`` layers split output channels: a channel is one neuron whose
parameters are shared over positions, so its splitting matrix sums over the
output positions ``p`` of the input patches ``x_p`` (Liu, Wang & Liu 2019,
§4, who split the filters of convolutional networks),

    S = E_x[ sum_p dL/dh_p  sigma''(z_p)  [x_p; 1] [x_p; 1]^T ],

accumulated batch by batch as a ``d x d`` matrix per channel (``d`` = in
channels x kernel size, plus 1 with a bias) and diagonalised exactly.
Average pooling may follow the activation, and the next layer may be a
``Conv2d`` or, after ``Flatten``, a ``Linear`` (the columns of a channel are
its block of ``in_features / channels`` entries). Max pooling is refused:
the two offspring are pooled separately and ``(max(a + d) + max(a - d)) / 2``
exceeds ``max(a)`` at first order wherever two entries of a window are
within ``eps`` of each other, so the loss change is no longer the
second-order term that the splitting matrix predicts.

The surgery returns a **new model** (parameter shapes change): build a new
optimizer for it.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from solvers.step_size import check_int


def _second_derivative(module):
    """``sigma''(z)`` of an element-wise activation module."""
    if isinstance(module, nn.Tanh):
        return lambda z: -2.0 * torch.tanh(z) * (1.0 - torch.tanh(z) ** 2)
    if isinstance(module, nn.Sigmoid):

        def sig2(z):
            s = torch.sigmoid(z)
            return s * (1.0 - s) * (1.0 - 2.0 * s)

        return sig2
    if isinstance(module, nn.Softplus):
        beta = module.beta

        def softplus2(z):
            s = torch.sigmoid(beta * z)
            return beta * s * (1.0 - s)

        return softplus2
    if isinstance(module, nn.SiLU):

        def silu2(z):
            s = torch.sigmoid(z)
            return s * (1.0 - s) * (2.0 + z * (1.0 - 2.0 * s))

        return silu2
    if isinstance(module, nn.GELU) and module.approximate == "none":

        def gelu2(z):
            pdf = torch.exp(-0.5 * z * z) / (2.0 * torch.pi) ** 0.5
            return pdf * (2.0 - z * z)

        return gelu2
    return None


_PASS_THROUGH = (nn.Dropout, nn.Identity)
#: channel-wise modules allowed between a Conv2d's activation and the next layer
_CHANNEL_PASS_THROUGH = (nn.Dropout2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
_WEIGHTED = (nn.Linear, nn.Conv2d)
_REQUIREMENT = (
    "a Linear followed by a smooth activation (Tanh, Sigmoid, Softplus, SiLU, exact GELU) "
    "and then a Linear, or a Conv2d (groups=1) followed by a smooth activation, optional "
    "average pooling, and a Conv2d or Flatten -> Linear; ReLU has a zero second "
    "derivative (use Softplus), max pooling is not smooth (use AvgPool2d), and "
    "BatchNorm may not sit in between"
)


def _next_layer(mods, i):
    """``(activation index, next layer index)`` when ``mods[i]`` is splittable, else None."""
    m = mods[i]
    conv = type(m) is nn.Conv2d
    if not (type(m) is nn.Linear or (conv and m.groups == 1)):
        return None
    j, act, flat = i + 1, None, False
    while j < len(mods) and type(mods[j]) not in _WEIGHTED:
        mj = mods[j]
        if act is None and _second_derivative(mj) is not None:
            act = j
        elif isinstance(mj, _PASS_THROUGH):
            pass
        elif not conv or act is None or flat:
            return None
        elif isinstance(mj, nn.Flatten) and mj.start_dim == 1 and mj.end_dim == -1:
            flat = True
        elif not isinstance(mj, _CHANNEL_PASS_THROUGH):
            return None
        j += 1
    if act is None or j == len(mods):
        return None
    nxt = mods[j]
    if not conv:
        ok = type(nxt) is nn.Linear
    elif flat:
        ok = type(nxt) is nn.Linear and nxt.in_features % m.out_channels == 0
    else:
        ok = type(nxt) is nn.Conv2d and nxt.groups == 1 and nxt.in_channels == m.out_channels
    return (act, j) if ok else None


def splittable_layers(model):
    """``{index: (activation index, next layer index)}`` of a ``Sequential``.

    A ``Linear`` is splittable when a smooth activation follows it and the
    next ``Linear`` is reached through ``Dropout`` or ``Identity`` only; a
    ``Conv2d`` (``groups=1``) when a smooth activation follows it and then,
    through dropout or average pooling, a ``Conv2d`` or ``Flatten`` and a
    ``Linear``.
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"neuron splitting needs a torch.nn.Sequential, got {type(model).__name__}")
    mods = list(model)
    out = {}
    for i in range(len(mods)):
        found = _next_layer(mods, i)
        if found is not None:
            out[i] = found
    return out


def _check_splittable(model, layers):
    found = splittable_layers(model)
    if layers is None:
        if not found:
            raise ValueError(f"no splittable layer: splitting needs {_REQUIREMENT}")
        return found
    out = {}
    for i in layers:
        if i not in found:
            mods = list(model)
            what = type(mods[i]).__name__ if 0 <= i < len(mods) else "out of range"
            raise ValueError(f"layer {i} ({what}) is not splittable: it must be {_REQUIREMENT}")
        out[i] = found[i]
    return out


@dataclass
class SplitEigen:
    """Extreme eigenpairs of one layer's splitting matrices (one row per neuron)."""

    lambda_min: torch.Tensor
    v_min: torch.Tensor
    lambda_max: torch.Tensor
    v_max: torch.Tensor


def _conv_padding(conv):
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


def _patches(conv, x):
    """The ``(N * positions, C_in kh kw)`` input patches of ``conv``, in its weight's order."""
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    x = F.pad(x, _conv_padding(conv), mode=mode)
    cols = F.unfold(x, conv.kernel_size, dilation=conv.dilation, stride=conv.stride)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


#: largest splitting-matrix stack (channels x d x d float64) a Conv2d may accumulate
_MAX_CONV_MATRIX_BYTES = 2 * 1024**3


def _collect(model, layers, data, loss_fn):
    """Per layer, the terms of the splitting matrices ``S_j = X^T diag(C_j) X / n``.

    ``Linear``: the inputs ``X = [x, 1]`` (``x`` without a bias) and
    ``C = dL/dh sigma''(z)``, one row per sample. ``Conv2d``: the matrices
    themselves, summed over batches (one row of ``X`` and ``C`` per sample
    and position would not fit). Returns ``(X, C, S, n)``.
    """
    mods = list(model)
    acts = {a: i for i, (a, _) in layers.items()}
    xs = {i: [] for i in layers if type(mods[i]) is nn.Linear}
    cs = {i: [] for i in xs}
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
                    "(layers=[...])"
                )
            S[i] = torch.zeros(conv.out_channels, d, d, dtype=torch.float64,
                               device=conv.weight.device)  # fmt: skip
    n_total = 0
    for xb, yb in data:
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
        for (i, (a, _)), g in zip(layers.items(), grads, strict=True):
            c = (g * _second_derivative(mods[a])(pre[i])).detach().double()
            if i in S:  # rows: (sample, position); columns: channels
                x = _patches(mods[i], inputs[i]).double()
                c = c.permute(0, 2, 3, 1).reshape(-1, c.shape[1])
            else:
                x = inputs[i].reshape(inputs[i].shape[0], -1).double()
            if mods[i].bias is not None:  # theta = [w; b]
                x = torch.cat([x, torch.ones_like(x[:, :1])], 1)
            if i in S:
                for j in range(c.shape[1]):
                    S[i][j] += (x * c[:, j : j + 1]).T @ x
            else:
                xs[i].append(x)
                cs[i].append(c)
        n_total += xb.shape[0]
    if n_total == 0:
        raise ValueError("data has no batches")
    X = {i: torch.cat(v) for i, v in xs.items()}
    C = {i: torch.cat(v) for i, v in cs.items()}
    return X, C, {i: m / n_total for i, m in S.items()}, n_total


def _eigen_of(S):
    """Extreme eigenpairs of a stack of symmetric matrices."""
    vals, vecs = torch.linalg.eigh(0.5 * (S + S.transpose(1, 2)))
    return SplitEigen(vals[:, 0], vecs[:, :, 0], vals[:, -1], vecs[:, :, -1])


def _exact_eigen(X, C, n):
    m, d = C.shape[1], X.shape[1]
    S = torch.empty(m, d, d, dtype=X.dtype, device=X.device)
    for j in range(m):
        S[j] = (X * C[:, j : j + 1]).T @ X / n
    return _eigen_of(S)


def _lanczos_eigen(X, C, n, steps, seed):
    """Extreme eigenpairs of ``S_j = X^T diag(C_j) X / n`` for all ``j`` at once."""
    m, d = C.shape[1], X.shape[1]
    k = min(steps, d)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    q = torch.randn(m, d, generator=gen, dtype=X.dtype).to(X.device)
    q = q / q.norm(dim=1, keepdim=True)
    Q = torch.zeros(k, m, d, dtype=X.dtype, device=X.device)
    alpha = torch.zeros(m, k, dtype=X.dtype, device=X.device)
    beta = torch.zeros(m, k, dtype=X.dtype, device=X.device)
    for i in range(k):
        Q[i] = q
        w = ((X @ q.T) * C).T @ X / n
        alpha[:, i] = (w * q).sum(1)
        for _ in range(2):  # full reorthogonalisation, twice is enough
            coef = torch.einsum("kmd,md->km", Q[: i + 1], w)
            w = w - torch.einsum("km,kmd->md", coef, Q[: i + 1])
        b = w.norm(dim=1)
        beta[:, i] = b
        if i + 1 < k:
            tiny = b <= 1e-12 * alpha[:, : i + 1].abs().amax(1).clamp_min(1e-300)
            fresh = torch.randn(m, d, generator=gen, dtype=X.dtype).to(X.device)
            for _ in range(2):
                coef = torch.einsum("kmd,md->km", Q[: i + 1], fresh)
                fresh = fresh - torch.einsum("km,kmd->md", coef, Q[: i + 1])
            w = torch.where(tiny[:, None], fresh, w)
            beta[:, i] = torch.where(tiny, torch.zeros_like(b), b)
            q = w / w.norm(dim=1, keepdim=True)
    T = (
        torch.diag_embed(alpha)
        + torch.diag_embed(beta[:, :-1], 1)
        + torch.diag_embed(beta[:, :-1], -1)
    )
    vals, vecs = torch.linalg.eigh(T)
    ritz = torch.einsum("kmd,mkj->mjd", Q, vecs)
    v_min = ritz[:, 0] / ritz[:, 0].norm(dim=1, keepdim=True)
    v_max = ritz[:, -1] / ritz[:, -1].norm(dim=1, keepdim=True)
    return SplitEigen(vals[:, 0], v_min, vals[:, -1], v_max)


def _block(layer):
    """Weights per input unit of a Linear (1) or Conv2d (its kernel size)."""
    return layer.weight[0, 0].numel() if type(layer) is nn.Conv2d else 1


def _resized(layer, out=None, inp=None):
    """A ``Linear``/``Conv2d`` configured like ``layer`` with new sizes (fresh weights)."""
    kw = {"bias": layer.bias is not None, "device": layer.weight.device,
          "dtype": layer.weight.dtype}  # fmt: skip
    if type(layer) is nn.Linear:
        return nn.Linear(inp or layer.in_features, out or layer.out_features, **kw)
    return nn.Conv2d(
        inp or layer.in_channels, out or layer.out_channels, layer.kernel_size,
        stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
        padding_mode=layer.padding_mode, **kw,
    )  # fmt: skip


class NeuronSplitting:
    """Grow a ``Sequential`` network by splitting neurons along their splitting matrices.

    Parameters
    ----------
    model : torch.nn.Sequential
        ``Linear`` or ``Conv2d`` layers with smooth activations (Tanh,
        Sigmoid, Softplus, SiLU, exact GELU); see :func:`splittable_layers`.
    loss_fn : callable, optional
        ``loss_fn(outputs, targets)``, mean-reduced; default cross-entropy.
    layers : list of int, optional
        Indices (in the ``Sequential``) of the layers to split; default all
        splittable ones.
    signed : bool, default False
        Also consider signed splitting along ``v_max``.
    exact_max_dim : int, default 256
        Fan-in + 1 up to which a ``Linear``'s splitting matrices are formed
        and diagonalised exactly; above, Lanczos. ``Conv2d`` matrices are
        always formed (``channels x d x d`` float64, at most 2 GiB).
    lanczos_steps : int, default 60
    seed : int, default 0
        Lanczos start vectors.

    Attributes
    ----------
    eigen_ : dict of int to SplitEigen
        After :meth:`score`.

    Examples
    --------
    >>> import torch
    >>> from solvers.torch import NeuronSplitting
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    >>> data = [(torch.randn(64, 4), torch.randint(0, 2, (64,)))]
    >>> splitter = NeuronSplitting(net)
    >>> _ = splitter.score(data)
    >>> grown = splitter.split(n_new=2, eps=0.1, warn=False)
    >>> grown[0].out_features, grown[2].in_features
    (5, 5)
    """

    def __init__(
        self,
        model,
        loss_fn=None,
        *,
        layers=None,
        signed=False,
        exact_max_dim=256,
        lanczos_steps=60,
        seed=0,
    ):
        self.layers = _check_splittable(model, layers)
        self.model = model
        self.loss_fn = loss_fn or nn.functional.cross_entropy
        self.signed = bool(signed)
        self.exact_max_dim = check_int("exact_max_dim", exact_max_dim)
        self.lanczos_steps = check_int("lanczos_steps", lanczos_steps)
        self.seed = int(seed)

    def score(self, data):
        """Splitting matrices' extreme eigenpairs per layer, averaged over ``data``.

        Parameters
        ----------
        data : iterable of (inputs, targets)
            Batches (a subsample of the training set is enough).

        Returns
        -------
        dict of int to SplitEigen
        """
        X, C, S, n = _collect(self.model, self.layers, data, self.loss_fn)
        self.eigen_ = {}
        for i in self.layers:
            if i in S:
                self.eigen_[i] = _eigen_of(S[i])
            elif X[i].shape[1] <= self.exact_max_dim:
                self.eigen_[i] = _exact_eigen(X[i], C[i], n)
            else:
                self.eigen_[i] = _lanczos_eigen(X[i], C[i], n, self.lanczos_steps, self.seed)
        return self.eigen_

    def predicted_change(self):
        """Per layer: the second-order loss change of each neuron's best split, per eps^2/2."""
        out = {}
        for i, e in self.eigen_.items():
            out[i] = (
                torch.minimum(e.lambda_min, -0.5 * e.lambda_max) if self.signed else e.lambda_min
            )
        return out

    def select(self, n_new):
        """The ``n_new`` neurons with the most negative predicted change (< 0 only).

        Returns
        -------
        list of (layer index, neuron index, "s2d" or "signed")
        """
        n_new = check_int("n_new", n_new, minimum=0)
        if not hasattr(self, "eigen_"):
            raise RuntimeError("call score(data) before select or split")
        cands = []
        for i, change in self.predicted_change().items():
            e = self.eigen_[i]
            for j, c in enumerate(change.tolist()):
                if c < 0:
                    kind = "s2d" if c == float(e.lambda_min[j]) else "signed"
                    cands.append((c, i, j, kind))
        cands.sort(key=lambda t: (t[0], t[1], t[2]))
        return [(i, j, kind) for _, i, j, kind in cands[:n_new]]

    @torch.no_grad()
    def split(self, n_new, eps=1e-2, warn=True):
        """A new model with up to ``n_new`` neurons split (see module docstring).

        Neurons whose split would not lower the loss to second order are not
        split, so fewer than ``n_new`` may be added. Build a new optimizer for
        the returned model.
        """
        chosen = self.select(n_new)
        new = copy.deepcopy(self.model)
        mods = list(new)
        # later layers first: a layer's rows change before its inputs are duplicated
        for i, (_, nxt) in sorted(self.layers.items(), reverse=True):
            picks = [(j, kind) for li, j, kind in chosen if li == i]
            if not picks:
                continue
            layer, out_layer = mods[i], mods[nxt]
            e = self.eigen_[i]
            m = layer.weight.shape[0]  # neurons (Linear rows, Conv2d output channels)
            W = layer.weight.detach().reshape(m, -1).clone()
            b = layer.bias.detach().clone() if layer.bias is not None else None
            # the next layer's weights as (outputs, neurons, block): block is 1 for a
            # Linear, the kernel for a Conv2d, a channel's positions after Flatten
            V = out_layer.weight.detach()
            V = V.reshape(V.shape[0], m, -1).clone()
            new_rows, new_bias, new_cols = [], [], []
            for j, kind in picks:
                if kind == "s2d":
                    v, (d1, d2), (w1, w2) = e.v_min[j], (1.0, -1.0), (0.5, 0.5)
                else:
                    v, (d1, d2), (w1, w2) = e.v_max[j], (0.5, 1.0), (2.0, -1.0)
                v = v.to(W.dtype)
                dw, db = (v[:-1], v[-1]) if b is not None else (v, None)
                parent_w, parent_b = W[j].clone(), None if b is None else b[j].clone()
                col = V[:, j].clone()
                W[j] = parent_w + eps * d1 * dw
                new_rows.append(parent_w + eps * d2 * dw)
                if b is not None:
                    b[j] = parent_b + eps * d1 * db
                    new_bias.append(parent_b + eps * d2 * db)
                V[:, j] = w1 * col
                new_cols.append(w2 * col)
            grown = _resized(layer, out=m + len(picks))
            grown.weight.copy_(torch.cat([W, torch.stack(new_rows)]).reshape(grown.weight.shape))
            if b is not None:
                grown.bias.copy_(torch.cat([b, torch.stack(new_bias)]))
            wider = _resized(out_layer, inp=(m + len(picks)) * V.shape[2] // _block(out_layer))
            wider.weight.copy_(
                torch.cat([V, torch.stack(new_cols, 1)], 1).reshape(wider.weight.shape)
            )
            if out_layer.bias is not None:
                wider.bias.copy_(out_layer.bias)
            new[i], new[nxt] = grown, wider
            mods = list(new)
        if warn:
            warnings.warn(
                "split() returns a new model with new parameter shapes: create a new "
                "optimizer for its parameters",
                UserWarning,
                stacklevel=2,
            )
        return new
