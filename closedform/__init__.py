# SPDX-License-Identifier: BSD-3-Clause
"""Networks trained without gradients (closed-form layerwise solutions).

- :class:`StiefelSVC`: the adaptive squared-hinge SVM decision layer of the
  manifold neural network (Zhang, Jiao, Zhang, Li, TPAMI 2023), on any
  features; heads ``"stiefel"``, ``"gpi"``, ``"ridge"``.

The layerwise network (``ManifoldNetClassifier``) is not built yet.
"""

from closedform.stiefel_svc import StiefelSVC

__all__ = ["StiefelSVC"]
