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
from typing import NamedTuple

import torch
from torch import nn

from solvers._validation import check_int
from solvers.torch.growth.split_eigen import eigen_of, exact_eigen, lanczos_eigen
from solvers.torch.growth.splittable import check_splittable
from solvers.torch.growth.splitting_matrix import collect_splitting_terms

__all__ = ["NeuronSplitting", "SplitPick"]


class SplitPick(NamedTuple):
    """One neuron to split: its layer (index in the ``Sequential``), row and scheme."""

    layer: int
    neuron: int
    kind: str  # "s2d" (along v_min) or "signed" (along v_max)


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
        self.layers = check_splittable(model, layers)
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

        Raises
        ------
        ValueError
            The inputs, the loss gradients or the splitting matrices hold NaN
            or inf; the previous :attr:`eigen_` is kept.
        """
        X, C, S, n = collect_splitting_terms(self.model, self.layers, data, self.loss_fn)
        eigen = {}  # all layers first: a failure keeps the previous scores
        for i in self.layers:
            if i in S:
                eigen[i] = eigen_of(S[i])
            elif X[i].shape[1] <= self.exact_max_dim:
                eigen[i] = exact_eigen(X[i], C[i], n)
            else:
                eigen[i] = lanczos_eigen(X[i], C[i], n, self.lanczos_steps, self.seed)
        self.eigen_ = eigen
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
        list of SplitPick
            ``(layer, neuron, kind)`` with ``kind`` ``"s2d"`` or ``"signed"``,
            most negative change first.
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
        return [SplitPick(i, j, kind) for _, i, j, kind in cands[:n_new]]

    @torch.no_grad()
    def split(self, n_new, eps=1e-2, warn=True):
        """A new model with up to ``n_new`` neurons split (see module docstring).

        Neurons whose split would not lower the loss to second order are not
        split, so fewer than ``n_new`` may be added. Build a new optimizer for
        the returned model.
        """
        chosen = self.select(n_new)
        new = copy.deepcopy(self.model)
        # later layers first: a layer's rows change before its inputs are duplicated
        for i, (_, nxt) in sorted(self.layers.items(), reverse=True):
            picks = [(j, kind) for li, j, kind in chosen if li == i]
            if picks:
                new[i], new[nxt] = _split_layer(new[i], new[nxt], self.eigen_[i], picks, eps)
        if warn:
            warnings.warn(
                "split() returns a new model with new parameter shapes: create a new "
                "optimizer for its parameters",
                UserWarning,
                stacklevel=2,
            )
        return new


@torch.no_grad()
def _split_layer(layer, out_layer, eigen, picks, eps):
    """``layer`` with the ``picks`` neurons split, and ``out_layer`` with their columns.

    Each pick ``(j, kind)`` keeps offspring 1 in row ``j`` and appends
    offspring 2: ``theta + eps d_i v`` with outgoing weights ``w_i`` times
    the parent's, ``(d, w) = ((1, -1), (1/2, 1/2))`` along ``v_min`` for
    ``"s2d"`` and ``((1/2, 1), (2, -1))`` along ``v_max`` for ``"signed"``.
    """
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
            v, (d1, d2), (w1, w2) = eigen.v_min[j], (1.0, -1.0), (0.5, 0.5)
        else:
            v, (d1, d2), (w1, w2) = eigen.v_max[j], (0.5, 1.0), (2.0, -1.0)
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
    wider.weight.copy_(torch.cat([V, torch.stack(new_cols, 1)], 1).reshape(wider.weight.shape))
    if out_layer.bias is not None:
        wider.bias.copy_(out_layer.bias)
    return grown, wider
