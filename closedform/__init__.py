# SPDX-License-Identifier: BSD-3-Clause
"""Networks trained without gradients (closed-form layerwise solutions).

Empty until its own issue lands; see the project README.
"""
