# SPDX-License-Identifier: BSD-3-Clause
"""EigenPro preconditioned kernel regression and classification.

Ma & Belkin, "Diving into the shallows: a computational perspective on
large-scale shallow learning" (NeurIPS 2017) and "Kernel machines that adapt to
GPUs for effective large batch training" (EigenPro 2.0, SysML 2019).
"""

from eigenpro.estimators import EigenProClassifier, EigenProRegressor
from eigenpro.kernels import Cauchy, Gaussian, Kernel, Laplacian, Matern, make_kernel
from eigenpro.operator import KernelOperator
from eigenpro.preconditioner import NystromPreconditioner
from eigenpro.solver import eigenpro_solve

__all__ = [
    "Cauchy",
    "EigenProClassifier",
    "EigenProRegressor",
    "Gaussian",
    "Kernel",
    "KernelOperator",
    "Laplacian",
    "Matern",
    "NystromPreconditioner",
    "eigenpro_solve",
    "make_kernel",
]
