# SPDX-License-Identifier: BSD-3-Clause
"""Datasets for the benchmarks: scikit-learn's digits (built in) and MNIST (a file)."""

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


def load(data=None, n_train=None, dtype=np.float32):
    """Digits when ``data`` is None, else the MNIST ``.npz`` at that path.

    Pixels are scaled to [0, 1]. ``n_train`` keeps the first ``n_train``
    training images; the test set is always whole (10k for MNIST, 360 digits).
    """
    if data is None:
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
