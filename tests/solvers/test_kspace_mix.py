"""kspace-mix: the seed's correction, data consistency, the VDM step algebra, reproducibility."""

from __future__ import annotations

import pytest
import torch

from invdiff.operators.fourier import centred_mirror, fft2c, ifft2c
from invdiff.priors.gaussian import GaussianPrior
from invdiff.solvers.consistency import hard_consistency
from invdiff.solvers.kspace_mix import kspace_mix
from invdiff.solvers.steps import ancestral_step, schedule, step_from_x0, time_grid


def _pad(op, y):
    full = torch.zeros((*y.shape[:-2], *op.ishape), dtype=y.dtype)
    (r, c), (n, m) = op.starts, op.oshape
    full[..., r : r + n, c : c + m] = y
    return full


def _problem(op, gen, lam_shape=(3, 1, 16, 16)):
    x = torch.randn(lam_shape, generator=gen, dtype=torch.float64)
    y_t = op(torch.randn(lam_shape, generator=gen, dtype=torch.float64))  # y_t of a real image
    return x, y_t


def test_correction_is_seed_formula_for_odd_crop(kcrop, gen):
    """x + lam A^+(y_t - A x) == Re F^-1[lam pad(y_t) + (1-lam) M F x + (I-M) F x] (odd crop)."""
    op, lam = kcrop(7), 0.6
    x, y_t = _problem(op, gen)
    m = op.measured().to(torch.complex128)
    fx = fft2c(x)
    seed = ifft2c(lam * _pad(op, y_t) + (1 - lam) * m * fx + (1 - m) * fx)
    assert seed.imag.abs().max() < 1e-12  # odd crops: the literal formula is already real
    ours = hard_consistency(x, y_t, op, op.pinv_real, lam)
    torch.testing.assert_close(ours, seed.real, rtol=0, atol=1e-12)


def test_correction_is_seed_formula_with_hermitian_pad_for_even_crop(kcrop, gen):
    """Even crop: the seed's formula with pad and mask extended to the unpaired mirrors
    (conjugate-symmetric fill) is real and equals ours; the literal formula's real part is not
    data consistent on the unpaired row/column."""
    op, lam = kcrop(8), 0.6
    x, y_t = _problem(op, gen)
    m = op.measured().to(torch.complex128)
    m_h = torch.maximum(m.real, centred_mirror(m).real).to(torch.complex128)
    pad = _pad(op, y_t)
    pad_h = torch.where(m.real > 0, pad, centred_mirror(pad).conj())
    fx = fft2c(x)
    seed = ifft2c(lam * pad_h + (1 - lam) * m_h * fx + (1 - m_h) * fx)
    assert seed.imag.abs().max() < 1e-12
    ours = hard_consistency(x, y_t, op, op.pinv_real, lam)
    torch.testing.assert_close(ours, seed.real, rtol=0, atol=1e-12)
    # lam = 1: ours reproduces y_t exactly, the naive literal formula's real part does not.
    naive = ifft2c(pad + (1 - m) * fx).real
    assert (op(naive) - y_t).abs().max() > 1e-3
    torch.testing.assert_close(op(hard_consistency(x, y_t, op, op.pinv_real)), y_t)


@pytest.mark.parametrize(("spec", "shape"), [("8", (16, 16)), ("7x6", (15, 13))])
def test_lambda_one_noiseless_output_satisfies_measurement(kcrop, spec, shape, gen):
    prior = GaussianPrior.stationary(shape, mean=-0.2)
    op = kcrop(spec, shape)
    y = op(prior.sample(2, gen))
    res = kspace_mix(op, y, prior, steps=5, n_samples=3, generator=gen, lam=0.5)
    assert res.samples.shape == (3, 2, 1, *shape)
    assert res.info["residual"].shape == (3, 2)
    assert res.info["residual"].max() < 1e-12
    assert res.info["nfe"] == 5 and res.info["steps"] == 5


def test_without_final_dc_lambda_below_one_is_not_consistent(kcrop, prior, gen):
    op = kcrop(8)
    y = op(prior.sample(1, gen))
    res = kspace_mix(op, y, prior, steps=5, generator=gen, lam=0.3, final_dc=False)
    assert res.info["residual"].min() > 1e-3


def test_ancestral_step_matches_abc_form_and_ddim_form(prior, gen):
    st = schedule(prior, 10, "uniform")[3]
    x_t = torch.randn(4, 1, 16, 16, generator=gen, dtype=torch.float64)
    eps = prior.eps(x_t, torch.tensor(st.t))
    x0 = (x_t - st.sigma_t * eps) / st.alpha_t
    a = ancestral_step(x_t, eps, st, 1.0, torch.Generator().manual_seed(5))
    b = step_from_x0(x_t, x0, st, 1.0, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b)
    # a, b, c from the VDM posterior q(z_s | z_t, x): explicit formula, independent of Step
    gt = prior.gamma(torch.tensor(st.t, dtype=torch.float64))
    gs = prior.gamma(torch.tensor(st.s, dtype=torch.float64))
    al = lambda g: torch.sigmoid(-g).sqrt()  # noqa: E731
    sg = lambda g: torch.sigmoid(g).sqrt()  # noqa: E731
    z = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    ref = al(gs) / al(gt) * (x_t + sg(gt) * torch.expm1(gs - gt) * eps)
    ref = ref + (-(sg(gs) ** 2) * torch.expm1(gs - gt)).sqrt() * z
    torch.testing.assert_close(a, ref)
    # eta = 0 draws no noise and is the DDIM update alpha_s x0 + sigma_s eps
    g = torch.Generator().manual_seed(9)
    d = step_from_x0(x_t, x0, st, 0.0, g)
    torch.testing.assert_close(d, st.alpha_s * x0 + st.sigma_s * eps)


def test_time_grids(prior):
    u = time_grid(prior, 4, "uniform")
    torch.testing.assert_close(u, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0], dtype=torch.float64))
    cos = GaussianPrior.stationary((16, 16), schedule="cosine")
    ts = time_grid(cos, 6, "logsnr")
    g = cos.gamma(ts)
    assert ts[0] == 1 and ts[-1] == 0 and bool((ts[1:] < ts[:-1]).all())
    torch.testing.assert_close(g[1:] - g[:-1], (g[1:] - g[:-1]).mean().expand(6), atol=1e-6, rtol=0)


def test_same_seed_same_samples_and_seed_zero_recorded(kcrop, prior):
    op = kcrop(8)
    y = op(prior.sample(1, torch.Generator().manual_seed(3)))
    r1 = kspace_mix(op, y, prior, steps=4, generator=torch.Generator().manual_seed(0))
    r2 = kspace_mix(op, y, prior, steps=4, generator=torch.Generator().manual_seed(0))
    r3 = kspace_mix(op, y, prior, steps=4, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(r1.samples, r2.samples, rtol=0, atol=0)
    assert not torch.equal(r1.samples, r3.samples)
    assert r1.info["seed"] == 0


def test_lambda_schedule_and_eta0_and_logsnr_grid_run(kcrop, prior, gen):
    op = kcrop(8)
    y = op(prior.sample(1, gen))
    seen = []
    res = kspace_mix(
        op,
        y,
        prior,
        steps=6,
        generator=gen,
        lam=lambda t: 1.0 - 0.5 * t,
        eta=0.0,
        grid="logsnr",
        callback=lambda d: seen.append(d["t"]),
    )
    assert len(seen) == 6 and seen[0] == 1.0
    assert res.info["residual"].max() < 1e-12


def test_noisy_measurement_soft_final_step(kcrop, prior, gen):
    """With sigma_y > 0 the last step does not interpolate the noise: the residual stays at the
    noise level instead of 0 (hard replacement would give 0)."""
    op = kcrop(8)
    x = prior.sample(1, gen)
    sigma_y = 0.5
    y = op(x) + sigma_y * torch.randn(op(x).shape, generator=gen, dtype=torch.complex128)
    res = kspace_mix(op, y, prior, steps=20, n_samples=4, generator=gen, noise_sigma=sigma_y)
    rel_noise = sigma_y * 8 / y.abs().pow(2).sum().sqrt()
    assert bool((res.info["residual"] > 0.3 * rel_noise).all())
