"""Random flips, rotations, scalings, stretches, elastic deformations, bias fields and intensity
gamma for training batches.

Parameters are drawn for the whole global batch from one explicit generator
(:func:`sample_augment`) and then applied to any slice of it (:func:`apply_augment`), so every
DDP rank draws the same numbers and a rank's share is augmented exactly as in a one-process run.
The draws of the smooth-field augmentations (stretch, elastic, bias) are made only when one of
them is on, so runs without them draw exactly the numbers they always drew.

Images are in the prior range [-1, 1] with background -1: the geometric warp runs on ``x + 1``
with zero padding, so pixels brought in from outside the field of view are background, and the
bias field and gamma act on ``(x + 1) / 2``, which keeps -1 fixed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from invdiff.training.config import AugmentConfig

#: A pixel is tissue when above background by this much (prior range, 1e-3 = 0.05 % of the scale).
TISSUE_LEVEL = 1e-3
#: Ringing of the band-limited resampling is kept within this many pixels of tissue only.
BACKGROUND_MARGIN = 2


@dataclass(frozen=True)
class AugmentParams:
    """Per-image augmentation parameters: ``(B,)`` tensors, and for the smooth fields (``None``
    when off) the log stretch ``(B,)``, control displacements in pixels ``(B, 2, g, g)``
    (x then y) and the log bias ``(B, 1, g, g)``."""

    flip_lr: Tensor
    flip_ud: Tensor
    angle: Tensor  # radians
    log_scale: Tensor
    log_gamma: Tensor
    log_aspect: Tensor | None = None
    displacement: Tensor | None = None
    log_bias: Tensor | None = None

    def to(self, device: torch.device | str) -> AugmentParams:
        """The same parameters on ``device`` (dtypes kept, so results do not depend on it)."""
        moved = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return dataclasses.replace(
            self, **{k: v.to(device) for k, v in moved.items() if v is not None})

    def __getitem__(self, index: slice | Tensor) -> AugmentParams:
        def pick(t: Tensor | None) -> Tensor | None:
            return None if t is None else t[index]

        return AugmentParams(
            self.flip_lr[index], self.flip_ud[index], self.angle[index],
            self.log_scale[index], self.log_gamma[index],
            pick(self.log_aspect), pick(self.displacement), pick(self.log_bias),
        )


def sample_augment(
    n: int, config: AugmentConfig, generator: torch.Generator | None = None
) -> AugmentParams:
    """Draw parameters for ``n`` images (always the same number of draws for a given config)."""
    u = torch.rand(5, n, generator=generator, dtype=torch.float64)
    sym = 2.0 * u - 1.0
    extra: dict[str, Tensor] = {}
    if config.smooth_fields:
        g = config.elastic_grid
        v = 2.0 * torch.rand(n, 1 + 3 * g * g, generator=generator, dtype=torch.float64) - 1.0
        extra = {
            "log_aspect": v[:, 0] * math.log1p(config.max_aspect),
            "displacement": v[:, 1 : 1 + 2 * g * g].reshape(n, 2, g, g) * config.elastic_px,
            "log_bias": v[:, 1 + 2 * g * g :].reshape(n, 1, g, g) * math.log1p(config.max_bias),
        }
    return AugmentParams(
        flip_lr=u[0] < config.flip_lr,
        flip_ud=u[1] < config.flip_ud,
        angle=sym[2] * math.radians(config.max_rotation_deg),
        log_scale=sym[3] * math.log1p(config.max_scale),
        log_gamma=sym[4] * config.max_log_gamma,
        **extra,
    )


def apply_augment(x: Tensor, params: AugmentParams, interpolation: str = "bicubic-2x") -> Tensor:
    """Augment images ``x`` of shape ``(B, C, H, W)`` in [-1, 1] with ``params`` of batch ``B``
    (``interpolation`` as in :class:`~invdiff.training.config.AugmentConfig`)."""
    if x.ndim != 4 or x.shape[0] != params.angle.shape[0]:
        raise ValueError(
            f"expected x of shape (B, C, H, W) with B = {params.angle.shape[0]}, "
            f"got {tuple(x.shape)}"
        )
    dev = x.device
    moves = bool((params.angle != 0).any() or (params.log_scale != 0).any())  # on the host
    gamma = bool((params.log_gamma != 0).any())
    params = params.to(dev)  # the smooth fields are upsampled where the images are (a GPU)
    x = torch.where(params.flip_lr.view(-1, 1, 1, 1), x.flip(-1), x)
    x = torch.where(params.flip_ud.view(-1, 1, 1, 1), x.flip(-2), x)
    if moves or params.log_aspect is not None or params.displacement is not None:
        x = _warp(x, params, interpolation)
    if params.log_bias is not None:
        bias = torch.exp(_upsample(params.log_bias, x.shape[-2:])).to(device=dev, dtype=x.dtype)
        x = ((x + 1.0) / 2.0 * bias).clamp(0.0, 1.0) * 2.0 - 1.0
    if gamma:
        g = torch.exp(params.log_gamma).to(device=dev, dtype=x.dtype).view(-1, 1, 1, 1)
        x = ((x + 1.0) / 2.0).clamp(0.0, 1.0).pow(g) * 2.0 - 1.0
    return x


def _upsample(field: Tensor, size: torch.Size | tuple[int, int]) -> Tensor:
    """Bicubic upsampling of a control-point field ``(B, C, g, g)`` to ``(B, C, *size)``
    (corner control points on the corner pixels)."""
    return F.interpolate(field, size=tuple(size), mode="bicubic", align_corners=True)


def fourier_resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Band-limited resize of real images ``(..., H, W)`` to ``size`` on pixel-centre grids
    (the ``align_corners=False`` convention of :func:`torch.nn.functional.grid_sample`: pixel
    ``i`` of ``n`` spans ``[i, i + 1) / n`` of the field of view).

    The centred, orthonormal spectrum is phase-shifted to the new pixel centres and
    zero-padded or cropped axis by axis, an even axis' unpaired Nyquist frequency split in two
    when padding and folded back when cropping (as ``scipy.signal.resample``): resizing up and
    back down is the identity, the result commutes with flips and quarter turns, and the mean
    intensity is kept."""
    h, w = x.shape[-2:]
    k = torch.fft.fftshift(torch.fft.fft2(x.float(), norm="ortho"), dim=(-2, -1))
    k = _resize_spectrum(_resize_spectrum(k, -2, size[0]), -1, size[1])
    y = torch.fft.ifft2(torch.fft.ifftshift(k, dim=(-2, -1)), norm="ortho").real
    return (y * math.sqrt(size[0] * size[1] / (h * w))).to(x.dtype)


def _resize_spectrum(k: Tensor, axis: int, m: int) -> Tensor:
    """Resize a centred spectrum (frequency ``f`` at index ``n // 2 + f``) along ``axis`` from
    ``n`` to ``m`` samples: new sample ``j`` is the band-limited signal at old pixel
    coordinate ``j n / m + (n / m - 1) / 2`` (pixel centres line up), a phase ``exp(2 pi i f
    delta / n)``."""
    n = k.shape[axis]
    if m == n:
        return k
    small, large = min(n, m), max(n, m)
    lo = large // 2 - small // 2  # where the small band starts inside the large one
    if m > n:
        shape = list(k.shape)
        shape[axis] = m
        out = k.new_zeros(shape)
        out.narrow(axis, lo, n).copy_(k)
        if n % 2 == 0:  # split the unpaired -n/2 row between -n/2 and +n/2
            nyq = k.narrow(axis, 0, 1) / 2
            out.narrow(axis, lo, 1).copy_(nyq)
            out.narrow(axis, lo + n, 1).copy_(nyq)
        return out * _phase(m, n, m, axis, k)
    k = k * _phase(n, n, m, axis, k)
    out = k.narrow(axis, lo, m).clone()
    if m % 2 == 0:  # fold +m/2 onto the unpaired -m/2
        out.narrow(axis, 0, 1).add_(k.narrow(axis, lo + m, 1))
    return out


def _phase(length: int, n: int, m: int, axis: int, like: Tensor) -> Tensor:
    """``exp(2 pi i f delta / n)``, ``delta = (n / m - 1) / 2``, for the ``length`` centred
    frequencies ``f``, shaped to broadcast along ``axis``."""
    f = torch.arange(length, dtype=torch.float64) - length // 2
    ph = torch.polar(torch.ones_like(f), 2 * math.pi * f * (n / m - 1) / 2 / n)
    shape = [1] * like.ndim
    shape[axis] = length
    return ph.to(device=like.device, dtype=like.dtype).reshape(shape)


def _warp(x: Tensor, params: AugmentParams, interpolation: str = "bicubic-2x") -> Tensor:
    """Rotate by ``angle`` (clockwise as displayed, row 0 on top), zoom by ``exp(log_scale)``,
    stretch rows by ``exp(log_aspect)`` and columns by its inverse, about the image centre,
    then displace by the elastic field.

    ``affine_grid`` maps output coordinates to input coordinates, so the matrix is the inverse
    transform ``S^-1 R(-angle) / scale`` (in normalised coordinates, aspect-corrected for
    H != W); the elastic displacement (pixels) is added to the sampling grid. With
    ``bicubic-2x`` the image is sampled on a twice finer grid after band-limited upsampling and
    brought back by band-limited downsampling, then clipped to [-1, 1] (the ringing of the
    up/down-sampling at the skull edge would otherwise leave the range), and pixels farther
    than ``BACKGROUND_MARGIN`` from the warped tissue are set back to the background -1.
    """
    b, _, h, w = x.shape
    cos, sin = torch.cos(params.angle), torch.sin(params.angle)
    inv_s = torch.exp(-params.log_scale)
    theta = torch.zeros(b, 2, 3, dtype=torch.float64, device=params.angle.device)
    theta[:, 0, 0] = cos * inv_s
    theta[:, 0, 1] = sin * inv_s * (h / w)
    theta[:, 1, 0] = -sin * inv_s * (w / h)
    theta[:, 1, 1] = cos * inv_s
    if params.log_aspect is not None:  # output x = e^{-u} input x, output y = e^{u} input y
        theta[:, 0, :] *= torch.exp(params.log_aspect).view(-1, 1)
        theta[:, 1, :] *= torch.exp(-params.log_aspect).view(-1, 1)
    theta = theta.to(device=x.device, dtype=x.dtype)
    if interpolation == "bilinear":
        return F.grid_sample(x + 1.0, _grid(theta, params, x.shape, (h, w)), mode="bilinear",
                             padding_mode="zeros", align_corners=False) - 1.0
    fine = (b, x.shape[1], 2 * h, 2 * w)
    z = fourier_resize(x + 1.0, fine[-2:])
    z = F.grid_sample(z, _grid(theta, params, fine, (h, w)), mode="bicubic",
                      padding_mode="zeros", align_corners=False)
    out = (fourier_resize(z, (h, w)) - 1.0).clamp(-1.0, 1.0)
    # background: -1 wherever the warped image has no tissue within BACKGROUND_MARGIN pixels
    # (the band-limited resampling rings faintly across the background and wraps around)
    tissue = (x > -1.0 + TISSUE_LEVEL).to(x.dtype)
    tissue = F.grid_sample(tissue, _grid(theta, params, x.shape, (h, w)), mode="bilinear",
                           padding_mode="zeros", align_corners=False) > 0
    k = 2 * BACKGROUND_MARGIN + 1
    near = F.max_pool2d(tissue.to(x.dtype), k, stride=1, padding=BACKGROUND_MARGIN) > 0
    return torch.where(near, out, torch.full_like(out, -1.0))


def _grid(theta: Tensor, params: AugmentParams, shape: tuple[int, ...] | torch.Size,
          hw: tuple[int, int]) -> Tensor:
    """Sampling grid of ``shape`` (any resolution of the same field of view) for the affine
    ``theta`` plus the elastic displacement, given in pixels of the ``hw`` image."""
    grid = F.affine_grid(theta, list(shape), align_corners=False)
    if params.displacement is not None:
        d = _upsample(params.displacement, tuple(shape[-2:]))  # (B, 2, H', W'), x then y
        d = torch.stack((d[:, 0] * (2.0 / hw[1]), d[:, 1] * (2.0 / hw[0])), dim=-1)  # normalised
        grid = grid + d.to(device=theta.device, dtype=theta.dtype)
    return grid
