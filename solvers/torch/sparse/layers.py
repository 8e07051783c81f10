# SPDX-License-Identifier: BSD-3-Clause
"""Which weights are sparse: :func:`select_layers`.

A weight is selected by module type, a name pattern or a predicate, and a
minimum size; biases, normalisation layers and embeddings (and any weight
tied to one, such as a language model's head) are never selected.
"""

from __future__ import annotations

import re
import warnings
from numbers import Real

from torch import nn

from solvers._validation import interval, validate_params

__all__ = ["DEFAULT_LAYER_TYPES", "NEVER_SPARSE", "select_layers"]

#: module types whose ``weight`` is sparsified by default
DEFAULT_LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: parameter names that are never sparsified
NEVER_SPARSE = re.compile(r"(^|\.)(bias|.*norm.*|bn\d*|ln\d*)(\.|$)")
#: module types whose weight (and any weight tied to it) stays dense
_DENSE_MODULES = nn.modules.batchnorm._NormBase | nn.LayerNorm | nn.GroupNorm | nn.Embedding

_CONSTRAINTS = {
    "model": [nn.Module],
    "exclude": [str, re.Pattern, None],
    "min_numel": [interval(Real, 0, None, closed="left")],
}


def _included(include, name, module, weight):
    """Whether ``include`` (types, a name regex or a predicate) selects this weight."""
    if isinstance(include, str):
        return re.search(include, name) is not None and weight.dim() > 1
    if callable(include) and not isinstance(include, type | tuple):
        return bool(include(name, module))
    return isinstance(module, include)


def select_layers(model, include=DEFAULT_LAYER_TYPES, exclude=None, min_numel=0):
    """The weights to sparsify: ``{qualified name: parameter}``, in model order.

    Parameters
    ----------
    model : torch.nn.Module
    include : tuple of type, str or callable, default (Linear, Conv1d, Conv2d, Conv3d)
        Module types, a regular expression on the parameter's qualified name
        (``"features.*weight"``), or a predicate ``f(name, module) -> bool``.
    exclude : str, re.Pattern or None
        A regular expression; matching parameter names are left dense.
    min_numel : int, default 0
        Smaller weights are left dense; weights with no elements (a layer of
        width 0) are never selected.

    Returns
    -------
    dict of str to torch.nn.Parameter
        Only the ``weight`` of each module; biases, normalisation layers and
        embeddings are never selected. Recurrent (``nn.LSTM``...) and attention
        (``in_proj_weight``) matrices are other parameters: they stay dense,
        with a ``UserWarning``. A weight shared by several modules
        (tied weights) appears once, under its first name.

    Raises
    ------
    ValueError
        If no parameter qualifies.
    """
    validate_params(
        _CONSTRAINTS,
        {"model": model, "exclude": exclude, "min_numel": min_numel},
        "select_layers",
    )
    pattern = re.compile(exclude) if exclude else None
    # a weight tied to an embedding or a norm (a tied LM head) stays dense too
    out = {}
    seen = {id(m.weight) for m in model.modules() if isinstance(m, _DENSE_MODULES)}
    for mod_name, module in model.named_modules():
        w = getattr(module, "weight", None)
        if not isinstance(w, nn.Parameter) or id(w) in seen:
            continue
        name = f"{mod_name}.weight" if mod_name else "weight"
        if (
            not _included(include, name, module, w)
            or NEVER_SPARSE.search(mod_name or "")
            or (pattern and pattern.search(name))
            or w.numel() < max(min_numel, 1)  # a weight with no elements has nothing to mask
        ):
            continue
        seen.add(id(w))
        out[name] = w
    if not out:
        raise ValueError(
            "no layer to sparsify: the model has no weight matching include="
            f"{include!r}, exclude={exclude!r}, min_numel={min_numel}"
        )
    _warn_dense_matrices(model)
    return out


def _warn_dense_matrices(model):
    """Warn when recurrent or attention matrices stay dense: they are not a module's ``weight``.

    An LSTM's ``weight_ih_l0``/``weight_hh_l0`` and attention's
    ``in_proj_weight`` hold most of such a model's weights; without the
    warning a "90 % sparse" LSTM would have only its linear head sparse.
    """
    dense = [
        f"{mod_name or type(module).__name__}.{name}"
        for mod_name, module in model.named_modules()
        if isinstance(module, nn.RNNBase | nn.MultiheadAttention)
        for name, p in module.named_parameters(recurse=False)
        if p.dim() > 1
    ]
    if dense:
        shown = ", ".join(dense[:4]) + (f" and {len(dense) - 4} more" if len(dense) > 4 else "")
        warnings.warn(
            f"select_layers leaves {shown} dense: it sparsifies a module's `weight` only, and "
            "recurrent and attention matrices are other parameters (nn.LSTM/GRU/RNN, "
            "nn.MultiheadAttention's in_proj_weight). Their share of the model is not in the "
            "target density.",
            UserWarning,
            stacklevel=3,
        )
