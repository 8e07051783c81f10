# SPDX-License-Identifier: BSD-3-Clause
"""closedform.activations: invertible activations, their inverses and squashing."""

import numpy as np
import pytest

from closedform.activations import ACTIVATIONS, get_activation


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations_invert_exactly(name):
    act = get_activation(name)
    z = np.linspace(-6, 6, 101)
    h = act.forward_(z.copy())
    assert np.all(np.diff(h) > 0)  # strictly increasing, hence invertible
    np.testing.assert_allclose(act.inverse(h), z, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_squash_keeps_targets_strictly_inside_the_range(name):
    act = get_activation(name)
    H = np.array([-1e9, -1.0, 0.0, 0.5, 1.0, 1e9])
    inverted = act.inverse(act.squash(H, 1e-3))
    assert np.all(np.isfinite(inverted))


def test_relu_and_unknown_names_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="not invertible"):
        get_activation("relu")
    with pytest.raises(ValueError, match="activation must be one of"):
        get_activation("cube")
    act = get_activation("tanh")
    assert get_activation(act) is act
