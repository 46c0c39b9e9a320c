"""The eps U-Net: base measure at initialisation, Fourier features, conditioning, sizes."""

from __future__ import annotations

import math

import pytest
import torch

from invdiff.priors.unet import AttnBlock, UNet, _groups, fourier_features
from invdiff.priors.vdm import VDM, VDMConfig


def _tiny(**kw) -> UNet:
    torch.manual_seed(0)
    return UNet(1, 16, channels=(8, 16), num_res_blocks=1, attn_resolutions=(8,), **kw)


def test_initial_network_is_the_base_measure():
    """Zero-initialised output layers: eps_hat(z) = z at initialisation (vdm ``ScoreUNet``)."""
    z = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(_tiny()(z, torch.tensor(0.0)), z, rtol=0, atol=0)


def test_fourier_features_values():
    z = torch.tensor([0.3, -0.7]).reshape(2, 1, 1, 1)
    h = fourier_features(z, (7, 8))
    assert h.shape == (2, 4, 1, 1)
    want = [math.sin(2**7 * math.pi * 0.3), math.sin(2**8 * math.pi * 0.3)]
    want += [math.cos(2**7 * math.pi * 0.3), math.cos(2**8 * math.pi * 0.3)]
    torch.testing.assert_close(h[0, :, 0, 0], torch.tensor(want), rtol=1e-4, atol=1e-4)
    assert fourier_features(z, ()).shape == (2, 0, 1, 1)


def test_output_depends_on_gamma_and_scalar_broadcasts():
    net = _tiny()
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():
                p.normal_(0, 0.05)
    z = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    a = net(z, torch.tensor(-5.0))
    torch.testing.assert_close(a, net(z, torch.tensor([-5.0, -5.0])))
    assert not torch.allclose(a, net(z, torch.tensor(2.0)))


def test_attention_where_configured():
    net = _tiny()
    n_attn = sum(isinstance(m, AttnBlock) for m in net.modules())
    assert n_attn == 1 + 2 + 1  # down (8x8: 1 block), up (8x8: 2 blocks), middle


def test_default_size_is_cpu_sized():
    n = sum(p.numel() for p in VDM(VDMConfig()).net.parameters())
    assert 3.0e6 < n < 4.5e6


@pytest.mark.parametrize("c", [1, 8, 16, 24, 48, 96, 128, 384])
def test_groups_divide_channels(c):
    assert c % _groups(c) == 0 and _groups(c) <= 32


def test_bad_image_size():
    with pytest.raises(ValueError, match="divisible by 2"):
        UNet(1, 15, channels=(8, 16))
