# SPDX-License-Identifier: BSD-3-Clause
"""Datasets for the benchmarks: scikit-learn's digits (built in), digits expanded by
seeded deformations (built in, :func:`expanded_digits`), a seeded smooth regression
of any size (built in, :func:`smooth_regression`) and MNIST (a file)."""

from dataclasses import dataclass

import numpy as np


@dataclass
class Dataset:
    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray

    @property
    def n_classes(self):
        return int(np.unique(self.y_train).shape[0])


#: the built-in names ``load`` accepts besides a path
BUILT_IN = ("digits", EXPANDED := "digits-expanded", SMOOTH := "smooth-regression")


def load(data=None, n_train=None, dtype=np.float32):
    """Digits when ``data`` is None, else the MNIST ``.npz`` at that path.

    ``data="digits-expanded"``: :func:`expanded_digits` (20000 training
    images, or ``n_train``). Pixels are scaled to [0, 1]. ``n_train`` keeps
    the first ``n_train`` training images; the test set is always whole (10k
    for MNIST, 360 digits, 5000 expanded digits).

    ``data="smooth-regression"``: :func:`smooth_regression` (1,000,000
    training rows, or ``n_train``; 20000 test rows), a regression: ``y`` is
    float, not a class.
    """
    if data == EXPANDED:
        return expanded_digits(n_train or 20000, dtype=dtype)
    if data == SMOOTH:
        return smooth_regression(n_train or 1_000_000, dtype=dtype)
    if data is None or data == "digits":
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        X, y = load_digits(return_X_y=True)
        X_tr, X_te, y_tr, y_te = train_test_split(
            X / 16.0, y, test_size=0.2, random_state=0, stratify=y
        )
        name = "digits"
    else:
        with np.load(data) as f:
            X_tr, y_tr = f["x_train"], f["y_train"]
            X_te, y_te = f["x_test"], f["y_test"]
        X_tr = X_tr.reshape(len(X_tr), -1) / 255.0
        X_te = X_te.reshape(len(X_te), -1) / 255.0
        name = "mnist"
    if n_train is not None:
        if n_train > len(X_tr):
            raise SystemExit(f"--n-train {n_train} exceeds the {len(X_tr)} training samples.")
        X_tr, y_tr = X_tr[:n_train], y_tr[:n_train]
    return Dataset(
        name,
        np.ascontiguousarray(X_tr, dtype=dtype),
        np.asarray(y_tr, dtype=np.int64),
        np.ascontiguousarray(X_te, dtype=dtype),
        np.asarray(y_te, dtype=np.int64),
    )


#: :func:`expanded_digits` draws its images in chunks of this many, each chunk
#: from its own seeded generator: a prefix of the images does not depend on
#: how many are drawn
CHUNK = 2000


def expanded_digits(
    n_train=20000, n_test=5000, *, size=16, seed=0, dtype=np.float32, return_sources=False
):
    """scikit-learn's digits, upsampled and expanded by seeded random deformations.

    The 1797 8 x 8 digits are split 80/20 (stratified, as :func:`load`);
    each is upsampled to ``size x size`` (bilinear), and every generated
    image is one original under a random affine map (rotation within
    +-12 degrees, scale 0.9-1.1, shear within +-0.15, shift within +-1 pixel
    of the 16-pixel grid) composed with a smooth elastic displacement
    (Simard, Steinkraus, Platt 2003: Gaussian-smoothed uniform noise, sigma 3,
    amplitude 1.5 pixels), resampled bilinearly. Training images come from
    the training originals only, test images from the held-out originals
    only. Nothing is downloaded or stored: the same ``seed`` gives the same
    images (about 1 s for 25000 on one core), and the first ``k`` images of
    each set do not depend on how many are drawn, so ``n_train`` keeps the
    test set and a prefix of the training set.

    Returns
    -------
    Dataset
        ``name="digits-expanded"``, ``size**2`` features in [0, 1].
    sources : tuple of arrays, only with ``return_sources``
        The index (into scikit-learn's digits) of each training and test
        image's original.
    """
    from scipy import ndimage
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    images = ndimage.zoom(X.reshape(-1, 8, 8) / 16.0, (1, size / 8, size / 8), order=1)
    images = np.clip(images, 0.0, 1.0)
    train, test = train_test_split(np.arange(len(y)), test_size=0.2, random_state=0, stratify=y)

    def generate(pool, count, split):
        parts = [
            _deform(images, pool, np.random.default_rng([seed, split, chunk]), size)
            for chunk in range(-(-count // CHUNK))
        ]
        warped = np.concatenate([w for w, _ in parts])[:count]
        sources = np.concatenate([s for _, s in parts])[:count]
        return np.clip(warped, 0.0, 1.0).astype(dtype), sources

    X_train, train_sources = generate(train, n_train, 0)
    X_test, test_sources = generate(test, n_test, 1)
    data = Dataset("digits-expanded", X_train, y[train_sources], X_test, y[test_sources])
    return (data, (train_sources, test_sources)) if return_sources else data


def _deform(images, pool, rng, size):
    """:data:`CHUNK` random deformations of originals drawn from ``pool`` (flattened)."""
    from scipy import ndimage

    count = CHUNK
    sources = rng.choice(pool, size=count)
    angle = np.deg2rad(rng.uniform(-12.0, 12.0, count))
    zoom = rng.uniform(0.9, 1.1, count)
    shear = rng.uniform(-0.15, 0.15, count)
    scale = size / 16.0
    shift = rng.uniform(-1.0, 1.0, (count, 2)) * scale
    cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
    # rotation @ shear / zoom, one 2 x 2 matrix per image
    A = np.stack([np.stack([cos, cos * shear - sin], 1), np.stack([sin, sin * shear + cos], 1)], 1)
    centre = (size - 1) / 2.0
    grid = np.mgrid[0:size, 0:size].reshape(2, -1) - centre  # (2, size^2): rows, columns
    coords = np.einsum("kij,jp->kip", A, grid) + centre + shift[:, :, None]
    noise = rng.uniform(-1.0, 1.0, (count, 2, size, size))
    field = ndimage.gaussian_filter(noise, (0, 0, 3.0 * scale, 3.0 * scale), mode="constant")
    peak = np.abs(field).max(axis=(2, 3), keepdims=True)
    field = 1.5 * scale * field / np.where(peak > 0, peak, 1.0)
    coords = coords + field.reshape(count, 2, -1)
    # one 3-d resampling: the image index is an exact integer coordinate
    index = np.broadcast_to(np.arange(count, dtype=np.float64)[:, None], (count, size * size))
    points = np.stack([index, coords[:, 0], coords[:, 1]])
    return ndimage.map_coordinates(images[sources], points, order=1, mode="constant"), sources


@dataclass
class RegressionDataset(Dataset):
    """A synthetic regression with a known teacher and noise (:func:`smooth_regression`).

    ``y_train``/``y_test`` are the teacher's values plus noise; ``f_test`` the
    teacher's noiseless values on ``X_test``. The Bayes risk (the test mean
    squared error of the teacher itself) is ``noise_variance``.
    """

    f_test: np.ndarray
    noise_variance: float
    teacher: "SmoothTeacher"

    @property
    def n_classes(self):
        raise AttributeError(f"{self.name} is a regression: it has no classes")


#: :func:`smooth_regression` draws its rows in chunks of this many, each chunk
#: from its own seeded generator
REGRESSION_CHUNK = 8192


class SmoothTeacher:
    """A random smooth function on the cube ``[0, 1]^d``: a sum of Gaussian bumps.

    .. math::

        f(x) = \\frac{1}{\\sigma_g}\\Big(\\sum_{k=1}^{K} a_k
               \\exp\\Big(-\\frac{\\lVert x - c_k \\rVert^2}{2 h_k^2}\\Big) - \\mu_g\\Big)

    with centres ``c_k`` uniform in the cube, widths ``h_k = r u_k``, where
    ``r = sqrt(d / 6)`` is the root-mean-square distance between two uniform
    points and ``u_k`` is log-uniform in ``widths`` (0.1-0.4 by default: each
    bump is narrower than the data's spread, so the function has detail that
    a few hundred Nyström features miss), and amplitudes
    ``a_k = z_k (h_k / max h)^decay`` with ``z_k`` standard normal (narrower
    bumps weigh less: the smoother parts carry most of the variance).
    ``mu_g`` and ``sigma_g`` are the sum's mean and standard deviation on 20000
    seeded uniform points, so ``f`` has mean about 0 and variance about 1 on the
    cube. A bump of width ``h`` lies in the RKHS of the Gaussian kernels of
    bandwidth below ``sqrt(2) h`` (its Fourier transform decays faster than
    theirs) and narrower ones are approximated as closely as the data allow:
    kernel ridge regression on 2000 rows leaves about 0.13 of the variance of
    ``f``, a linear model about 0.5 (``tests/benchmarks/test_million_suite.py``).

    Parameters
    ----------
    n_features : int
    n_bumps : int
    widths : (float, float)
        Range of the widths, as fractions of ``r``.
    decay : float
        Exponent of the amplitudes' decay with narrowness.
    rng : numpy.random.Generator
    """

    def __init__(self, n_features, n_bumps, widths, decay, rng):
        d = int(n_features)
        self.centres = rng.uniform(0.0, 1.0, (n_bumps, d))
        r = np.sqrt(d / 6.0)
        self.widths = r * np.exp(rng.uniform(np.log(widths[0]), np.log(widths[1]), n_bumps))
        self.amplitudes = rng.standard_normal(n_bumps) * (self.widths / self.widths.max()) ** decay
        self._centre_norms = np.einsum("kd,kd->k", self.centres, self.centres)
        self.mean, self.scale = 0.0, 1.0
        sample = self(rng.uniform(0.0, 1.0, (20000, d)))
        self.mean, self.scale = float(sample.mean()), float(sample.std())

    def __call__(self, X):
        """``f(X)`` in float64, for rows ``X`` of shape (n, d)."""
        X = np.asarray(X, dtype=np.float64)
        sq = np.einsum("nd,nd->n", X, X)[:, None] + self._centre_norms - 2.0 * X @ self.centres.T
        bumps = np.exp(-np.maximum(sq, 0.0) / (2.0 * self.widths**2))
        return (bumps @ self.amplitudes - self.mean) / self.scale


def smooth_regression(
    n_train=1_000_000,
    n_test=20000,
    *,
    n_features=32,
    n_bumps=300,
    widths=(0.1, 0.4),
    decay=1.0,
    noise_std=0.3,
    seed=0,
    dtype=np.float32,
):
    """A seeded regression ``y = f(x) + noise`` with a smooth random teacher, of any size.

    ``x`` is uniform in ``[0, 1]^d``; ``f`` a :class:`SmoothTeacher` (mean
    about 0, variance about 1); the noise is Gaussian with standard deviation
    ``noise_std``, so the Bayes risk (the teacher's own test mean squared
    error) is ``noise_std**2`` and the mean predictor's is about
    ``1 + noise_std**2``. ``f`` is evaluated on the features as stored (after
    the cast to ``dtype``).

    Rows are drawn in chunks of :data:`REGRESSION_CHUNK`, each from its own
    generator ``numpy.random.default_rng([seed, split, chunk])`` (split 0:
    training, 1: test; the teacher draws from ``[seed, 2]``): the same
    ``seed`` gives the same rows, the first ``k`` rows do not depend on how
    many are drawn (``n_train`` keeps a prefix), and the test set does not
    depend on ``n_train``. 1,000,000 x 32 float32 rows take about 10 s on one
    core; the memory is the output and one chunk's ``chunk x n_bumps``
    float64 matrix.

    Returns
    -------
    RegressionDataset
        ``name="smooth-regression"``; ``y`` float64.
    """
    teacher = SmoothTeacher(n_features, n_bumps, widths, decay, np.random.default_rng([seed, 2]))

    def generate(count, split):
        X = np.empty((count, n_features), dtype=dtype)
        y = np.empty(count)
        f = np.empty(count)
        for chunk, start in enumerate(range(0, count, REGRESSION_CHUNK)):
            stop = min(start + REGRESSION_CHUNK, count)
            rng = np.random.default_rng([seed, split, chunk])
            block = rng.uniform(0.0, 1.0, (REGRESSION_CHUNK, n_features)).astype(dtype)
            noise = rng.standard_normal(REGRESSION_CHUNK)
            X[start:stop] = block[: stop - start]
            f[start:stop] = teacher(X[start:stop])
            y[start:stop] = f[start:stop] + noise_std * noise[: stop - start]
        return X, y, f

    X_train, y_train, _ = generate(int(n_train), 0)
    X_test, y_test, f_test = generate(int(n_test), 1)
    return RegressionDataset(
        SMOOTH, X_train, y_train, X_test, y_test, f_test, float(noise_std) ** 2, teacher
    )
