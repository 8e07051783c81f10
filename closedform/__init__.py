# SPDX-License-Identifier: BSD-3-Clause
"""Networks trained without gradients (closed-form layerwise solutions).

- :class:`ManifoldNetClassifier`, :class:`ManifoldNetRegressor`: the manifold
  neural network (Zhang, Jiao, Zhang, Li, TPAMI 2023): invertible hidden
  layers fitted by ridge regression toward targets pulled back from the layer
  above, and a decision layer refitted on the current features.
- :class:`StiefelSVC`: the network's adaptive squared-hinge SVM decision
  layer on any features; heads ``"stiefel"``, ``"gpi"``, ``"ridge"``.
"""

from closedform.manifold_net import ManifoldNetClassifier, ManifoldNetRegressor
from closedform.stiefel_svc import StiefelSVC

__all__ = ["ManifoldNetClassifier", "ManifoldNetRegressor", "StiefelSVC"]
