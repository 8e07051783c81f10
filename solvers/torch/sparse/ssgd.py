# SPDX-License-Identifier: BSD-3-Clause
"""SSGD: sparsity-promoting SGD by iterative reweighting and affine scaling.

Lee, Fedorov, Rao & Garudadri (2020), "SSGD: sparsity-promoting stochastic
gradient descent algorithm for unbiased DNN pruning", ICASSP. The problem is
``min J(theta) + lam G(theta)`` with a diversity measure
``G(theta) = sum_i g(theta_i)``, here the log-sum
``g = log(theta_i^2 + eps)`` (reweighted l2) or ``g = log(|theta_i| + eps)``
(reweighted l1). With the affine scaling ``theta = Omega q``,
``Omega = diag(w)`` frozen at the current iterate and
``w_i = sqrt(theta_i^2 + eps)`` (l2) or ``|theta_i| + eps`` (l1), a gradient
step in ``q`` is the diagonally preconditioned step in ``theta``; SSGD
normalises the scaling within each layer so its mean is 1:

    s_i = w_i^2 / mean_layer(w^2),
    g_i <- s_i (dJ/dtheta_i + lam dG/dtheta_i).

For the l2 log-sum ``s_i dG/dtheta_i = 2 theta_i / mean(w^2)``: the penalty
becomes weight decay with a layer-wise coefficient, while small weights get
tiny steps ``s_i ~ eps / mean(w^2)`` and decay to zero ("rich get richer").
A final magnitude prune (:meth:`SSGD.prune_masks`) then removes them;
fine-tune with :class:`solvers.torch.StaticSparsity`.

:class:`SSGD` is a gradient transform registered as a step pre-hook, so it
composes with ``torch.optim.SGD`` (momentum, Nesterov) and any SGD-type
optimizer. With Adam-type optimizers the second-moment normalisation undoes
most of the scaling; that is not what the method is for.

No public code of the paper exists; this follows its equations (reference
notes, ``sparse.md`` §2).
"""

from __future__ import annotations

from numbers import Real
from typing import ClassVar

import torch

from solvers._validation import StrOptions, interval, validate_params
from solvers.torch.sparse.amp import amp_grad_scale
from solvers.torch.sparse.layers import DEFAULT_LAYER_TYPES, select_layers
from solvers.torch.sparse.pruning import masks_from_scores

__all__ = ["SSGD"]


class SSGD:
    """The SSGD gradient transform on an optimizer's step.

    Parameters
    ----------
    model : torch.nn.Module
    optimizer : torch.optim.Optimizer
        An SGD-type optimizer over the model's parameters.
    lam : float, default 1e-5
        Weight ``lam`` of the diversity measure (0 keeps only the scaling).
    eps : float, default 1e-4
        The log-sum offset; smaller is sparser. Compare it with the layer's
        mean ``theta^2`` (about 4e-4 for LeNet-300-100's first layer at
        initialisation): the penalty acts as weight decay with coefficient
        ``2 lam / mean(theta^2 + eps)``, which grows as the layer shrinks,
        up to ``2 lam / eps``, so a small ``eps`` with a large ``lam`` can
        collapse a layer. On LeNet-300-100 (SGD, lr 0.1) a validation split
        chose ``lam=1e-5, eps=1e-2`` over ``eps=1e-4`` (``benchmarks``).
    reweighting : {"l2", "l1"}, default "l2"
    include, exclude, min_numel
        Which weights are scaled (:func:`solvers.torch.select_layers`);
        biases and norms never are.

    Examples
    --------
    >>> import torch
    >>> from solvers.torch import SSGD
    >>> model = torch.nn.Linear(10, 3)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    >>> ssgd = SSGD(model, opt, lam=1e-4)
    >>> masks = ssgd.prune_masks(density=0.1)
    >>> int(masks["weight"].sum())
    3
    """

    _parameter_constraints: ClassVar[dict] = {
        "lam": [interval(Real, 0, None, closed="left")],
        "eps": [interval(Real, 0, None, closed="neither")],
        "reweighting": [StrOptions({"l2", "l1"})],
    }

    def __init__(
        self,
        model,
        optimizer,
        *,
        lam=1e-5,
        eps=1e-4,
        reweighting="l2",
        include=DEFAULT_LAYER_TYPES,
        exclude=None,
        min_numel=0,
    ):
        validate_params(
            self._parameter_constraints,
            {"lam": lam, "eps": eps, "reweighting": reweighting},
            "SSGD",
        )
        self.model = model
        self.optimizer = optimizer
        self.lam = float(lam)
        self.eps = float(eps)
        self.reweighting = reweighting
        self.params = select_layers(model, include, exclude, min_numel)
        optimised = {id(p) for group in optimizer.param_groups for p in group["params"]}
        for k, p in self.params.items():
            if id(p) not in optimised:
                raise ValueError(f"{k!r} is not optimised by the optimizer")
        self._handle = optimizer.register_step_pre_hook(self._transform)

    def _transform(self, optimizer, args, kwargs):
        # g <- (g w^2 + lam c w^2 dG) / mean(w^2) in place, one temporary per layer;
        # c: the loss scale still in a fused optimizer's gradients under GradScaler, else 1
        # a no_grad block, not a decorator: mutmut 3 leaves decorated functions unmutated
        with torch.no_grad():
            scale = amp_grad_scale(optimizer)
            for p in self.params.values():
                if p.grad is None:
                    continue
                if self.reweighting == "l2":  # w^2 = theta^2 + eps, penalty 2 theta
                    w2 = p.square().add_(self.eps)
                    mean = w2.mean()
                    p.grad.mul_(w2)
                    if scale is None:
                        p.grad.add_(p, alpha=2.0 * self.lam)
                    else:
                        p.grad.addcmul_(p, scale.to(p.dtype), value=2.0 * self.lam)
                else:  # w = |theta| + eps, penalty sign(theta) w
                    w = p.abs().add_(self.eps)
                    w2 = w.square()
                    mean = w2.mean()
                    sign = torch.sign(p) if scale is None else torch.sign(p).mul_(scale)
                    p.grad.mul_(w2).addcmul_(sign, w, value=self.lam)
                p.grad.div_(mean)

    def prune_masks(self, density, scope="global", distribution="uniform"):
        """Magnitude masks keeping ``density`` of the scaled weights."""
        scores = {k: p.detach().abs() for k, p in self.params.items()}
        return masks_from_scores(scores, density, scope, distribution)

    def remove(self):
        """Detach the transform from the optimizer."""
        self._handle.remove()
