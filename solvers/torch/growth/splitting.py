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
most negative are split, across layers, under a budget of new neurons
(``n_new``) or of cost (``budget``: energy-aware splitting, Wang et al. 2019,
"Energy-aware neural architecture optimization with fast splitting steepest
descent"): each neuron costs the FLOPs or parameters its copy adds
(:mod:`~solvers.torch.growth.neuron_cost`) and the neurons are chosen by the
linear program of :mod:`~solvers.torch.growth.budget_selection`.
Eigenpairs are exact (``eigh`` of the ``d x d`` matrices, ``d`` = fan-in, plus 1
with a bias) for small fan-in and from a batched Lanczos iteration with full
reorthogonalisation otherwise, whose matrix-vector products
``S v = X^T (c * (X v)) / n`` never form ``S``; or, with
``eigen="rayleigh"``, from stochastic Rayleigh-quotient steps at the cost of
back-propagation (:mod:`~solvers.torch.growth.rayleigh`), which neither
forms ``S`` nor keeps the layer's inputs.

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
from typing import ClassVar, NamedTuple

import numpy as np
import torch
from torch import nn

from solvers._validation import (
    Integral,
    Real,
    StrOptions,
    check_int,
    interval,
    validate_params,
)
from solvers.torch.growth.budget_selection import (
    check_count_or_budget,
    select_count,
    select_under_budget,
)
from solvers.torch.growth.neuron_cost import check_costs, neuron_costs, pair_costs
from solvers.torch.growth.rayleigh import rayleigh_eigen
from solvers.torch.growth.split_eigen import eigen_of, exact_eigen, lanczos_eigen
from solvers.torch.growth.splittable import check_splittable
from solvers.torch.growth.splitting_matrix import collect_splitting_terms

__all__ = ["NeuronSplitting", "SplitPick", "append_neurons"]


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


def append_neurons(layer, after, a, b, u):
    """``layer`` with ``k`` output units appended, and ``after`` with their input weights.

    Parameters
    ----------
    layer : torch.nn.Linear or torch.nn.Conv2d
        The layer that gains units (its ``m`` units are kept first).
    after : torch.nn.Linear or torch.nn.Conv2d
        The next layer, which reads ``layer``'s units.
    a : Tensor of shape (k, fan_in)
        The new units' incoming weights (a Conv2d's flattened kernels).
    b : Tensor of shape (k,) or None
        Their biases (ignored when ``layer`` has none).
    u : Tensor of shape (outputs of after, k, block)
        ``after``'s weights from each new unit (``block``: 1 for a Linear,
        the kernel size for a Conv2d).

    Returns
    -------
    (grown, wider) : new modules of ``layer``'s and ``after``'s kinds, dtype
        and device. With ``u = 0`` the network computes the same function
        (the new units feed nothing); the given layers are left unchanged.
    """
    m, k = layer.weight.shape[0], a.shape[0]
    grown = _resized(layer, out=m + k)
    with torch.no_grad():
        W = layer.weight.detach().reshape(m, -1)
        grown.weight.copy_(torch.cat([W, a.to(W.dtype)]).reshape(grown.weight.shape))
        if layer.bias is not None:
            grown.bias.copy_(torch.cat([layer.bias.detach(), b.to(W.dtype)]))
        V = after.weight.detach()
        V = V.reshape(V.shape[0], m, -1)
        wider = _resized(after, inp=(m + k) * V.shape[2] // _block(after))
        wider.weight.copy_(torch.cat([V, u.to(V.dtype)], 1).reshape(wider.weight.shape))
        if after.bias is not None:
            wider.bias.copy_(after.bias)
    return grown, wider


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
        Lanczos and Rayleigh start vectors.
    eigen : {"auto", "exact", "lanczos", "rayleigh"}, default "auto"
        How the extreme eigenpairs are found. ``"auto"``: ``Conv2d`` and
        ``Linear`` with fan-in + 1 up to ``exact_max_dim`` exactly, wider
        ``Linear`` by Lanczos. ``"rayleigh"``: stochastic Rayleigh-quotient
        steps for every layer (Wang et al. 2019's fast splitting; ``data``
        is read ``rayleigh_epochs + 1`` times, so it must be re-iterable).
    rayleigh_epochs : int, default 10
    rayleigh_lr : float, default 0.5
        Initial step in ``(0, 1]`` (see :func:`~solvers.torch.growth.rayleigh.rayleigh_eigen`).
    cost : {"flops", "params"} or dict, default "flops"
        Each neuron's cost under a ``budget``: the multiply-accumulates per
        input sample its copy adds (for the input size seen by :meth:`score`),
        its added parameters, or ``{layer: one cost per neuron (or a scalar)}``
        checked against the model. Computed costs also charge the weights
        between new neurons of consecutive layers
        (:func:`~solvers.torch.growth.neuron_cost.pair_costs`); user costs are
        summed as given.
    layer_cap : int or dict of int to int, optional
        The most neurons split in one layer by one :meth:`split` (all layers,
        or per layer).

    Attributes
    ----------
    eigen_ : dict of int to SplitEigen
        After :meth:`score`.
    costs_ : dict of int to Tensor
        Each neuron's cost, after :meth:`score`.
    pairs_ : dict of int to (int, float)
        The cost of each pair of new neurons in a layer and the next one,
        after :meth:`score` (empty with user costs).

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

    Under a budget of FLOPs (a neuron of layer 0 costs 4 + 2 = 6 here):

    >>> float(splitter.costs_[0][0])
    6.0
    >>> len(splitter.select(budget=12)) <= 2
    True
    """

    _parameter_constraints: ClassVar[dict] = {
        "signed": ["boolean"],
        "eigen": [StrOptions({"auto", "exact", "lanczos", "rayleigh"})],
        "rayleigh_epochs": [interval(Integral, 1, None, closed="left")],
        "rayleigh_lr": [interval(Real, 0.0, 1.0, closed="right")],
        "cost": [StrOptions({"flops", "params"}), dict],
        "layer_cap": [interval(Integral, 0, None, closed="left"), dict, None],
    }

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
        eigen="auto",
        rayleigh_epochs=10,
        rayleigh_lr=0.5,
        cost="flops",
        layer_cap=None,
    ):
        self.layers = check_splittable(model, layers)
        validate_params(
            self._parameter_constraints,
            {"signed": signed, "eigen": eigen, "rayleigh_epochs": rayleigh_epochs,
             "rayleigh_lr": rayleigh_lr, "cost": cost, "layer_cap": layer_cap},
            "NeuronSplitting",
        )  # fmt: skip
        self.model = model
        self.loss_fn = loss_fn or nn.functional.cross_entropy
        self.signed = bool(signed)
        self.exact_max_dim = check_int("exact_max_dim", exact_max_dim)
        self.lanczos_steps = check_int("lanczos_steps", lanczos_steps)
        self.seed = int(seed)
        self.eigen = eigen
        self.rayleigh_epochs = int(rayleigh_epochs)
        self.rayleigh_lr = float(rayleigh_lr)
        self.layer_cap = check_layer_cap(layer_cap, self.layers)
        self.cost = check_costs(cost, model, self.layers) if isinstance(cost, dict) else cost

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
            or inf; the previous :attr:`eigen_` and :attr:`costs_` are kept.
        """
        first = []
        data = _recording_first(data, first)
        if self.eigen == "rayleigh":
            eigen = rayleigh_eigen(
                self.model, self.layers, data, self.loss_fn, epochs=self.rayleigh_epochs,
                lr=self.rayleigh_lr, seed=self.seed,
            )  # fmt: skip
        else:
            eigen = self._matrix_eigen(data)
        # all layers first: a failure keeps the previous scores
        costs, pairs = self.cost, {}  # user costs: their sum is the cost
        if not isinstance(costs, dict):
            costs = neuron_costs(self.model, self.layers, first[0], self.cost)
            pairs = pair_costs(self.model, self.layers, first[0], self.cost)
        self.eigen_, self.costs_, self.pairs_ = eigen, costs, pairs
        return self.eigen_

    def _matrix_eigen(self, data):
        """Eigenpairs from the collected terms: exact, or Lanczos for wide ``Linear``."""
        X, C, S, n = collect_splitting_terms(self.model, self.layers, data, self.loss_fn)
        eigen = {}
        for i in self.layers:
            if i in S:
                eigen[i] = eigen_of(S[i])
            elif self.eigen == "exact" or (
                self.eigen == "auto" and X[i].shape[1] <= self.exact_max_dim
            ):
                eigen[i] = exact_eigen(X[i], C[i], n)
            else:
                eigen[i] = lanczos_eigen(X[i], C[i], n, self.lanczos_steps, self.seed)
        return eigen

    def predicted_change(self):
        """Per layer: the second-order loss change of each neuron's best split, per eps^2/2."""
        out = {}
        for i, e in self.eigen_.items():
            out[i] = (
                torch.minimum(e.lambda_min, -0.5 * e.lambda_max) if self.signed else e.lambda_min
            )
        return out

    def select(self, n_new=None, *, budget=None):
        """The neurons to split: a count (``n_new``) or a cost ``budget``.

        With ``n_new``: the ``n_new`` most negative predicted changes
        (``< 0`` only). With ``budget``: the linear program
        ``min sum_i beta_i c_i`` s.t. ``sum_i beta_i cost_i <= budget``,
        ``0 <= beta_i <= 1`` over the neurons with ``c_i < 0``, rounded as
        :mod:`~solvers.torch.growth.budget_selection` says (never over the
        budget). Both honour ``layer_cap``.

        Returns
        -------
        list of SplitPick
            ``(layer, neuron, kind)`` with ``kind`` ``"s2d"`` or ``"signed"``,
            most negative change first.
        """
        n_new, budget = check_count_or_budget(n_new, budget, "NeuronSplitting.select")
        if not hasattr(self, "eigen_"):
            raise RuntimeError("call score(data) before select or split")
        change = self.predicted_change()
        order = sorted(change)
        scores = torch.cat([change[i].detach().cpu().double() for i in order]).numpy()
        groups = np.concatenate([np.full(len(change[i]), i) for i in order])
        neuron = np.concatenate([np.arange(len(change[i])) for i in order])
        if budget is None:
            chosen = select_count(scores, groups, n_new, self.layer_cap)
        else:
            costs = torch.cat([self.costs_[i] for i in order]).numpy()
            chosen = select_under_budget(
                scores, costs, groups, budget, self.layer_cap, self.pairs_
            ).chosen
        picks = []
        for k in chosen:
            i, j = int(groups[k]), int(neuron[k])
            kind = "s2d" if scores[k] == float(self.eigen_[i].lambda_min[j]) else "signed"
            picks.append(SplitPick(i, j, kind))
        return picks

    @torch.no_grad()
    def split(self, n_new=None, eps=1e-2, warn=True, *, budget=None):
        """A new model with ``n_new`` neurons split, or those :meth:`select` picks under ``budget``.

        Neurons whose split would not lower the loss to second order are not
        split, so fewer than ``n_new`` may be added. Build a new optimizer for
        the returned model (its parameters are new tensors; the model passed
        in and its optimizer are untouched).
        """
        chosen = self.select(n_new, budget=budget)
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


def _recording_first(data, first):
    """``data``, re-iterable if it was, appending its first batch's inputs to ``first``."""

    class Recording:
        def __iter__(self):
            for xb, yb in data:
                if not first:
                    first.append(xb[:1])
                yield xb, yb

    return Recording()


def check_layer_cap(layer_cap, layers):
    """``layer_cap`` as None, an int ``>= 0`` or ``{layer: int >= 0}`` over ``layers``."""
    if not isinstance(layer_cap, dict):
        return layer_cap
    unknown = sorted(set(layer_cap) - set(layers))
    if unknown:
        raise ValueError(f"layer_cap names layers {unknown} that are not split ({sorted(layers)})")
    return {i: check_int(f"layer_cap[{i}]", c, minimum=0) for i, c in layer_cap.items()}


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
