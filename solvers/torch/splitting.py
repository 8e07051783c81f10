# SPDX-License-Identifier: BSD-3-Clause
"""Compatibility shim: neuron splitting moved to :mod:`solvers.torch.growth`.

:class:`NeuronSplitting` is in :mod:`solvers.torch.growth.splitting`, layer
checks in :mod:`~solvers.torch.growth.splittable`, the splitting matrices in
:mod:`~solvers.torch.growth.splitting_matrix` and their eigenpairs in
:mod:`~solvers.torch.growth.split_eigen`.
"""

from solvers.torch.growth.split_eigen import SplitEigen
from solvers.torch.growth.split_eigen import eigen_of as _eigen_of
from solvers.torch.growth.split_eigen import exact_eigen as _exact_eigen
from solvers.torch.growth.split_eigen import lanczos_eigen as _lanczos_eigen
from solvers.torch.growth.splittable import (
    _CHANNEL_PASS_THROUGH,
    _PASS_THROUGH,
    _WEIGHTED,
    _next_layer,
    splittable_layers,
)
from solvers.torch.growth.splittable import REQUIREMENT as _REQUIREMENT
from solvers.torch.growth.splittable import check_splittable as _check_splittable
from solvers.torch.growth.splittable import second_derivative as _second_derivative
from solvers.torch.growth.splitting import NeuronSplitting, _block, _resized
from solvers.torch.growth.splitting_matrix import _MAX_CONV_MATRIX_BYTES
from solvers.torch.growth.splitting_matrix import collect_splitting_terms as _collect
from solvers.torch.growth.splitting_matrix import conv_padding as _conv_padding
from solvers.torch.growth.splitting_matrix import conv_patches as _patches

# Private names kept importable for code written against the previous layout (not in __all__):
# _CHANNEL_PASS_THROUGH, _MAX_CONV_MATRIX_BYTES, _PASS_THROUGH, _REQUIREMENT, _WEIGHTED, _block,
# _check_splittable, _collect, _conv_padding, _eigen_of, _exact_eigen, _lanczos_eigen,
# _next_layer, _patches, _resized, _second_derivative
__all__ = ["NeuronSplitting", "SplitEigen", "splittable_layers"]
