"""Augmentation: identities, exact flips and rotations, range preservation, determinism."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from invdiff.training import AugmentConfig, apply_augment, sample_augment
from invdiff.training.augment import AugmentParams, fourier_resize


def _params(n: int, **kw) -> AugmentParams:
    z = torch.zeros(n, dtype=torch.float64)
    base = dict(flip_lr=z.bool(), flip_ud=z.bool(), angle=z, log_scale=z, log_gamma=z)
    base.update({k: torch.as_tensor(v).expand(n).clone() for k, v in kw.items()})
    return AugmentParams(**base)


def _images(n: int = 3, h: int = 12, w: int = 12) -> torch.Tensor:
    return torch.rand(n, 1, h, w, generator=torch.Generator().manual_seed(1)) * 2 - 1


def test_zero_parameters_are_identity():
    x = _images(h=37, w=31)
    assert torch.equal(apply_augment(x, _params(3)), x)


def test_flips_are_exact():
    x = _images(h=37, w=31)
    assert torch.equal(apply_augment(x, _params(3, flip_lr=True)), x.flip(-1))
    assert torch.equal(apply_augment(x, _params(3, flip_ud=True)), x.flip(-2))


def test_quarter_turn_is_rot90():
    """A positive angle turns the image clockwise as displayed (row 0 at the top)."""
    x = _images()
    y = apply_augment(x, _params(3, angle=math.pi / 2))
    torch.testing.assert_close(y, torch.rot90(x, k=-1, dims=(-2, -1)), atol=1e-5, rtol=0)


def test_zoom_enlarges_a_centred_disk_and_pads_with_background():
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    disk = torch.where((yy - 15.5) ** 2 + (xx - 15.5) ** 2 < 8**2, 1.0, -1.0)[None, None]
    area = (disk > 0).sum()
    bigger = apply_augment(disk, _params(1, log_scale=math.log(1.2)))
    smaller = apply_augment(disk, _params(1, log_scale=math.log(0.8)))
    assert (bigger > 0).sum() > area > (smaller > 0).sum()
    # border pulled in from outside is background (up to the band-limited resampling's ringing)
    assert smaller[..., 0, :].le(-0.99).all()
    legacy = apply_augment(disk, _params(1, log_scale=math.log(0.8)), "bilinear")
    assert legacy[..., 0, :].eq(-1).all()


def test_gamma_keeps_range_and_order():
    x = torch.linspace(-1, 1, 50).view(1, 1, 5, 10)
    for g in (-0.3, 0.3):
        y = apply_augment(x, _params(1, log_gamma=g))
        assert y.flatten()[0] == -1 and y.flatten()[-1] == 1
        assert (y.flatten().diff() > 0).all()
    assert (apply_augment(x, _params(1, log_gamma=0.3)) < x + 1e-7).all()  # gamma > 1 darkens


def test_sampling_is_seeded_and_bounded():
    cfg = AugmentConfig(flip_lr=0.5, max_rotation_deg=5, max_scale=0.1, max_log_gamma=0.2)
    a = sample_augment(64, cfg, torch.Generator().manual_seed(3))
    b = sample_augment(64, cfg, torch.Generator().manual_seed(3))
    assert all(torch.equal(u, v) for u, v in zip(vars(a).values(), vars(b).values(), strict=True)
               if u is not None)
    assert a.log_aspect is None and a.displacement is None and a.log_bias is None
    assert a.angle.abs().max() <= math.radians(5) and a.log_scale.abs().max() <= math.log(1.1)
    assert a.log_gamma.abs().max() <= 0.2 and 0 < a.flip_lr.sum() < 64 and not a.flip_ud.any()


def test_same_draws_whatever_is_enabled():
    """Switching an augmentation off does not shift the random stream of later steps."""
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    sample_augment(8, AugmentConfig(), g1)
    sample_augment(8, AugmentConfig(max_rotation_deg=0, flip_lr=0), g2)
    assert torch.equal(g1.get_state(), g2.get_state())


def test_part_of_a_batch_is_augmented_as_in_the_whole():
    """What a DDP rank does with its share equals the one-process result on the global batch."""
    x = _images(n=4)
    p = sample_augment(4, AugmentConfig(max_rotation_deg=20), torch.Generator().manual_seed(5))
    torch.testing.assert_close(apply_augment(x, p)[2:], apply_augment(x[2:], p[2:]))


# -- band-limited resampling (bicubic-2x) and the smooth-field augmentations ---------------------

def _band_limited(n: int = 4, size: int = 64, radius: float = 0.35) -> torch.Tensor:
    """Random images whose spectrum is a disk of ``radius`` cycles/pixel (so small rotations
    keep it inside the band), scaled into [-1, 1]."""
    f = torch.fft.fftfreq(size)
    disk = (f[:, None] ** 2 + f[None, :] ** 2).sqrt() < radius
    z = torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(2))
    x = torch.fft.ifft2(torch.fft.fft2(z) * disk).real
    x = 0.9 * x / x.abs().amax(dim=(-2, -1), keepdim=True)
    c = torch.arange(size) - (size - 1) / 2  # a smooth window: background (-1) at the border
    window = torch.exp(-(c[:, None] ** 2 + c[None, :] ** 2) / (2 * (size / 6) ** 2))
    return (x + 1) * window - 1


def _ring_power(x: torch.Tensor, lo: float, hi: float) -> float:
    f = torch.fft.fftfreq(x.shape[-1])
    r = (f[:, None] ** 2 + f[None, :] ** 2).sqrt()
    return float((torch.fft.fft2(x).abs() ** 2)[..., (r >= lo) & (r < hi)].sum())


def test_fourier_resize_round_trip_mean_and_quarter_turns():
    x = _images(n=2, h=12, w=10)
    for size in [(24, 20), (25, 21), (13, 11), (12, 10)]:
        y = fourier_resize(x, size)
        torch.testing.assert_close(fourier_resize(y, (12, 10)), x, atol=1e-5, rtol=0)
        torch.testing.assert_close(y.mean(), x.mean(), atol=1e-5, rtol=0)
    y = fourier_resize(x, (24, 20))
    turned = fourier_resize(torch.rot90(y, 1, (-2, -1)), (10, 12))
    torch.testing.assert_close(turned, torch.rot90(x, 1, (-2, -1)), atol=1e-5, rtol=0)
    torch.testing.assert_close(fourier_resize(y.flip(-1), (12, 10)), x.flip(-1), atol=1e-5, rtol=0)


def test_fourier_resize_samples_a_cosine_at_the_new_pixel_centres():
    n, m, k = 16, 40, 3  # pixel i of n has its centre at (i + 0.5) / n of the field of view
    centres = lambda s: (torch.arange(s, dtype=torch.float64) + 0.5) / s  # noqa: E731
    x = torch.cos(2 * math.pi * k * centres(n) + 0.4).expand(n, n).clone()
    y = fourier_resize(x.float(), (n, m))
    expected = torch.cos(2 * math.pi * k * centres(m) + 0.4).expand(n, m).float()
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=0)


def test_bicubic_2x_keeps_the_high_frequencies_bilinear_loses_them():
    """Regression: bilinear resampling of every rotated slice halved the power of the top
    octave, and the prior trained on it drew images that were too smooth."""
    x = _band_limited()
    p = _params(4, angle=math.radians(7))
    before = _ring_power(x, 0.25, 0.35)
    kept = _ring_power(apply_augment(x, p, "bicubic-2x"), 0.25, 0.35) / before
    lost = _ring_power(apply_augment(x, p, "bilinear"), 0.25, 0.35) / before
    assert 0.9 < kept < 1.1 and lost < 0.7


def _smooth(n: int, g: int = 3, aspect: float = 0.0, dx: float = 0.0, dy: float = 0.0,
            bias: float = 0.0, **kw) -> AugmentParams:
    disp = torch.zeros(n, 2, g, g, dtype=torch.float64)
    disp[:, 0], disp[:, 1] = dx, dy
    return dataclasses.replace(
        _params(n, **kw), log_aspect=torch.full((n,), aspect, dtype=torch.float64),
        displacement=disp, log_bias=torch.full((n, 1, g, g), bias, dtype=torch.float64))


def test_zero_smooth_fields_are_identity():
    x = _band_limited(n=2, size=32)
    torch.testing.assert_close(apply_augment(x, _smooth(2)), x, atol=1e-5, rtol=0)


def test_uniform_displacement_is_a_shift():
    """A displacement of +1 pixel in x samples the input one pixel to the right."""
    x = _band_limited(n=2, size=32)
    y = apply_augment(x, _smooth(2, dx=1.0))
    torch.testing.assert_close(y[..., 4:-4, 4:-5], x[..., 4:-4, 5:-4], atol=2e-3, rtol=0)
    y = apply_augment(x, _smooth(2, dy=-2.0))
    torch.testing.assert_close(y[..., 6:-4, 4:-4], x[..., 4:-6, 4:-4], atol=2e-3, rtol=0)


def test_stretch_makes_a_disk_taller_and_bias_keeps_background():
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    disk = torch.where((yy - 15.5) ** 2 + (xx - 15.5) ** 2 < 8**2, 0.5, -1.0)[None, None]
    y = apply_augment(disk, _smooth(1, aspect=math.log(1.2)))
    tall, wide = int((y[0, 0, :, 16] > -0.25).sum()), int((y[0, 0, 16, :] > -0.25).sum())
    assert tall > 16 > wide
    bias_only = dataclasses.replace(
        _params(1), log_bias=torch.full((1, 1, 3, 3), math.log(1.2), dtype=torch.float64))
    b = apply_augment(disk, bias_only)  # (0.5 + 1) / 2 * 1.2 = 0.9 -> 0.8
    assert b[disk < 0].eq(-1).all()
    torch.testing.assert_close(b[disk > 0], torch.full_like(b[disk > 0], 0.8), atol=1e-6, rtol=0)


def test_strong_preset_draws_bounded_smooth_fields_and_light_draws_as_before():
    cfg = AugmentConfig.preset("strong")
    a = sample_augment(16, cfg, torch.Generator().manual_seed(0))
    b = sample_augment(16, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(a.displacement, b.displacement) and torch.equal(a.log_bias, b.log_bias)
    g = cfg.elastic_grid
    assert a.displacement.shape == (16, 2, g, g) and a.log_bias.shape == (16, 1, g, g)
    assert a.displacement.abs().max() <= cfg.elastic_px
    assert a.log_bias.abs().max() <= math.log1p(cfg.max_bias)
    assert a.log_aspect.abs().max() <= math.log1p(cfg.max_aspect)
    # light (and legacy) draw exactly the five uniforms per image they always drew
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    sample_augment(8, AugmentConfig.preset("light"), g1)
    torch.rand(5, 8, generator=g2, dtype=torch.float64)
    assert torch.equal(g1.get_state(), g2.get_state())
    with pytest.raises(ValueError, match="unknown augmentation preset"):
        AugmentConfig.preset("heavy")
    with pytest.raises(ValueError, match="interpolation"):
        AugmentConfig(interpolation="nearest")


def test_bicubic_2x_keeps_the_background_at_minus_one_away_from_tissue():
    """The band-limited resampling rings across the background and wraps around the field of
    view (tissue touching one edge rings at the opposite edge); beyond a 2-pixel margin of the
    warped tissue the background must be exactly -1."""
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    head = (yy - 40) ** 2 / 26**2 + (xx - 32) ** 2 / 18**2 < 1  # touches the bottom edge
    x = torch.where(head, 0.6, -1.0)[None, None].repeat(2, 1, 1, 1)
    p = _smooth(2, aspect=0.05, dx=1.5, angle=math.radians(7), log_gamma=-0.2)
    y = apply_augment(x, p)
    tissue = apply_augment(x, p, "bilinear") > -1
    near = torch.nn.functional.max_pool2d(tissue.float(), 7, stride=1, padding=3) > 0
    assert y[~near].eq(-1).all() and (~near).sum() > 1000
    assert y[tissue].gt(-1).float().mean() > 0.97  # tissue kept (edge pixels may ring to -1)


def test_both_resamplings_warp_a_non_square_image_alike():
    """Rotation, zoom, stretch and an elastic field act the same in the bilinear and the
    bicubic-2x path on a smooth 48x64 image (catches swapped h/w in either path)."""
    yy, xx = torch.meshgrid(torch.arange(48.0), torch.arange(64.0), indexing="ij")
    blob = torch.exp(-((yy - 20) ** 2) / 60 - (xx - 38) ** 2 / 120) * 1.8 - 1
    x = blob[None, None]
    disp = torch.linspace(-2, 2, 18, dtype=torch.float64).reshape(1, 2, 3, 3)
    p = dataclasses.replace(
        _params(1, angle=math.radians(12), log_scale=0.08), log_aspect=torch.tensor([0.07],
        dtype=torch.float64), displacement=disp)
    a, b = apply_augment(x, p, "bilinear"), apply_augment(x, p, "bicubic-2x")
    assert (a - b).abs().max() < 0.03 and (a - x).abs().max() > 0.3


def test_params_move_to_a_device_with_their_dtypes():
    p = sample_augment(3, AugmentConfig.preset("strong"), torch.Generator().manual_seed(0))
    q = p.to("meta")  # a device other than the CPU, without a GPU
    for f in dataclasses.fields(p):
        a, b = getattr(p, f.name), getattr(q, f.name)
        assert b.device.type == "meta" and b.dtype == a.dtype and b.shape == a.shape
    light = sample_augment(3, AugmentConfig.preset("light"), torch.Generator().manual_seed(0))
    assert light.displacement is None and light.to("meta").displacement is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_cuda_augmentation_matches_cpu():
    """CPU-drawn parameters applied on the GPU (fields upsampled there) give the CPU result."""
    cfg = AugmentConfig.preset("strong")
    x = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    x[..., :4, :] = -1.0
    p = sample_augment(4, cfg, torch.Generator().manual_seed(1))
    on_cpu = apply_augment(x, p, cfg.interpolation)
    on_gpu = apply_augment(x.cuda(), p, cfg.interpolation).cpu()
    # float32 FFTs and interpolation differ in the last bits; a pixel at the tissue mask's
    # threshold may fall the other way
    assert (on_gpu - on_cpu).abs().gt(1e-3).float().mean() < 0.01
