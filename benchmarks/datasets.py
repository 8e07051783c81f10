# SPDX-License-Identifier: BSD-3-Clause
"""Datasets for the benchmarks: scikit-learn's digits (built in), digits expanded by
seeded deformations (built in, :func:`expanded_digits`) and MNIST (a file)."""

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
BUILT_IN = ("digits", EXPANDED := "digits-expanded")


def load(data=None, n_train=None, dtype=np.float32):
    """Digits when ``data`` is None, else the MNIST ``.npz`` at that path.

    ``data="digits-expanded"``: :func:`expanded_digits` (20000 training
    images, or ``n_train``). Pixels are scaled to [0, 1]. ``n_train`` keeps
    the first ``n_train`` training images; the test set is always whole (10k
    for MNIST, 360 digits, 5000 expanded digits).
    """
    if data == EXPANDED:
        return expanded_digits(n_train or 20000, dtype=dtype)
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
