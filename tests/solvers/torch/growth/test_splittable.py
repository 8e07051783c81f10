# SPDX-License-Identifier: BSD-3-Clause
"""solvers.torch.growth.splittable: which layers can split."""

import pytest
from torch import nn

from solvers.torch import NeuronSplitting, splittable_layers


def test_conv_layers_that_cannot_split_are_refused(conv_net):
    bn = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Tanh(), nn.BatchNorm2d(3), nn.Conv2d(3, 2, 3))
    grouped = nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.Tanh(), nn.Conv2d(4, 2, 3))
    pool_first = nn.Sequential(nn.Conv2d(2, 3, 3), nn.AvgPool2d(2), nn.Tanh(), nn.Conv2d(3, 2, 1))
    # max pooling of the two offspring changes the function at first order near ties
    max_pool = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Tanh(), nn.MaxPool2d(2), nn.Conv2d(3, 2, 1))
    for net in (bn, grouped, pool_first, max_pool):
        with pytest.raises(ValueError, match=r"no splittable layer.*max pooling is not smooth"):
            NeuronSplitting(net)
    assert set(splittable_layers(conv_net(head="flatten"))) == {0}
