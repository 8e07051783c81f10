# SPDX-License-Identifier: BSD-3-Clause
"""Ensembles from the distribution of the weights at the end of training.

Members are networks whose weights are drawn from a per-weight distribution
estimated from the iterates late in training (Liu, Tripathi, Kurup, Shah
2018, "Make (nearly) every neural network better: generating neural network
ensembles by weight parameter resampling", arXiv 1807.00847: for a
pre-trained network, an extra training phase of usually less than one epoch
suffices). The distribution is SWAG's (Maddox, Izmailov, Garipov, Vetrov,
Wilson 2019, "A simple baseline for Bayesian uncertainty in deep learning",
§4): a Gaussian with the iterates' mean ``mu`` (the SWA solution) and
covariance ``scale * (diag(sigma^2) + D D^T / (K - 1))``, where ``sigma^2``
is the iterates' per-weight variance and ``D`` holds the last ``K``
deviations ``w_i - mu_i``. A member is

    w = mu + sqrt(scale) * (sigma * z1 + D z2 / sqrt(K - 1)),
    z1 ~ N(0, I_d), z2 ~ N(0, I_K)

(SWAG's Eq. after §4.2; ``scale = 1/2`` is the paper's
``Sigma = (Sigma_diag + Sigma_lowrank) / 2``, and its default). With
``rank=0`` it is SWAG-diagonal, the per-parameter Gaussian resampling of Liu
et al.

:class:`ParameterEnsemble` hangs on the optimizer's step post-hook (as the
sparse controllers of :mod:`solvers.torch.sparse` do), so the training loop,
LR schedulers, ``GradScaler`` (skipped steps are not collected), DDP (every
rank holds the same weights, hence the same statistics) and closures are
unchanged. Collection costs five ``_foreach`` kernels per collected step and
no host synchronisation; memory is ``(2 + K)`` float32 copies of the weights.
"""

from __future__ import annotations

import contextlib
import math
from numbers import Integral, Real
from typing import ClassVar

import torch

from solvers._validation import interval, validate_params
from solvers.torch.ensemble.moments import RunningMoments
from solvers.torch.sparse.amp import amp_step_skipped
from solvers.torch.sparse.controller import check_state_tensors

__all__ = ["ParameterEnsemble"]


class ParameterEnsemble:
    """Collect the weight distribution on a ``torch.optim`` optimizer's steps; sample members.

    The weights after optimizer step ``t`` (counted from attachment; steps
    skipped by ``GradScaler`` do not count) are collected when ``t > start``
    and ``t - start`` is a multiple of ``every``; :meth:`collect` adds the
    current weights by hand (for example once per epoch, as SWAG does).

    Parameters
    ----------
    model : torch.nn.Module
    optimizer : torch.optim.Optimizer
        The optimizer training ``model``; the model's parameters it optimises
        are the ones described (frozen parameters keep their value in every
        member).
    start : int, default 0
        Optimizer steps before the first collection. For a pre-trained model,
        attach with ``start=0`` and train a short extra phase (usually under
        one epoch, Liu et al.) with a constant learning rate.
    every : int, default 1
        Optimizer steps between collections.
    rank : int, default 0
        ``K``, the number of most recent deviations kept for SWAG's low-rank
        part (SWAG uses 20); 0 gives SWAG-diagonal.
    scale : float, default 0.5
        Multiplies the covariance (module docstring); 0 gives the mean (SWA).
    masks : dict of str to torch.Tensor or object with ``masks``, optional
        Boolean masks by parameter name, or a sparse controller
        (:class:`~solvers.torch.DynamicSparsity`, ...) whose current
        ``masks`` are read at sampling time. Members are zero where a mask is
        (zero variance and zero value: the sparse network's weights). A
        weight exactly 0 at every collected step has zero variance without a
        mask.
    seed : int, default 0
        Seeds :meth:`sample`'s own generator (its state is in
        :meth:`state_dict`) and the members of :meth:`predict`.

    Attributes
    ----------
    params : dict of str to torch.nn.Parameter
        The weights described, by qualified name.
    moments : RunningMoments
        Mean, variance and deviations of the collected weights.
    step_count : int
        Optimizer steps since attachment.

    Examples
    --------
    >>> import torch
    >>> from solvers.torch import ParameterEnsemble
    >>> _ = torch.manual_seed(0)
    >>> X, y = torch.randn(256, 10), torch.randint(0, 3, (256,))
    >>> model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(),
    ...                             torch.nn.Linear(32, 3))
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    >>> ensemble = ParameterEnsemble(model, opt, start=60, rank=5)
    >>> for step in range(80):
    ...     i = 32 * (step % 8)
    ...     opt.zero_grad()
    ...     torch.nn.functional.cross_entropy(model(X[i:i + 32]), y[i:i + 32]).backward()
    ...     opt.step()
    >>> ensemble.n_collected
    20
    >>> proba = ensemble.predict(X, n_samples=8)
    >>> proba.shape, bool(torch.allclose(proba.sum(1), torch.ones(256)))
    (torch.Size([256, 3]), True)
    """

    _parameter_constraints: ClassVar[dict] = {
        "start": [interval(Integral, 0, None, closed="left")],
        "every": [interval(Integral, 1, None, closed="left")],
        "rank": [interval(Integral, 0, None, closed="left")],
        "scale": [interval(Real, 0, None, closed="left")],
        "seed": [Integral],
    }

    def __init__(
        self, model, optimizer, *, start=0, every=1, rank=0, scale=0.5, masks=None, seed=0
    ):
        validate_params(
            self._parameter_constraints,
            {"start": start, "every": every, "rank": rank, "scale": scale, "seed": seed},
            "ParameterEnsemble",
        )
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.optimizer = optimizer
        self.params = _optimised_params(model, optimizer)
        self._masks = _check_masks(masks, self.params)
        self.start, self.every, self.rank = int(start), int(every), int(rank)
        self.scale, self.seed = float(scale), int(seed)
        self.moments = RunningMoments(self.params, self.rank)
        self.step_count = 0
        self.generator = torch.Generator().manual_seed(self.seed)
        self._skipped = False
        self._handles = [
            optimizer.register_step_pre_hook(self._pre_step),
            optimizer.register_step_post_hook(self._post_step),
        ]

    # -- collection ---------------------------------------------------------------------------

    def _pre_step(self, optimizer, args, kwargs):
        self._skipped = amp_step_skipped(optimizer)

    def _post_step(self, optimizer, args, kwargs):
        if self._skipped:  # a fused optimizer skipped the step for GradScaler
            return
        self.step_count += 1
        t = self.step_count - self.start
        if t > 0 and t % self.every == 0:
            self.collect()

    def collect(self):
        """Add the model's current weights to the statistics."""
        self.moments.update_(self.params)

    @property
    def n_collected(self):
        """Weight snapshots collected so far."""
        return self.moments.n

    def remove(self):
        """Detach the hooks (the statistics stay usable)."""
        for h in self._handles:
            h.remove()
        self._handles = []

    # -- the distribution ---------------------------------------------------------------------

    def _require_moments(self, what):
        if self.moments.n == 0:
            raise RuntimeError(
                f"ParameterEnsemble.{what}: no weights have been collected yet (collection "
                f"starts after optimizer step {self.start} + {self.every}; "
                f"{self.step_count} steps so far). Train further or call collect() first."
            )

    def masks(self):
        """The current boolean masks by name (empty without ``masks=``)."""
        source = self._masks
        if source is None:
            return {}
        return dict(source.masks if hasattr(source, "masks") else source)

    def mean(self):
        """``{name: mu}``, the SWA weights, in the parameters' dtypes (masked to 0)."""
        self._require_moments("mean()")
        return self._finish({k: m.clone() for k, m in self.moments.mean.items()})

    def variance(self):
        """``{name: sigma^2}``, the variance of the collected weights (0 where masked)."""
        self._require_moments("variance()")
        var = self.moments.variance()
        for k, m in self.masks().items():
            var[k].mul_(m.to(device=var[k].device, dtype=var[k].dtype))
        return var

    @torch.no_grad()
    def sample(self, generator=None, *, scale=None):
        """Draw one member's weights ``mu + sqrt(scale) (sigma z1 + D z2 / sqrt(K - 1))``.

        Parameters
        ----------
        generator : torch.Generator, optional
            CPU generator of the normal draws; default: the ensemble's own,
            seeded with ``seed`` (consecutive calls draw different members).
        scale : float, optional
            Overrides the ensemble's ``scale``.

        Returns
        -------
        dict of str to torch.Tensor
            Weights by parameter name (parameters' devices and dtypes); load
            them with :meth:`loaded`.
        """
        self._require_moments("sample()")
        scale = self.scale if scale is None else _check_scale(scale)
        generator = self.generator if generator is None else generator
        m = self.moments
        k_dev = m.n_deviations
        z2 = None
        if k_dev >= 2:  # the low-rank part needs two deviations (its 1 / (K - 1))
            z2 = torch.randn(k_dev, generator=generator, dtype=torch.float64)
        root = math.sqrt(scale)
        out = {}
        for name, mu in m.mean.items():
            z1 = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
            noise = (m.m2[name] / m.n).sqrt_().mul_(z1)
            if z2 is not None:
                d = m.deviations[name][:k_dev].reshape(k_dev, -1)
                low = (z2.to(device=d.device, dtype=d.dtype) @ d).reshape(mu.shape)
                noise.add_(low, alpha=1.0 / math.sqrt(k_dev - 1))
            out[name] = mu + root * noise
        return self._finish(out)

    def _finish(self, weights):
        """Mask and cast to the parameters' dtypes."""
        for k, mask in self.masks().items():
            weights[k].mul_(mask.to(device=weights[k].device, dtype=weights[k].dtype))
        return {k: w.to(self.params[k].dtype) for k, w in weights.items()}

    # -- members --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def loaded(self, weights):
        """Context manager: the model holds ``weights``; its own weights and buffers come back.

        ``weights`` is ``{name: tensor}`` (from :meth:`sample` or :meth:`mean`).
        Buffers (BatchNorm statistics) changed inside are restored too.
        """
        unknown = set(weights) - set(self.params)
        if unknown:
            raise ValueError(
                f"weights name parameters the ensemble does not hold: {sorted(unknown)}"
            )
        own = {k: p.detach().clone() for k, p in self.params.items()}
        buffers = [(b, b.clone()) for b in self.model.buffers()]
        try:
            with torch.no_grad():
                for k, w in weights.items():
                    self.params[k].copy_(w)
            yield self.model
        finally:
            with torch.no_grad():
                for k, w in own.items():
                    self.params[k].copy_(w)
                for b, saved in buffers:
                    b.copy_(saved)

    @torch.no_grad()
    def predict(
        self, inputs, n_samples=30, *, bn_loader=None, generator=None, batch_size=None, scale=None
    ):
        """Class probabilities averaged over ``n_samples`` members.

        Parameters
        ----------
        inputs : torch.Tensor or iterable
            A tensor of inputs, or an iterable of batches (tensors, or
            tuples/lists whose first element is the input, as a
            ``DataLoader`` of ``(x, y)`` yields).
        n_samples : int, default 30
            Members drawn (SWAG's default).
        bn_loader : iterable, optional
            Training batches (same forms as ``inputs``) over which each
            member's BatchNorm running statistics are recomputed (a
            cumulative average, as ``torch.optim.swa_utils.update_bn``)
            before it predicts; without it every member uses the model's
            current statistics, which fit the trained weights, not the
            member's.
        generator : torch.Generator, optional
            CPU generator of the members; default: a fresh one seeded with
            ``seed``, so repeated calls use the same members.
        batch_size : int, optional
            Rows of a tensor ``inputs`` per forward; default all at once.
        scale : float, optional
            Overrides the ensemble's ``scale`` (for example to choose it on
            held-out data).

        Returns
        -------
        torch.Tensor
            ``(n, n_classes)`` mean of ``softmax(model(x))`` over members
            (the model must return logits), on the model's device.

        Notes
        -----
        The model is in eval mode while predicting and its weights, buffers
        and train/eval mode are restored afterwards.
        """
        validate_params(
            {
                "n_samples": [interval(Integral, 1, None, closed="left")],
                "batch_size": [interval(Integral, 1, None, closed="left"), None],
            },
            {"n_samples": n_samples, "batch_size": batch_size},
            "ParameterEnsemble.predict",
        )
        self._require_moments("predict()")
        scale = self.scale if scale is None else _check_scale(scale)
        if generator is None:
            generator = torch.Generator().manual_seed(self.seed)
        device = next(iter(self.params.values())).device
        total = None
        was_training = self.model.training
        try:
            for _ in range(n_samples):
                with self.loaded(self.sample(generator, scale=scale)):
                    if bn_loader is not None:
                        refresh_batchnorm_(self.model, bn_loader, device)
                    self.model.eval()
                    proba = _forward_proba(self.model, inputs, device, batch_size)
                    self.model.train(was_training)
                total = proba if total is None else total.add_(proba)
        finally:
            self.model.train(was_training)
        return total.div_(n_samples)

    # -- checkpoints --------------------------------------------------------------------------

    def state_dict(self):
        """Step, moments and the sampling generator's state."""
        return {
            "step_count": self.step_count,
            "moments": self.moments.state_dict(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state):
        """Restore :meth:`state_dict` in place; all checked before anything changes.

        A state from another model or with another ``rank`` raises
        ``ValueError`` and leaves the ensemble as it was.
        """
        if not isinstance(state, dict):
            raise ValueError(f"state_dict must be a dict; got {type(state).__name__}")
        missing = {"step_count", "moments", "generator"} - set(state)
        if missing:
            raise ValueError(
                f"state_dict lacks {sorted(missing)} (not from ParameterEnsemble.state_dict())"
            )
        count = state["step_count"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"state_dict step_count must be an int >= 0; got {count!r}")
        if not isinstance(state["moments"], dict):
            raise ValueError("state_dict moments must be a dict")
        self.moments.check_state(state["moments"], check_state_tensors)
        rng = state["generator"]
        if not torch.is_tensor(rng) or rng.dtype != torch.uint8:
            raise ValueError("state_dict generator must be a torch.Generator state (uint8 tensor)")
        probe = torch.Generator()
        try:
            probe.set_state(rng)
        except RuntimeError as err:
            raise ValueError(f"state_dict generator is not a CPU generator state: {err}") from err
        self.moments.load_state_dict(state["moments"])
        self.step_count = int(count)
        self.generator.set_state(rng)


def _check_scale(scale):
    validate_params(
        {"scale": ParameterEnsemble._parameter_constraints["scale"]},
        {"scale": scale},
        "ParameterEnsemble.sample",
    )
    return float(scale)


def _optimised_params(model, optimizer):
    """``{name: parameter}`` of the model's parameters the optimizer optimises."""
    optimised = {id(p) for group in optimizer.param_groups for p in group["params"]}
    out = {
        name: p
        for name, p in model.named_parameters()
        if id(p) in optimised and p.dtype.is_floating_point
    }
    if not out:
        raise ValueError("the optimizer optimises none of the model's (floating-point) parameters")
    return out


def _check_masks(masks, params):
    if masks is None:
        return None
    table = masks.masks if hasattr(masks, "masks") else masks
    if not isinstance(table, dict):
        raise TypeError(
            "masks must be a dict {parameter name: bool tensor} or a sparse controller; got "
            f"{type(masks).__name__}"
        )
    for name, m in table.items():
        if name not in params:
            raise ValueError(f"masks name {name!r}, not a parameter the ensemble describes")
        if not torch.is_tensor(m) or m.shape != params[name].shape:
            shape = tuple(m.shape) if torch.is_tensor(m) else type(m).__name__
            raise ValueError(f"mask of {name!r} has shape {shape}, not {tuple(params[name].shape)}")
    if hasattr(masks, "masks"):
        return masks  # a controller: its masks change in place, read them when sampling
    return {k: m.to(dtype=torch.bool).clone() for k, m in table.items()}


def _batches(inputs):
    for batch in inputs:
        yield batch[0] if isinstance(batch, (list, tuple)) else batch


@torch.no_grad()
def refresh_batchnorm_(model, loader, device=None):
    """Recompute the BatchNorm running statistics of ``model`` over ``loader``, in place.

    The statistics are reset and re-estimated as a cumulative average over
    the batches (``momentum=None``) in train mode, under ``no_grad``: the
    procedure of ``torch.optim.swa_utils.update_bn``, which SWA and SWAG need
    because averaged or sampled weights do not match the statistics
    collected along the trajectory. The model's mode and the layers'
    momenta are restored.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    was_training = model.training
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        for x in _batches(loader):
            model(x if device is None else x.to(device))
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.train(was_training)


def _forward_proba(model, inputs, device, batch_size):
    if torch.is_tensor(inputs):
        x = inputs.to(device)
        size = batch_size or max(len(x), 1)
        chunks = [x[i : i + size] for i in range(0, len(x), size)]
    else:
        chunks = (x.to(device) for x in _batches(inputs))
    out = [torch.softmax(model(x).float(), dim=1) for x in chunks]
    if not out:
        raise ValueError("predict() got no inputs")
    return torch.cat(out)
