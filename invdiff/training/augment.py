"""Random flips, small rotations and scalings, and intensity gamma for training batches.

Parameters are drawn for the whole global batch from one explicit generator
(:func:`sample_augment`) and then applied to any slice of it (:func:`apply_augment`), so every
DDP rank draws the same numbers and a rank's share is augmented exactly as in a one-process run.

Images are in the prior range [-1, 1] with background -1: the geometric warp runs on ``x + 1``
with zero padding, so pixels brought in from outside the field of view are background, and the
gamma ``((x + 1) / 2) ** g * 2 - 1`` keeps -1 and 1 fixed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from invdiff.training.config import AugmentConfig


@dataclass(frozen=True)
class AugmentParams:
    """Per-image augmentation parameters, each of shape ``(B,)``."""

    flip_lr: Tensor
    flip_ud: Tensor
    angle: Tensor  # radians
    log_scale: Tensor
    log_gamma: Tensor

    def __getitem__(self, index: slice | Tensor) -> AugmentParams:
        return AugmentParams(
            self.flip_lr[index], self.flip_ud[index], self.angle[index],
            self.log_scale[index], self.log_gamma[index],
        )


def sample_augment(
    n: int, config: AugmentConfig, generator: torch.Generator | None = None
) -> AugmentParams:
    """Draw parameters for ``n`` images (always the same number of draws, whatever is enabled)."""
    u = torch.rand(5, n, generator=generator, dtype=torch.float64)
    sym = 2.0 * u - 1.0
    return AugmentParams(
        flip_lr=u[0] < config.flip_lr,
        flip_ud=u[1] < config.flip_ud,
        angle=sym[2] * math.radians(config.max_rotation_deg),
        log_scale=sym[3] * math.log1p(config.max_scale),
        log_gamma=sym[4] * config.max_log_gamma,
    )


def apply_augment(x: Tensor, params: AugmentParams) -> Tensor:
    """Augment images ``x`` of shape ``(B, C, H, W)`` in [-1, 1] with ``params`` of batch ``B``."""
    if x.ndim != 4 or x.shape[0] != params.angle.shape[0]:
        raise ValueError(
            f"expected x of shape (B, C, H, W) with B = {params.angle.shape[0]}, "
            f"got {tuple(x.shape)}"
        )
    dev = x.device
    x = torch.where(params.flip_lr.to(dev).view(-1, 1, 1, 1), x.flip(-1), x)
    x = torch.where(params.flip_ud.to(dev).view(-1, 1, 1, 1), x.flip(-2), x)
    if bool((params.angle != 0).any() or (params.log_scale != 0).any()):
        x = _warp(x, params.angle, params.log_scale)
    if bool((params.log_gamma != 0).any()):
        g = torch.exp(params.log_gamma).to(device=dev, dtype=x.dtype).view(-1, 1, 1, 1)
        x = ((x + 1.0) / 2.0).clamp(0.0, 1.0).pow(g) * 2.0 - 1.0
    return x


def _warp(x: Tensor, angle: Tensor, log_scale: Tensor) -> Tensor:
    """Rotate by ``angle`` (clockwise as displayed, row 0 on top) and zoom by ``exp(log_scale)``
    about the image centre.

    ``affine_grid`` maps output coordinates to input coordinates, so the matrix is the inverse
    transform ``R(-angle) / scale`` (in normalised coordinates, aspect-corrected for H != W).
    """
    b, _, h, w = x.shape
    cos, sin = torch.cos(angle), torch.sin(angle)
    inv_s = torch.exp(-log_scale)
    theta = torch.zeros(b, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = cos * inv_s
    theta[:, 0, 1] = sin * inv_s * (h / w)
    theta[:, 1, 0] = -sin * inv_s * (w / h)
    theta[:, 1, 1] = cos * inv_s
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x + 1.0, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False) - 1.0
