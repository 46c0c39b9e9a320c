"""The Gaussian measurement-noise model."""

import math

import pytest
import torch

from invdiff.operators import GaussianNoise


def test_complex_noise_has_sigma_per_entry_split_over_parts():
    y = torch.zeros(200_000, dtype=torch.complex128)
    n = GaussianNoise(0.3).sample(y, torch.Generator().manual_seed(0))
    assert n.dtype == torch.complex128
    assert math.isclose(float(n.abs().square().mean()), 0.09, rel_tol=0.01)
    assert math.isclose(float(n.real.std()), 0.3 / math.sqrt(2), rel_tol=0.01)
    assert math.isclose(float(n.imag.std()), 0.3 / math.sqrt(2), rel_tol=0.01)
    assert abs(float((n.real * n.imag).mean())) < 1e-3  # independent parts


def test_real_noise_has_sigma_per_entry_and_is_seeded():
    y = torch.ones(100_000, dtype=torch.float32)
    noise = GaussianNoise(0.5)
    a = noise(y, torch.Generator().manual_seed(1))
    b = noise(y, torch.Generator().manual_seed(1))
    assert a.dtype == torch.float32 and torch.equal(a, b)
    assert math.isclose(float((a - 1).std()), 0.5, rel_tol=0.02)


def test_zero_sigma_returns_y_and_bad_sigma_raises():
    y = torch.randn(4, 4, dtype=torch.complex64, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(GaussianNoise(0.0)(y), y)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="sigma"):
            GaussianNoise(bad)


def test_log_likelihood_is_gaussian_density_up_to_constant():
    noise = GaussianNoise(2.0)
    y = torch.tensor([[1.0 + 1.0j, 0.0]])
    assert float(noise.log_likelihood(y, torch.zeros_like(y), 1)[0]) == pytest.approx(-2 / 4)
    yr = torch.tensor([[2.0, 0.0]])
    assert float(noise.log_likelihood(yr, torch.zeros_like(yr), 1)[0]) == pytest.approx(-4 / 8)
