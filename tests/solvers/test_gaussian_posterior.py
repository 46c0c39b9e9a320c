"""Samplers against closed forms with the analytic Gaussian prior (16x16, kcrop:8).

The prior is diagonal in the centred Fourier basis, so for ``kcrop`` the posterior of a noiseless
measurement is: measured frequencies (and their conjugate mirrors) fixed by ``y``, every other
frequency distributed as under the prior. All three samplers leave the unmeasured frequencies to
the unconditional ancestral dynamics, which are linear per frequency, so the distribution an
``N``-step sampler produces there is known exactly (:func:`ancestral_moments`, computed here from
``gamma`` directly, independently of :mod:`invdiff.solvers.steps`). It converges to the prior as
``N`` grows (checked at 1000 steps), and at the small ``N`` used for speed the samplers must match
it: a sampler with the wrong noise scale (e.g. deepinv 0.5.0's DDRM, ~0.46 of the spread) or the
wrong step coefficients fails. The measured part is compared with the dense closed-form
posterior of :meth:`GaussianPrior.posterior`.
"""

from __future__ import annotations

import pytest
import torch

from invdiff.operators.fourier import centred_mirror, fft2c
from invdiff.priors.gaussian import GaussianPrior
from invdiff.solvers.ddnm import ddnm
from invdiff.solvers.dps import dps
from invdiff.solvers.kspace_mix import kspace_mix
from invdiff.solvers.unconditional import sample_prior

N_SAMPLES = 384
STEPS = 25


def ancestral_moments(prior: GaussianPrior, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact per-frequency mean and variance ``E|X_k - E X_k|^2`` of the ancestral sampler.

    Per frequency ``k`` the step is ``X_s = A_k X_t + B_k + c_z Z_k`` with ``eps_hat`` linear:
    ``eps_hat_k = g_k (X_t - alpha_t mu_k)``, ``g_k = sigma_t / (alpha_t^2 v_k + sigma_t^2)``,
    ``A_k = a (1 - b g_k)``, ``B_k = a b g_k alpha_t mu_k``; ``E|Z_k|^2 = 1`` for real white noise.
    """
    ts = torch.linspace(1, 0, steps + 1, dtype=torch.float64)
    g = prior.gamma(ts)
    al, sg = torch.sigmoid(-g).sqrt(), torch.sigmoid(g).sqrt()
    v, mu = prior.var[0], fft2c(prior.mean[0])
    var, mean = torch.ones_like(v), torch.zeros_like(mu)
    for i in range(steps):
        c = -torch.expm1(g[i + 1] - g[i])
        a, b = al[i + 1] / al[i], sg[i] * c
        gain = sg[i] / (al[i] ** 2 * v + sg[i] ** 2)
        coef = a * (1 - b * gain)
        var = coef**2 * var + sg[i + 1] ** 2 * c
        mean = coef * mean + a * b * gain * al[i] * mu
    return mean / al[-1], var / al[-1] ** 2


def _check_frequencies(k: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, where: torch.Tensor):
    """Empirical Fourier moments of samples ``k (n, H, W)`` on ``where`` against ``(mean, var)``."""
    n = k.shape[0]
    emp_mean = k.mean(0)
    emp_var = (k - emp_mean).abs().pow(2).sum(0) / (n - 1)
    z = (emp_mean - mean).abs() / (var / n).sqrt()
    assert z[where].max() < 4.5, f"mean off by {float(z[where].max()):.1f} standard errors"
    # variance ratio pooled over radial bands: wrong spreads at low or high frequency both fail
    radius = torch.cdist(  # distance of each index from the centre, in index units
        torch.stack(
            torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij"), -1
        ).reshape(-1, 2),
        torch.tensor([[8.0, 8.0]]),
    ).reshape(16, 16)
    for lo, hi in [(0, 5), (5, 7), (7, 99)]:
        band = where & (radius >= lo) & (radius < hi)
        if band.sum() < 8:
            continue
        ratio = emp_var[band].sum() / var[band].sum()
        assert abs(float(ratio) - 1) < 0.06, f"variance ratio {float(ratio):.3f} in band {lo}-{hi}"


@pytest.fixture(scope="module")
def setting():
    prior = GaussianPrior.stationary((16, 16), mean=0.1)
    from invdiff.operators import KCrop

    op = KCrop((16, 16), (8, 8))
    x = prior.sample(1, torch.Generator().manual_seed(42))
    y = op(x)
    measured = op.measured()
    measured = measured | centred_mirror(measured)
    post_mean, post_cov = prior.posterior(op, y)
    return prior, op, y, measured, post_mean, post_cov


def test_reference_moments_converge_to_the_prior():
    prior = GaussianPrior.stationary((16, 16), mean=0.1)
    ratios = [float((ancestral_moments(prior, n)[1] / prior.var[0]).min()) for n in (25, 250, 1000)]
    assert ratios[0] < ratios[1] < ratios[2]
    assert 0.98 < ratios[2] <= 1.0
    mean = ancestral_moments(prior, 1000)[0]
    mu = fft2c(prior.mean[0])
    assert float((mean - mu).abs().max()) < 0.07 * float(mu.abs().max())  # start at N(0, I)


def test_unconditional_sampler_reproduces_its_exact_moments(setting):
    prior = setting[0]
    x = sample_prior(prior, N_SAMPLES, steps=STEPS, generator=torch.Generator().manual_seed(1))
    mean, var = ancestral_moments(prior, STEPS)
    _check_frequencies(fft2c(x[:, 0]), mean, var, torch.ones(16, 16, dtype=torch.bool))


def test_closed_form_posterior_is_separable(setting):
    """The dense posterior agrees with the structure the sampler tests rely on."""
    prior, op, y, measured, post_mean, post_cov = setting
    kmean = fft2c(post_mean[0])
    torch.testing.assert_close(op(post_mean[None])[0], y[0], atol=1e-9, rtol=0)
    torch.testing.assert_close(kmean[~measured], fft2c(prior.mean[0])[~measured], atol=1e-9, rtol=0)
    f = fft2c(torch.eye(256, dtype=torch.float64).reshape(256, 16, 16)).reshape(256, 256)
    kvar = torch.einsum("ki,ij,kj->k", f.T.conj(), post_cov.to(f.dtype), f.T).real.reshape(16, 16)
    torch.testing.assert_close(kvar[~measured], prior.var[0][~measured], atol=1e-9, rtol=1e-6)
    assert float(kvar[measured].abs().max()) < 1e-8


@pytest.mark.parametrize("final_dc", [True, False], ids=["final-dc", "no-final-dc"])
@pytest.mark.parametrize("solver", [kspace_mix, ddnm], ids=["kspace-mix", "ddnm"])
def test_replacement_samplers_sample_the_posterior(setting, solver, final_dc):
    prior, op, y, measured, post_mean, _ = setting
    res = solver(
        op,
        y,
        prior,
        steps=STEPS,
        n_samples=N_SAMPLES,
        lam=1.0,
        final_dc=final_dc,
        generator=torch.Generator().manual_seed(2),
    )
    k = fft2c(res.samples[:, 0, 0])
    mean, var = ancestral_moments(prior, STEPS)
    _check_frequencies(k, mean, var, ~measured)
    # measured frequencies: the posterior is a point mass at y; without the final step the
    # sampler itself gets there up to the noise left at t = 0 (sigma_0 / alpha_0 ~ 1.3e-3)
    tol = 1e-9 if final_dc else 1e-2
    kpost = fft2c(post_mean[0])
    torch.testing.assert_close(
        k[:, measured], kpost[measured].expand(N_SAMPLES, -1), atol=tol, rtol=0
    )


def test_dps_samples_the_posterior_approximately(setting):
    """DPS is approximate on the measured part (no projection); the rest is exact."""
    prior, op, y, measured, post_mean, _ = setting
    res = dps(
        op, y, prior, steps=STEPS, n_samples=N_SAMPLES, generator=torch.Generator().manual_seed(3)
    )
    k = fft2c(res.samples[:, 0, 0])
    mean, var = ancestral_moments(prior, STEPS)
    _check_frequencies(k, mean, var, ~measured)
    kpost = fft2c(post_mean[0])
    err = (k[:, measured] - kpost[measured]).abs().pow(2).mean(0).sum()
    assert float(err / prior.var[0][measured].sum()) < 0.05
    assert float(res.info["residual"].median()) < 0.1


def test_wrong_spread_is_caught(setting):
    """The check itself fails for a sampler with the deepinv-DDRM-like under-dispersion."""
    prior, op, y, measured, _, _ = setting
    res = kspace_mix(
        op, y, prior, steps=STEPS, n_samples=N_SAMPLES, generator=torch.Generator().manual_seed(2)
    )
    mean, var = ancestral_moments(prior, STEPS)
    k = fft2c(res.samples[:, 0, 0])
    shrunk = k.mean(0) + (k - k.mean(0)) * 0.46**0.5
    with pytest.raises(AssertionError, match="variance ratio"):
        _check_frequencies(shrunk, mean, var, ~measured)
    with pytest.raises(AssertionError):  # the 1000-step target is not what 25 steps give
        _check_frequencies(k, mean, prior.var[0], ~measured)


def test_kspace_mix_samples_the_noisy_posterior(setting):
    """Noisy data: the measured frequencies' posterior is no longer a point mass; the
    noise-aware replacement (top-up to sigma_s, stop below sigma_y) converges to it. At 100
    steps the remaining gap is a few percent of the variance; the unmeasured part is as before.
    """
    from invdiff.operators import GaussianNoise

    prior, op, _, measured, _, _ = setting
    x = prior.sample(1, torch.Generator().manual_seed(42))
    sigma_y = 0.3
    y = GaussianNoise(sigma_y)(op(x), torch.Generator().manual_seed(5))
    post_mean, post_cov = prior.posterior(op, y, noise_sigma=sigma_y)
    f = fft2c(torch.eye(256, dtype=torch.float64).reshape(256, 16, 16)).reshape(256, 256)
    kvar = torch.einsum("ki,ij,kj->k", f.T.conj(), post_cov.to(f.dtype), f.T).real.reshape(16, 16)
    steps = 100
    res = kspace_mix(
        op,
        y,
        prior,
        steps=steps,
        n_samples=N_SAMPLES,
        noise_sigma=sigma_y,
        final_dc=False,
        generator=torch.Generator().manual_seed(0),
    )
    k = fft2c(res.samples[:, 0, 0])
    mean, var = ancestral_moments(prior, steps)
    _check_frequencies(k, mean, var, ~measured)
    emp_mean = k.mean(0)
    emp_var = (k - emp_mean).abs().pow(2).sum(0) / (N_SAMPLES - 1)
    ratio = float(emp_var[measured].sum() / kvar[measured].sum())
    assert 0.88 < ratio < 1.08, ratio
    z = (emp_mean - fft2c(post_mean[0])).abs() / (kvar / N_SAMPLES).sqrt()
    assert float(z[measured & (kvar > 1e-6)].max()) < 4.5


def test_ddnm_plus_noisy_mean_is_close_to_the_posterior_mean(setting):
    """DDNM+ (Alg. 2) concentrates the measured components near the posterior mean (documented);
    its unmeasured part still follows the exact ancestral moments."""
    from invdiff.operators import GaussianNoise

    prior, op, _, measured, _, _ = setting
    sigma_y = 0.3
    y = GaussianNoise(sigma_y)(
        op(prior.sample(1, torch.Generator().manual_seed(42))), torch.Generator().manual_seed(5)
    )
    post_mean, post_cov = prior.posterior(op, y, noise_sigma=sigma_y)
    res = ddnm(
        op,
        y,
        prior,
        steps=STEPS,
        n_samples=N_SAMPLES,
        noise_sigma=sigma_y,
        final_dc=False,
        generator=torch.Generator().manual_seed(0),
    )
    k = fft2c(res.samples[:, 0, 0])
    mean, var = ancestral_moments(prior, STEPS)
    _check_frequencies(k, mean, var, ~measured)
    err = (k.mean(0) - fft2c(post_mean[0]))[measured].abs().pow(2).sum()
    assert float(err / post_cov.diagonal().sum()) < 0.1
    assert float(err) < 0.01 * float((fft2c(post_mean[0])[measured]).abs().pow(2).sum())
