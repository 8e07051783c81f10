# SPDX-License-Identifier: BSD-3-Clause
"""Firefly growth: candidate splits and new neurons scored by a first-order Taylor estimate.

Firefly neural architecture descent (Wu, Liu, Stone & Liu 2020, "Firefly
neural architecture descent: a general approach for growing neural
networks") grows a network by choosing, among a large set of candidate
changes within an ``eps``-neighbourhood of the current network, those whose
first-order effect on the loss is the most negative. Here, for every
splittable layer (:func:`~solvers.torch.growth.splittable.splittable_layers`,
``Linear`` or ``Conv2d`` widths) the candidates are

- a **split** of each neuron ``j``: the offspring ``theta_j +- eps delta_j``
  with half the outgoing weights each (``|delta_j| = 1``, bias included), so
  the next layer sees ``h_j + Delta_j``,
  ``Delta_j = (sigma(z_j + eps delta_j^T x) + sigma(z_j - eps delta_j^T x)) / 2 - sigma(z_j)``;
- ``n_candidates`` **new neurons** ``k``: incoming weights ``a_k`` (small
  random, ``N(0, init_scale^2 rms(W)^2)``, bias 0) and outgoing weights
  ``u_k`` (zero at the start, so the network's function is kept), adding
  ``u_k sigma(a_k^T x)`` to the next layer's input.

Step 1, candidate training: the augmented network (all candidates on, the
network's own parameters frozen) is trained for ``candidate_epochs`` epochs
of Adam on ``(delta, a, b, u)``, then projected back after each step onto
``|delta_j| = 1``, ``|u_k| <= eps`` and ``|a_k| <=`` the largest row norm of
the layer (the ``eps``-neighbourhood; the reference code uses RMSprop with an
L2 penalty instead of the projections).

Step 2, scoring: each candidate gets a gate ``g`` (``h_j + g Delta_j``,
``g u_k sigma(a_k^T x)``) and its score is the first-order Taylor estimate of
the loss change when it is switched on,

    s = dL/dg at g = 0 = E_x[ <dL/dh', Delta> ],

computed for all candidates by one backward pass per batch at ``g = 0`` (the
current network). A split's ``s`` is ``O(eps^2)`` (about ``eps^2/2 delta^T S
delta``, the splitting matrix of :mod:`~solvers.torch.growth.splitting`), a
new neuron's ``O(eps)``.

Step 3, selection: the candidates with ``s < 0`` are chosen by count or under
a cost budget with the linear program of
:mod:`~solvers.torch.growth.budget_selection` (a split and a new neuron of a
layer cost the same: one more neuron), and :meth:`FireflyGrowth.grow` returns
a new model with them materialised exactly as scored: its loss differs from
the current one by about the sum of the chosen scores. Build a new optimizer
for it.
"""

from __future__ import annotations

import copy
import warnings
from typing import ClassVar, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from solvers._validation import (
    Integral,
    Real,
    StrOptions,
    interval,
    validate_params,
)
from solvers.torch.growth.budget_selection import (
    check_count_or_budget,
    select_count,
    select_under_budget,
)
from solvers.torch.growth.neuron_cost import check_costs, neuron_costs, pair_costs
from solvers.torch.growth.split_eigen import SplitEigen
from solvers.torch.growth.splittable import check_splittable
from solvers.torch.growth.splitting import (
    _recording_first,
    _split_layer,
    append_neurons,
    check_layer_cap,
)

__all__ = ["FireflyGrowth", "FireflyPick"]


class FireflyPick(NamedTuple):
    """One chosen candidate: its layer, index (neuron or new candidate) and kind."""

    layer: int
    index: int
    kind: str  # "split" (index: the neuron) or "new" (index: the new-neuron candidate)


def _apply(layer, x, weight, bias):
    """``layer``'s operation (Linear or Conv2d, with its stride/padding) with other weights."""
    if type(layer) is nn.Linear:
        return F.linear(x, weight, bias)
    return layer._conv_forward(x, weight.reshape(-1, *layer.weight.shape[1:]), bias)


def _gate_shape(h):
    return (1, -1) + (1,) * (h.dim() - 2)


class FireflyGrowth:
    """Grow a ``Sequential`` by Firefly descent: candidate splits and new neurons.

    Parameters
    ----------
    model : torch.nn.Sequential
        As for :class:`~solvers.torch.growth.splitting.NeuronSplitting`.
    loss_fn : callable, optional
        ``loss_fn(outputs, targets)``, mean-reduced; default cross-entropy.
    layers : list of int, optional
        Layers to grow; default all splittable ones.
    n_candidates : int, default 8
        New-neuron candidates per layer (0: splits only).
    split : bool, default True
        Also consider splitting every existing neuron.
    eps : float, default 1e-2
        Size of the neighbourhood: offspring ``theta +- eps delta``, new
        outgoing weights ``|u| <= eps``.
    init_scale : float, default 0.1
        New incoming weights ``~ N(0, (init_scale rms(W))^2)``.
    candidate_epochs : int, default 1
        Epochs of candidate training before scoring.
    lr : float, default 0.05
        Adam's step for ``delta`` and ``a`` relative to their scale (1 and
        ``rms(W)``), and for ``u`` relative to ``eps``.
    cost, layer_cap
        As for :class:`~solvers.torch.growth.splitting.NeuronSplitting`.
    seed : int, default 0

    Attributes
    ----------
    candidates_ : dict of int to dict
        After :meth:`score`, per layer: ``delta`` (neurons x fan-in [+1]),
        ``a``, ``b``, ``u`` (the new neurons), ``split_score``, ``new_score``.
    costs_ : dict of int to Tensor
        Each neuron's cost in a layer (a split or a new neuron alike).
    pairs_ : dict of int to (int, float)
        The cost of each pair of new neurons in consecutive layers.
    history_ : list of float
        Mean augmented loss of each candidate-training epoch.

    Examples
    --------
    >>> import torch
    >>> from solvers.torch import FireflyGrowth
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    >>> data = [(torch.randn(64, 4), torch.randint(0, 2, (64,)))]
    >>> firefly = FireflyGrowth(net, n_candidates=4)
    >>> _ = firefly.score(data)
    >>> grown = firefly.grow(n_new=2, warn=False)
    >>> grown[0].out_features, grown[2].in_features
    (5, 5)
    """

    _parameter_constraints: ClassVar[dict] = {
        "n_candidates": [interval(Integral, 0, None, closed="left")],
        "split": ["boolean"],
        "eps": [interval(Real, 0.0, None, closed="neither")],
        "init_scale": [interval(Real, 0.0, None, closed="neither")],
        "candidate_epochs": [interval(Integral, 1, None, closed="left")],
        "lr": [interval(Real, 0.0, None, closed="neither")],
        "cost": [StrOptions({"flops", "params"}), dict],
        "layer_cap": [interval(Integral, 0, None, closed="left"), dict, None],
        "seed": [interval(Integral, 0, None, closed="left")],
    }

    def __init__(
        self,
        model,
        loss_fn=None,
        *,
        layers=None,
        n_candidates=8,
        split=True,
        eps=1e-2,
        init_scale=0.1,
        candidate_epochs=1,
        lr=0.05,
        cost="flops",
        layer_cap=None,
        seed=0,
    ):
        self.layers = check_splittable(model, layers)
        validate_params(
            self._parameter_constraints,
            {"n_candidates": n_candidates, "split": split, "eps": eps, "init_scale": init_scale,
             "candidate_epochs": candidate_epochs, "lr": lr, "cost": cost,
             "layer_cap": layer_cap, "seed": seed},
            "FireflyGrowth",
        )  # fmt: skip
        if not split and n_candidates == 0:
            raise ValueError("FireflyGrowth needs split=True or n_candidates > 0: no candidates")
        self.model = model
        self.loss_fn = loss_fn or nn.functional.cross_entropy
        self.n_candidates, self.split = int(n_candidates), bool(split)
        self.eps, self.init_scale, self.lr = float(eps), float(init_scale), float(lr)
        self.candidate_epochs, self.seed = int(candidate_epochs), int(seed)
        self.layer_cap = check_layer_cap(layer_cap, self.layers)
        self.cost = check_costs(cost, model, self.layers) if isinstance(cost, dict) else cost
        mods = list(model)
        self._acts = {a: i for i, (a, _) in self.layers.items()}
        self._nexts = {nxt: i for i, (_, nxt) in self.layers.items()}
        self._between = {
            i: range(a + 1, nxt) for i, (a, nxt) in self.layers.items()
        }  # pass-through modules a new neuron's output goes through
        self._mods = mods

    # -- candidates ------------------------------------------------------------------------

    def _init_candidates(self):
        gen = torch.Generator().manual_seed(self.seed)
        cand = {}
        for i, (_, nxt) in self.layers.items():
            layer, after = self._mods[i], self._mods[nxt]
            W = layer.weight.detach()
            m, fan_in = W.shape[0], W[0].numel()
            d = fan_in + (layer.bias is not None)
            kw = {"dtype": W.dtype, "device": W.device}
            delta = torch.randn(m, d, generator=gen, dtype=W.dtype).to(W.device)
            rms = float(W.pow(2).mean().sqrt()) or 1.0
            K = self.n_candidates
            a = torch.randn(K, fan_in, generator=gen, dtype=W.dtype).to(W.device)
            V = after.weight.detach()
            per_unit = V.reshape(V.shape[0], m, -1).shape[2]
            u_shape = (V.shape[0], K * per_unit) if type(after) is nn.Linear else (
                V.shape[0], K, *V.shape[2:])  # fmt: skip
            cand[i] = {
                "delta": (delta / delta.norm(dim=1, keepdim=True)).requires_grad_(self.split),
                "a": (self.init_scale * rms * a).requires_grad_(K > 0),
                "b": torch.zeros(K, **kw).requires_grad_(K > 0 and layer.bias is not None),
                "u": torch.zeros(u_shape, **kw).requires_grad_(K > 0),
                "a_max": float(W.reshape(m, -1).norm(dim=1).max()),
                "rms": rms,
                "per_unit": per_unit,
            }
        return cand

    def _forward(self, x, cand, gates):
        """The network with the candidates added, each scaled by its gate."""
        out, x_in, side = x, {}, {}
        for k, m in enumerate(self._mods):
            if k in self.layers:
                x_in[k] = out
            if k in self._acts:
                i = self._acts[k]
                c, g_split, g_new = cand[i], *gates[i]
                layer = self._mods[i]
                z = out
                h = m(z.clone())  # an in-place activation must not overwrite z
                if self.split:
                    dw = c["delta"][:, : layer.weight[0].numel()]
                    db = c["delta"][:, -1] if layer.bias is not None else None
                    zd = self.eps * _apply(layer, x_in[i], dw, db)
                    diff = 0.5 * (m(z + zd) + m(z - zd)) - h
                    h = h + g_split.reshape(_gate_shape(h)) * diff
                if self.n_candidates:
                    bias = c["b"] if layer.bias is not None else None
                    hn = m(_apply(layer, x_in[i], c["a"], bias))
                    side[i] = hn * g_new.reshape(_gate_shape(hn))
                out = h
                continue
            y = m(out)
            if k in self._nexts and self._nexts[k] in side:
                i = self._nexts[k]
                hn = side.pop(i)
                if type(m) is nn.Linear:
                    y = y + F.linear(hn.flatten(1), cand[i]["u"])
                else:
                    y = y + m._conv_forward(hn, cand[i]["u"], None)
            else:
                for i in side:
                    if k in self._between[i]:
                        side[i] = m(side[i])
            out = y
        return out

    def _project(self, cand):
        with torch.no_grad():
            for c in cand.values():
                if self.split:
                    c["delta"] /= c["delta"].norm(dim=1, keepdim=True).clamp_min(1e-300)
                if self.n_candidates:
                    a = c["a"]
                    a *= (c["a_max"] / a.norm(dim=1, keepdim=True).clamp_min(1e-300)).clamp(max=1)
                    u = c["u"].reshape(c["u"].shape[0], self.n_candidates, -1)
                    norm = u.pow(2).sum((0, 2)).sqrt()[None, :, None]
                    u *= (self.eps / norm.clamp_min(1e-300)).clamp(max=1)

    def score(self, data):
        """Train the candidates, then score them by the first-order Taylor estimate.

        Parameters
        ----------
        data : iterable of (inputs, targets)
            Re-iterable (a list or a ``DataLoader``): it is read
            ``candidate_epochs + 1`` times.

        Returns
        -------
        dict of int to (Tensor, Tensor)
            Per layer, the split scores (one per neuron; empty without
            ``split``) and the new-neuron scores.

        Raises
        ------
        ValueError
            ``data`` is empty or an exhausted iterator, or the scores are not
            finite; the previous :attr:`candidates_` are kept.
        """
        first = []
        data = _recording_first(data, first)
        cand = self._init_candidates()
        params = []
        for c in cand.values():
            if self.split:
                params.append({"params": [c["delta"]], "lr": self.lr})
            if self.n_candidates:
                params.append({"params": [c["a"]], "lr": self.lr * c["rms"]})
                if c["b"].requires_grad:
                    params.append({"params": [c["b"]], "lr": self.lr * c["rms"]})
                params.append({"params": [c["u"]], "lr": self.lr * self.eps})
        opt = torch.optim.Adam(params)
        on = {i: self._gates(i, 1.0) for i in self.layers}
        frozen = [p for p in self.model.parameters() if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        try:
            history = []
            for epoch in range(self.candidate_epochs):
                total, n = 0.0, 0
                for xb, yb in data:
                    opt.zero_grad()
                    loss = self.loss_fn(self._forward(xb, cand, on), yb)
                    loss.backward()
                    opt.step()
                    self._project(cand)
                    total, n = total + float(loss.detach()) * xb.shape[0], n + xb.shape[0]
                if n == 0:
                    raise ValueError(_exhausted(epoch))
                history.append(total / n)
            scores = self._gate_gradients(data, cand)
        finally:
            for p in frozen:
                p.requires_grad_(True)
        for i, (s_split, s_new) in scores.items():
            if not (torch.isfinite(s_split).all() and torch.isfinite(s_new).all()):
                raise ValueError(
                    f"the candidate scores of layer {i} hold NaN or inf: check the data, the "
                    "targets and the model's parameters"
                )
        costs, pairs = self.cost, {}  # user costs: their sum is the cost
        if not isinstance(costs, dict):
            costs = neuron_costs(self.model, self.layers, first[0], self.cost)
            pairs = pair_costs(self.model, self.layers, first[0], self.cost)
        out = {}
        for i, c in cand.items():
            out[i] = {k: (v.detach() if torch.is_tensor(v) else v) for k, v in c.items()}
            out[i]["split_score"], out[i]["new_score"] = scores[i]
        self.candidates_, self.costs_, self.pairs_, self.history_ = out, costs, pairs, history
        return {i: scores[i] for i in self.layers}

    def _gates(self, i, value):
        m = self._mods[i].weight.shape[0] if self.split else 0
        kw = {"dtype": self._mods[i].weight.dtype, "device": self._mods[i].weight.device}
        return torch.full((m,), value, **kw), torch.full((self.n_candidates,), value, **kw)

    def _gate_gradients(self, data, cand):
        """``E_x[dL/dg]`` at ``g = 0`` for every candidate, over ``data``."""
        gates = {i: tuple(g.requires_grad_() for g in self._gates(i, 0.0)) for i in self.layers}
        flat = [g for pair in gates.values() for g in pair]
        sums = [torch.zeros_like(g) for g in flat]
        n = 0
        for xb, yb in data:
            loss = self.loss_fn(self._forward(xb, cand, gates), yb) * xb.shape[0]
            grads = torch.autograd.grad(loss, flat, allow_unused=True)
            for s, g in zip(sums, grads, strict=True):
                if g is not None:
                    s += g.detach()
            n += xb.shape[0]
        if n == 0:
            raise ValueError(_exhausted(self.candidate_epochs))
        it = iter(s / n for s in sums)
        return {i: (next(it), next(it)) for i in gates}

    # -- selection and growth --------------------------------------------------------------

    def select(self, n_new=None, *, budget=None):
        """The candidates to add: the ``n_new`` best (``s < 0`` only) or those under ``budget``.

        See :meth:`NeuronSplitting.select <solvers.torch.growth.splitting.NeuronSplitting.select>`
        for the budget's linear program and its rounding.

        Returns
        -------
        list of FireflyPick
            Most negative score first.
        """
        n_new, budget = check_count_or_budget(n_new, budget, "FireflyGrowth.select")
        if not hasattr(self, "candidates_"):
            raise RuntimeError("call score(data) before select or grow")
        scores, groups, index, kinds, costs = [], [], [], [], []
        for i in sorted(self.candidates_):
            c = self.candidates_[i]
            new_cost = torch.full((self.n_candidates,), float(self.costs_[i].max()))
            for kind, s, cost in (
                ("split", c["split_score"], self.costs_[i][: len(c["split_score"])]),
                ("new", c["new_score"], new_cost.double()),
            ):
                s = s.detach().cpu().double()
                scores.append(s)
                groups.append(np.full(len(s), i))
                index.append(np.arange(len(s)))
                kinds += [kind] * len(s)
                costs.append(cost)
        scores = torch.cat(scores).numpy()
        groups, index = np.concatenate(groups), np.concatenate(index)
        if budget is None:
            chosen = select_count(scores, groups, n_new, self.layer_cap)
        else:
            costs = torch.cat(costs).numpy()
            chosen = select_under_budget(
                scores, costs, groups, budget, self.layer_cap, self.pairs_
            ).chosen
        return [FireflyPick(int(groups[k]), int(index[k]), kinds[k]) for k in chosen]

    @torch.no_grad()
    def grow(self, n_new=None, *, budget=None, warn=True):
        """A new model with the chosen candidates materialised (see the module docstring).

        The model passed in is untouched; build a new optimizer for the returned one.
        """
        chosen = self.select(n_new, budget=budget)
        new = copy.deepcopy(self.model)
        rows = {}  # per grown layer: the source row of each row (-1: a new neuron)
        # later layers first: a layer's rows change before its inputs are duplicated
        for i, (_, nxt) in sorted(self.layers.items(), reverse=True):
            c = self.candidates_[i]
            splits = [p.index for p in chosen if p.layer == i and p.kind == "split"]
            fresh = [p.index for p in chosen if p.layer == i and p.kind == "new"]
            m = new[i].weight.shape[0]
            src = list(range(m))
            if splits:
                zeros = torch.zeros(m, dtype=c["delta"].dtype, device=c["delta"].device)
                eig = SplitEigen(zeros, c["delta"], zeros, c["delta"])
                picks = [(j, "s2d") for j in splits]
                new[i], new[nxt] = _split_layer(new[i], new[nxt], eig, picks, self.eps)
                src += splits
            if fresh:
                u = c["u"].reshape(c["u"].shape[0], self.n_candidates, -1)[:, fresh]
                after_rows = rows.get(nxt)
                if after_rows is not None:  # the next layer grew first: rows copy their source
                    u = torch.cat([u, torch.zeros_like(u[:1])])[
                        [r if r >= 0 else u.shape[0] for r in after_rows]
                    ]
                b = c["b"][fresh] if new[i].bias is not None else None
                new[i], new[nxt] = append_neurons(new[i], new[nxt], c["a"][fresh], b, u)
                src += [-1] * len(fresh)
            rows[i] = src
        if warn:
            warnings.warn(
                "grow() returns a new model with new parameter shapes: create a new "
                "optimizer for its parameters",
                UserWarning,
                stacklevel=2,
            )
        return new


def _exhausted(epoch):
    if epoch == 0:
        return "data has no batches"
    return (
        "data was exhausted after one pass: FireflyGrowth reads it several times; pass a "
        "list of batches or a DataLoader, not an iterator"
    )
