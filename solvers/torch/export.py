# SPDX-License-Identifier: BSD-3-Clause
"""Compatibility shim: export moved to :mod:`solvers.torch.sparse.export`."""

from solvers.torch.sparse.export import (
    SparseLinear,
    _masks_of,
    _module_of,
    export_dense,
    export_sparse,
    from_torch_prune,
    to_torch_prune,
)

# Private names kept importable for code written against the previous layout (not in __all__):
# _masks_of, _module_of
__all__ = ["SparseLinear", "export_dense", "export_sparse", "from_torch_prune", "to_torch_prune"]
