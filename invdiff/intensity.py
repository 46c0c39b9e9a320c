"""Intensity convention shared by data loading, training and solving.

Magnitude MRI ``m >= 0`` is put in the prior's range ``[-1, 1]`` by a robust per-volume scale:

    s = quantile(|m|, 0.995)   (over all voxels of the volume, or of the slice for 2D input)
    x = 2 m / s - 1

so tissue at the 99.5th percentile maps to 1 and background to -1 (values above the percentile go
slightly above 1; training data is clipped to [-1, 1]). The map is affine, not linear: for a linear
measurement ``y = A m`` the measurement of ``x`` is ``y' = 2 y / s - A(1)`` where ``A(1)`` is the
measurement of the constant image (for k-space a DC spike). :func:`measurement_to_prior_range`
does exactly that, and :func:`measurement_from_prior_range` undoes it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

QUANTILE = 0.995


def robust_scale(m: Tensor, quantile: float = QUANTILE) -> float:
    """The robust scale ``s`` of a magnitude image or volume (see module docstring)."""
    a = m.detach().abs().flatten().float()
    if a.numel() > 16_000_000:  # torch.quantile has an input-size limit; subsample evenly
        a = a[:: a.numel() // 16_000_000 + 1]
    s = float(torch.quantile(a, quantile))
    if not s > 0:
        s = float(a.max())
    if not s > 0:
        raise ValueError("image is all zero: no intensity scale can be set")
    return s


def to_prior_range(m: Tensor, scale: float) -> Tensor:
    """``x = 2 m / s - 1``."""
    return 2.0 * m / scale - 1.0


def from_prior_range(x: Tensor, scale: float) -> Tensor:
    """Inverse of :func:`to_prior_range`: ``m = (x + 1) s / 2``."""
    return (x + 1.0) * (scale / 2.0)


def measurement_to_prior_range(
    y: Tensor, scale: float, forward: Callable[[Tensor], Tensor], image_shape: tuple[int, ...]
) -> Tensor:
    """Map ``y = A m`` to ``y' = A x = 2 y / s - A(1)`` for ``x = 2 m / s - 1``."""
    ones = torch.ones(image_shape, dtype=_real_dtype(y), device=y.device)
    return 2.0 * y / scale - forward(ones)


def measurement_from_prior_range(
    y: Tensor, scale: float, forward: Callable[[Tensor], Tensor], image_shape: tuple[int, ...]
) -> Tensor:
    """Inverse of :func:`measurement_to_prior_range`."""
    ones = torch.ones(image_shape, dtype=_real_dtype(y), device=y.device)
    return (y + forward(ones)) * (scale / 2.0)


def _real_dtype(y: Tensor) -> torch.dtype:
    return y.real.dtype if y.is_complex() else y.dtype
