import pytest
import torch

from invdiff.intensity import (
    from_prior_range,
    measurement_from_prior_range,
    measurement_to_prior_range,
    robust_scale,
    to_prior_range,
)


def _kcrop(x: torch.Tensor, n: int = 8) -> torch.Tensor:
    k = torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(x, dim=(-2, -1)), norm="ortho"),
                           dim=(-2, -1))
    c = x.shape[-1] // 2
    return k[..., c - n // 2 : c + n // 2, c - n // 2 : c + n // 2]


def test_measurement_map_matches_measuring_the_mapped_image():
    g = torch.Generator().manual_seed(0)
    m = torch.rand(2, 1, 16, 16, generator=g, dtype=torch.float64) * 300
    s = robust_scale(m)
    y = _kcrop(m)
    y_prior = measurement_to_prior_range(y, s, _kcrop, (16, 16))
    torch.testing.assert_close(y_prior, _kcrop(to_prior_range(m, s)))
    torch.testing.assert_close(measurement_from_prior_range(y_prior, s, _kcrop, (16, 16)), y)
    torch.testing.assert_close(from_prior_range(to_prior_range(m, s), s), m)


def test_robust_scale_is_the_quantile_and_rejects_all_zero():
    m = torch.arange(1000, dtype=torch.float32)
    assert robust_scale(m) == pytest.approx(torch.quantile(m, 0.995).item())
    with pytest.raises(ValueError, match="all zero"):
        robust_scale(torch.zeros(4, 4))
