# SPDX-License-Identifier: BSD-3-Clause
"""Running per-weight moments of a sequence of weight snapshots.

After ``n`` snapshots ``w_1 ... w_n`` of a set of tensors,
:class:`RunningMoments` holds, per entry,

- the mean ``mu_n = mu_{n-1} + (w_n - mu_{n-1}) / n`` (the running average
  of stochastic weight averaging, Izmailov et al. 2018, "Averaging weights
  leads to wider optima and better generalization", eq. 2; the same
  ``lerp`` as ``torch.optim.swa_utils.AveragedModel``);
- the sum of squared deviations
  ``M_n = M_{n-1} + (w_n - mu_{n-1}) (w_n - mu_n)`` (Welford 1962), so the
  variance ``sigma^2 = M_n / n`` is never the difference of two large
  second moments (SWAG's ``E[w^2] - E[w]^2`` loses every digit in float32
  when ``|w| >> sigma``). An entry equal at every snapshot (a masked weight
  that stays 0) has ``M_n = 0`` exactly;
- optionally the last ``K`` deviations ``w_n - mu_n`` (the columns of
  SWAG's ``D``, Maddox et al. 2019, "A simple baseline for Bayesian
  uncertainty in deep learning", §4.2), in a ring buffer.

One update is four ``_foreach`` kernels over all tensors (five with the
deviations); the counts are Python integers, so nothing waits for the device.
Statistics are kept in float32 (float64 for float64 tensors).
"""

from __future__ import annotations

import torch

__all__ = ["RunningMoments"]


def _stat_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


class RunningMoments:
    """Mean, variance and last ``rank`` deviations of snapshots of named tensors.

    Parameters
    ----------
    tensors : dict of str to torch.Tensor
        Templates (name -> tensor): shapes, devices and dtypes of the
        statistics.
    rank : int, default 0
        ``K``, the number of most recent deviations kept (0: none).

    Attributes
    ----------
    n : int
        Snapshots taken.
    mean, m2 : dict of str to torch.Tensor
        ``mu_n`` and ``M_n`` (module docstring).
    deviations : dict of str to torch.Tensor
        ``(rank, *shape)`` ring buffers; row ``(j - 1) % rank`` holds the
        deviation of snapshot ``j``.
    """

    def __init__(self, tensors, rank=0):
        self.rank = int(rank)
        self.n = 0
        self.mean = {k: torch.zeros_like(t, dtype=_stat_dtype(t.dtype)) for k, t in tensors.items()}
        self.m2 = {k: torch.zeros_like(m) for k, m in self.mean.items()}
        self.deviations = {
            k: m.new_zeros((self.rank, *m.shape)) for k, m in self.mean.items() if self.rank
        }

    @property
    def n_deviations(self):
        """How many rows of :attr:`deviations` hold a deviation (``min(n, rank)``)."""
        return min(self.n, self.rank)

    @torch.no_grad()
    def update_(self, tensors):
        """Add one snapshot (``{name: tensor}``, the names of the templates)."""
        names = list(self.mean)
        w = [tensors[k].detach().to(self.mean[k].dtype) for k in names]  # no copy when equal
        mean = [self.mean[k] for k in names]
        self.n += 1
        before = torch._foreach_sub(w, mean)  # w_n - mu_{n-1}
        torch._foreach_lerp_(mean, w, 1.0 / self.n)
        after = torch._foreach_sub(w, mean)  # w_n - mu_n
        torch._foreach_addcmul_([self.m2[k] for k in names], before, after)
        if self.rank:
            row = (self.n - 1) % self.rank
            rows = [self.deviations[k][row] for k in names]
            torch._foreach_copy_(rows, after)

    def variance(self):
        """``{name: M_n / n}``, the population variance of the snapshots (0 before any)."""
        if self.n == 0:
            return {k: torch.zeros_like(m) for k, m in self.m2.items()}
        return {k: m / self.n for k, m in self.m2.items()}

    # -- checkpoints --------------------------------------------------------------------------

    def state_dict(self):
        """Counts and tensors (clones): ``n``, ``rank``, ``mean``, ``m2``, ``deviations``."""
        return {
            "n": self.n,
            "rank": self.rank,
            "mean": {k: t.clone() for k, t in self.mean.items()},
            "m2": {k: t.clone() for k, t in self.m2.items()},
            "deviations": {k: t.clone() for k, t in self.deviations.items()},
        }

    def check_state(self, state, check_tensors):
        """Raise ``ValueError`` unless ``state`` fits (``check_tensors(what, given, expected)``)."""
        missing = {"n", "rank", "mean", "m2", "deviations"} - set(state)
        if missing:
            raise ValueError(f"state_dict moments lack {sorted(missing)}")
        n, rank = state["n"], state["rank"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"state_dict moments n must be an int >= 0; got {n!r}")
        if rank != self.rank:
            raise ValueError(
                f"state_dict keeps rank={rank!r} deviations, this ensemble keeps {self.rank}: "
                "build it with the saved rank"
            )
        check_tensors("mean", state["mean"], self.mean)
        check_tensors("m2", state["m2"], self.m2)
        check_tensors("deviations", state["deviations"], self.deviations)

    @torch.no_grad()
    def load_state_dict(self, state):
        """Copy a checked :meth:`state_dict` in place."""
        self.n = int(state["n"])
        for what in ("mean", "m2", "deviations"):
            mine = getattr(self, what)
            for k, t in state[what].items():
                mine[k].copy_(t)
