"""The analytic Gaussian prior's eps and x0_hat against dense closed forms built independently."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from invdiff.priors.gaussian import GaussianPrior, power_law_spectrum


def _centred_dft(n: int) -> np.ndarray:
    """Matrix of the centred orthonormal 1D DFT: ``fftshift(fft(ifftshift(x)))``."""
    eye = np.eye(n)
    return np.fft.fftshift(np.fft.fft(np.fft.ifftshift(eye, axes=0), axis=0, norm="ortho"), axes=0)


def _dense_covariance(prior: GaussianPrior) -> np.ndarray:
    _, h, w = prior.image_shape
    v = prior.var[0].numpy().reshape(-1)
    if prior.basis == "pixel":
        return np.diag(v)
    f = np.kron(_centred_dft(h), _centred_dft(w))  # row-major flattening of (H, W)
    c = f.conj().T @ np.diag(v) @ f
    assert np.abs(c.imag).max() < 1e-12  # v symmetric under k -> -k makes C real
    return c.real


@pytest.mark.parametrize(("basis", "schedule", "shape"), [
    ("fourier", "linear", (5, 6)), ("fourier", "cosine", (6, 4)), ("pixel", "linear", (3, 5)),
])
def test_eps_is_the_exact_conditional_mean_of_the_noise(basis, schedule, shape):
    """``eps_hat = sigma (alpha^2 C + sigma^2 I)^{-1} (x_t - alpha mu)`` (Gaussian conditioning)."""
    g = torch.Generator().manual_seed(0)
    var = power_law_spectrum(shape) if basis == "fourier" else torch.rand(shape, generator=g) + 0.1
    mean = torch.randn(1, *shape, generator=g, dtype=torch.float64)
    prior = GaussianPrior(mean, var, basis=basis, schedule=schedule)
    cov = _dense_covariance(prior)
    d = cov.shape[0]
    x_t = torch.randn(3, 1, *shape, generator=g, dtype=torch.float64)
    t = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    alpha, sigma = (v.numpy() for v in prior.alpha_sigma(t))
    got = prior.eps(x_t, t).numpy().reshape(3, d)
    x0 = prior.x0_hat(x_t, t).numpy().reshape(3, d)
    for i in range(3):
        a, s = alpha[i], sigma[i]
        resid = x_t[i].numpy().reshape(d) - a * mean.numpy().reshape(d)
        want = s * np.linalg.solve(a**2 * cov + s**2 * np.eye(d), resid)
        np.testing.assert_allclose(got[i], want, rtol=1e-9, atol=1e-11)
        # x0_hat = E[x | x_t] = mu + a C (a^2 C + s^2 I)^{-1} (x_t - a mu)
        post = mean.numpy().reshape(d) + a * cov @ np.linalg.solve(a**2 * cov + s**2 * np.eye(d),
                                                                   resid)
        np.testing.assert_allclose(x0[i], post, rtol=1e-8, atol=1e-10)


def test_covariance_and_posterior_agree_with_dense_forms():
    prior = GaussianPrior.stationary((5, 4), mean=0.3)
    np.testing.assert_allclose(prior.covariance().numpy(), _dense_covariance(prior), atol=1e-12)
    # observing x_t = alpha x + sigma n as a linear measurement gives back x0_hat as the mean
    t = torch.tensor(0.6, dtype=torch.float64)
    alpha, sigma = (float(v) for v in prior.alpha_sigma(t))
    x_t = torch.randn(1, 1, 5, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mean, _ = prior.posterior(lambda x: alpha * x, x_t, noise_sigma=sigma)
    torch.testing.assert_close(mean, prior.x0_hat(x_t, t)[0], rtol=1e-8, atol=1e-10)


def test_samples_have_the_prior_moments():
    prior = GaussianPrior.stationary((4, 5), mean=-0.2)
    x = prior.sample(20_000, torch.Generator().manual_seed(2)).reshape(20_000, -1).numpy()
    np.testing.assert_allclose(x.mean(0), -0.2, atol=0.05)
    np.testing.assert_allclose(np.cov(x.T), _dense_covariance(prior), atol=0.06)
