"""Augmentation: identities, exact flips and rotations, range preservation, determinism."""

from __future__ import annotations

import math

import torch

from invdiff.training import AugmentConfig, apply_augment, sample_augment
from invdiff.training.augment import AugmentParams


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
    assert smaller[..., 0, :].eq(-1).all()  # border pulled in from outside is background


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
    assert all(torch.equal(u, v) for u, v in zip(vars(a).values(), vars(b).values(), strict=True))
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
