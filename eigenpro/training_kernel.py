# SPDX-License-Identifier: BSD-3-Clause
"""Former home of the training kernel matrix, now :mod:`eigenpro.training_matrix`.

The old names stay importable from here: ``PackedKernel`` is
:class:`~eigenpro.training_matrix.PackedTrainingMatrix`, ``StreamedKernel``
is :class:`~eigenpro.training_matrix.StreamedTrainingMatrix` and
``make_training_kernel`` is :func:`~eigenpro.training_matrix.make_training_matrix`.
"""

from eigenpro.training_matrix import *  # noqa: F403
from eigenpro.training_matrix import PackedTrainingMatrix as PackedKernel
from eigenpro.training_matrix import StreamedTrainingMatrix as StreamedKernel
from eigenpro.training_matrix import TrainingMatrix as _TrainingKernel  # noqa: F401
from eigenpro.training_matrix import make_training_matrix as make_training_kernel
from eigenpro.training_matrix import packed_bytes

__all__ = ["PackedKernel", "StreamedKernel", "make_training_kernel", "packed_bytes"]
