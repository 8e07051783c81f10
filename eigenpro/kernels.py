# SPDX-License-Identifier: BSD-3-Clause
"""Kernels as small objects.

A kernel knows how to fill a block ``K[i, j] = k(x_i, z_j)`` in place, in any
array namespace. The radial kernels here are functions of the scaled squared
distance ``u = |x - z|^2 / s^2`` with bandwidth ``s``:

===========  ==========================================  =================
name         k(x, z)                                     default bandwidth
===========  ==========================================  =================
gaussian     ``exp(-|x-z|^2 / (2 s^2))`` = exp(-u/2)     r / 2
laplacian    ``exp(-|x-z| / s)`` = exp(-sqrt(u))         r
cauchy       ``1 / (1 + |x-z|^2 / s^2)`` = 1/(1+u)       r / 2
matern32     ``(1 + t) exp(-t)``, t = sqrt(3u)           r / 2
matern52     ``(1 + t + t^2/3) exp(-t)``, t = sqrt(5u)   r / 2
===========  ==========================================  =================

Squared distances are computed with one matrix product,
``|x|^2 + |z|^2 - 2 x.z``, and clamped at zero, because rounding makes that
expression slightly negative for nearby points.

Default bandwidth (``bandwidth=None`` or ``"auto"``): a multiple of the
root-mean-square distance between two samples, ``r = sqrt(2 sum_j Var X_j)``
(an exact identity for independent draws, computed in O(n d)). On MNIST pixels
in [0, 1], ``r`` is about 10.3, so the defaults are ``s`` = 5.1 (Gaussian) and
10.3 (Laplacian), the bandwidths the EigenPro papers use there (5 and 10).
"""

from __future__ import annotations

import math
from numbers import Real

from solvers._validation import Options, check_positive, validate_params
from solvers.backend import (
    get_namespace_and_device,
    inplace,
    map_row_chunks_,
    matmul_into,
    to_namespace,
)

__all__ = [
    "Cauchy",
    "Gaussian",
    "Kernel",
    "Laplacian",
    "Matern",
    "check_kernel_diagonal",
    "make_kernel",
    "rms_distance",
]


def check_kernel_diagonal(diagonal):
    """Raise a ValueError when ``k(x, x) < 0`` somewhere: the kernel is not positive semi-definite.

    A negative diagonal entry is the cheapest proof; without this check such a
    kernel surfaces as a "zero" kernel matrix or as a divergence after every
    step halving, which point at the bandwidth instead.
    """
    xp, _ = get_namespace_and_device(diagonal)
    smallest = float(xp.min(diagonal))
    if smallest < 0.0:
        raise ValueError(
            f"The kernel is not positive semi-definite: k(x, x) = {smallest:.3g} < 0 for a "
            "training point. EigenPro (and kernel ridge regression) need a positive "
            "semi-definite kernel."
        )


def rms_distance(X, max_samples=20000):
    """Root-mean-square distance between two rows of ``X``: sqrt(2 sum_j Var X_j).

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    max_samples : int, default=20000
        At most this many rows, evenly strided through ``X``, are used.

    Returns
    -------
    float
    """
    xp, _ = get_namespace_and_device(X)
    step = -(-X.shape[0] // max_samples)  # strided: rows sorted by class stay fair
    Xs = X[::step, :]
    Xs = xp.astype(Xs, xp.float64) if not xp.isdtype(Xs.dtype, "real floating") else Xs
    centred = Xs - xp.mean(Xs, axis=0)
    total_var = float(xp.sum(centred * centred)) / max(Xs.shape[0], 1)
    return math.sqrt(2.0 * total_var)


def squared_norms(X):
    """Row-wise squared Euclidean norms of ``X``."""
    xp, _ = get_namespace_and_device(X)
    return xp.sum(X * X, axis=1)


class Kernel:
    """Base class of kernels.

    Subclasses implement :meth:`block`; ``kernel(X, Z)`` returns the dense
    matrix. Kernels are plain picklable objects, compared by their parameters.
    """

    #: Keyword names of the parameters, for ``repr`` and equality.
    _params: tuple[str, ...] = ()

    def __call__(self, X, Z=None):
        """Kernel matrix ``K[i, j] = k(X[i], Z[j])`` (``Z = X`` when None)."""
        Z = X if Z is None else Z
        xp, device = get_namespace_and_device(X)
        out = xp.empty((X.shape[0], Z.shape[0]), dtype=X.dtype, device=device)
        return self.block(X, Z, out=out)

    def prepare(self, Z):
        """Per-center quantities reused by every :meth:`block` call (or None)."""
        return None

    def block(self, X, Z, *, x_state=None, z_state=None, out=None):
        """Fill ``out`` with ``k(X[i], Z[j])`` and return it.

        Parameters
        ----------
        X : array of shape (m, d)
        Z : array of shape (n, d)
        x_state, z_state : object, default=None
            What :meth:`prepare` returned for ``X`` and ``Z`` (recomputed when
            None).
        out : array of shape (m, n), default=None
            Preallocated output (possibly a strided view of a larger matrix).
        """
        raise NotImplementedError

    def with_bandwidth(self, bandwidth):
        """A copy of this kernel with another bandwidth (kernels without one: self)."""
        return self

    def default_bandwidth(self, X):
        """Bandwidth chosen from the data when the user gives none."""
        return None

    def __repr__(self):
        args = ", ".join(f"{p}={getattr(self, p)!r}" for p in self._params)
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and all(
            getattr(self, p) == getattr(other, p) for p in self._params
        )

    def __hash__(self):
        return hash((type(self).__name__, *(getattr(self, p) for p in self._params)))


class RadialState:
    """Centers shifted to their mean, with their squared norms.

    Distances do not change under a common shift, but the rounding of
    ``|x|^2 + |z|^2 - 2 x.z`` does: with data far from the origin (raw pixel
    values, say) float32 loses every digit of small distances. Shifting both
    sides by the centers' mean first keeps the norms as small as the spread of
    the data allows. Indexing (a slice or an index array) selects rows.
    """

    def __init__(self, centered, sq_norms, shift):
        self.centered = centered
        self.sq_norms = sq_norms
        self.shift = shift

    @classmethod
    def from_points(cls, Z, shift=None):
        xp, _ = get_namespace_and_device(Z)
        if shift is None:
            shift = xp.mean(Z, axis=0)
        centered = Z - shift
        return cls(centered, squared_norms(centered), shift)

    def __getitem__(self, rows):
        if isinstance(rows, slice):
            return RadialState(self.centered[rows, :], self.sq_norms[rows], self.shift)
        xp, _ = get_namespace_and_device(self.centered)
        return RadialState(
            xp.take(self.centered, rows, axis=0), xp.take(self.sq_norms, rows, axis=0), self.shift
        )


class RadialKernel(Kernel):
    """A kernel ``k(x, z) = phi(|x - z|^2 / s^2)`` with bandwidth ``s``.

    Subclasses define ``profile_(u, xp)``, which overwrites the scaled squared
    distances ``u`` with ``phi(u)``, and ``bandwidth_factor``, the multiple of
    :func:`rms_distance` used as default bandwidth.
    """

    _params = ("bandwidth",)
    bandwidth_factor = 0.5

    def __init__(self, bandwidth=None):
        if bandwidth is not None:
            bandwidth = check_positive("bandwidth", bandwidth, owner=type(self).__name__)
        self.bandwidth = bandwidth

    def with_bandwidth(self, bandwidth):
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.bandwidth = check_positive("bandwidth", bandwidth, owner=type(self).__name__)
        return clone

    def default_bandwidth(self, X):
        r = rms_distance(X)
        return self.bandwidth_factor * r if r > 0 else 1.0

    def prepare(self, Z):
        return RadialState.from_points(Z)

    def block(self, X, Z, *, x_state=None, z_state=None, out=None):
        if self.bandwidth is None:
            raise ValueError(f"{self!r} has no bandwidth; give one or use with_bandwidth().")
        xp, device = get_namespace_and_device(X)
        if z_state is None:
            z_state = RadialState.from_points(to_namespace(Z, xp, device))
        if x_state is None:
            x_state = RadialState.from_points(X, shift=z_state.shift)
        if out is None:
            out = xp.empty((X.shape[0], Z.shape[0]), dtype=X.dtype, device=device)
        inv_s2 = 1.0 / (self.bandwidth * self.bandwidth)
        x_sq = x_state.sq_norms * inv_s2
        z_row = (z_state.sq_norms * inv_s2)[None, :]
        # u = (|x|^2 + |z|^2 - 2 x.z) / s^2 on mean-shifted points: one GEMM on
        # the pre-scaled rows, then the element-wise passes, chunked so that
        # they run in cache on every core.
        matmul_into(x_state.centered * (-2.0 * inv_s2), z_state.centered.T, out)

        def finish(chunk, start, stop):
            chunk += x_sq[start:stop, None]
            chunk += z_row
            chunk = inplace(xp, chunk, "maximum", 0.0)
            self.profile_(chunk, xp)

        map_row_chunks_(finish, out)
        return out

    def profile_(self, u, xp):
        raise NotImplementedError


class Gaussian(RadialKernel):
    """Gaussian (RBF) kernel ``exp(-|x - z|^2 / (2 s^2))``.

    Parameters
    ----------
    bandwidth : float, default=None
        The length scale ``s`` (> 0); None lets the estimator choose
        ``rms_distance(X) / 2``. scikit-learn's ``gamma`` is ``1 / (2 s^2)``.
    """

    bandwidth_factor = 0.5

    def profile_(self, u, xp):
        u *= -0.5
        inplace(xp, u, "exp")


class Laplacian(RadialKernel):
    """Laplacian kernel ``exp(-|x - z| / s)``.

    Parameters
    ----------
    bandwidth : float, default=None
        The length scale ``s`` (> 0); None lets the estimator choose
        ``rms_distance(X)``.
    """

    bandwidth_factor = 1.0

    def profile_(self, u, xp):
        inplace(xp, u, "sqrt")
        u *= -1.0
        inplace(xp, u, "exp")


class Cauchy(RadialKernel):
    """Cauchy kernel ``1 / (1 + |x - z|^2 / s^2)``.

    Parameters
    ----------
    bandwidth : float, default=None
        The length scale ``s`` (> 0); None lets the estimator choose
        ``rms_distance(X) / 2``.
    """

    bandwidth_factor = 0.5

    def profile_(self, u, xp):
        u += 1.0
        inplace(xp, u, "reciprocal")


class Matern(RadialKernel):
    """Matérn kernel with smoothness ``nu`` in {0.5, 1.5, 2.5}.

    ``nu=0.5`` is the Laplacian kernel, ``nu=1.5`` is ``(1 + t) exp(-t)`` with
    ``t = sqrt(3) |x - z| / s``, ``nu=2.5`` is ``(1 + t + t^2 / 3) exp(-t)`` with
    ``t = sqrt(5) |x - z| / s`` (Rasmussen & Williams 2006, eq. 4.17).

    Parameters
    ----------
    bandwidth : float, default=None
        The length scale ``s`` (> 0); None lets the estimator choose
        ``rms_distance(X) / 2``.
    nu : {0.5, 1.5, 2.5}, default=1.5
    """

    _params = ("bandwidth", "nu")

    def __init__(self, bandwidth=None, nu=1.5):
        super().__init__(bandwidth)
        validate_params({"nu": [Options(Real, {0.5, 1.5, 2.5})]}, {"nu": nu}, "Matern")
        self.nu = float(nu)

    @property
    def bandwidth_factor(self):
        return 1.0 if self.nu == 0.5 else 0.5

    def profile_(self, u, xp):
        inplace(xp, u, "sqrt")
        if self.nu == 0.5:
            u *= -1.0
            inplace(xp, u, "exp")
            return
        u *= math.sqrt(2.0 * self.nu)  # t
        decay = inplace(xp, -u, "exp")
        if self.nu == 1.5:
            u += 1.0
        else:
            poly = u * u
            poly *= 1.0 / 3.0
            poly += u
            poly += 1.0
            u[...] = poly
        u *= decay


class CallableKernel(Kernel):
    """Wrap a user function ``f(X, Z) -> K`` as a kernel.

    The function receives arrays of the input's namespace and must return the
    ``(len(X), len(Z))`` kernel matrix in that namespace. It must be symmetric
    positive semi-definite for EigenPro to converge.
    """

    _params = ("function",)

    def __init__(self, function):
        validate_params({"function": [callable]}, {"function": function}, "CallableKernel")
        self.function = function

    def block(self, X, Z, *, x_state=None, z_state=None, out=None):
        xp, device = get_namespace_and_device(X)
        K = to_namespace(self.function(X, Z), xp, device)
        if tuple(K.shape) != (X.shape[0], Z.shape[0]):
            raise ValueError(
                f"The kernel function returned shape {tuple(K.shape)} for inputs with "
                f"{X.shape[0]} and {Z.shape[0]} rows; expected ({X.shape[0]}, {Z.shape[0]})."
            )
        if K.dtype != X.dtype:
            K = xp.astype(K, X.dtype)
        if out is None:
            return K
        out[...] = K
        return out


_KERNELS = {
    "gaussian": Gaussian,
    "rbf": Gaussian,
    "laplacian": Laplacian,
    "laplace": Laplacian,
    "cauchy": Cauchy,
    "matern32": lambda bandwidth=None: Matern(bandwidth, nu=1.5),
    "matern52": lambda bandwidth=None: Matern(bandwidth, nu=2.5),
}

KERNEL_NAMES = tuple(sorted(_KERNELS))

#: What a ``kernel`` parameter accepts (names are checked by :func:`make_kernel`,
#: case-insensitively, with the list of names in its message).
KERNEL_CONSTRAINT = [str, Kernel, callable]


def make_kernel(kernel, bandwidth=None):
    """Build a :class:`Kernel` from a name, a Kernel instance or a callable.

    Parameters
    ----------
    kernel : str, Kernel or callable
        One of ``KERNEL_NAMES``, a :class:`Kernel` (used as given; its own
        bandwidth wins over ``bandwidth`` when it has one), or a function
        ``f(X, Z) -> K``.
    bandwidth : float, default=None
        Bandwidth for named kernels (None: keep it unset).

    Returns
    -------
    Kernel
    """
    if isinstance(kernel, Kernel):
        if bandwidth is not None and getattr(kernel, "bandwidth", 1.0) is None:
            return kernel.with_bandwidth(bandwidth)
        return kernel
    if isinstance(kernel, str):
        try:
            factory = _KERNELS[kernel.lower()]
        except KeyError:
            raise ValueError(
                f"Unknown kernel {kernel!r}; use one of {', '.join(KERNEL_NAMES)}, a "
                "eigenpro.kernels.Kernel instance or a callable f(X, Z) -> K."
            ) from None
        return factory(bandwidth)
    if callable(kernel):
        return CallableKernel(kernel)
    raise ValueError(
        f"kernel must be a name ({', '.join(KERNEL_NAMES)}), a Kernel or a callable; "
        f"got {kernel!r}."
    )
