"""Measurements with a smooth phase, and the lambda sweep."""

from __future__ import annotations

import pytest
import torch

from invdiff.intensity import from_prior_range, measurement_to_prior_range
from invdiff.operators import KCrop
from invdiff.priors.gaussian import GaussianPrior
from invdiff.solvers.kspace_mix import kspace_mix
from invdiff.solvers.phase import demodulate, solve_with_phase
from invdiff.solvers.problem import SolverInputError
from invdiff.solvers.sweep import lambda_sweep

H = 32
#: Stated margin: removing an estimated smooth phase costs at most 5 % magnitude RMSE.
PHASE_MARGIN = 1.05


@pytest.fixture(scope="module")
def magnitude_problem():
    prior = GaussianPrior.stationary((H, H), mean=0.0)
    op = KCrop((H, H), (16, 16))
    x = prior.sample(4, torch.Generator().manual_seed(0)).clamp(-1, 3)
    m = (x + 1) / 2  # physical magnitude >= 0 with scale s = 1
    i = torch.arange(H, dtype=torch.float64)
    phi = 1.5 * torch.sin(2 * torch.pi * i / H)[:, None] + 0.8 * torch.cos(2 * torch.pi * i / H)
    return prior, op, m, phi + 0.5


def _rmse(a, b):
    return float((a - b).pow(2).mean().sqrt())


def test_constant_phase_is_removed_exactly(magnitude_problem):
    _, op, m, _ = magnitude_problem
    y = op(m * torch.exp(torch.tensor(0.7j, dtype=torch.complex128)))
    phase = torch.exp(torch.tensor(0.7j, dtype=torch.complex128)).expand(m.shape)
    torch.testing.assert_close(demodulate(op, y, phase), op(m), atol=1e-12, rtol=0)


def test_smooth_phase_costs_at_most_the_stated_margin(magnitude_problem):
    prior, op, m, phi = magnitude_problem
    kw = {"steps": 10, "n_samples": 8}
    y0 = measurement_to_prior_range(op(m), 1.0, op, (H, H))
    ref = kspace_mix(op, y0, prior, generator=torch.Generator().manual_seed(1), **kw)
    e_ref = _rmse(from_prior_range(ref.mean, 1.0), m)

    y = op(m * torch.exp(1j * phi))
    out = solve_with_phase(
        kspace_mix, op, y, prior, scale=1.0, generator=torch.Generator().manual_seed(1), **kw
    )
    e_phase = _rmse(out.magnitude.mean(0), m)
    assert e_phase <= PHASE_MARGIN * e_ref
    assert out.images.shape == (8, 4, 1, H, H) and out.images.is_complex()
    torch.testing.assert_close(out.images.abs(), out.magnitude.abs())

    # ignoring the phase (keeping the real part of the data) is far worse
    y_naive = measurement_to_prior_range(op(op.pinv_real(y)), 1.0, op, (H, H))
    naive = kspace_mix(op, y_naive, prior, generator=torch.Generator().manual_seed(1), **kw)
    assert _rmse(from_prior_range(naive.mean, 1.0), m) > 1.5 * e_ref


def test_phase_needs_complex_measurement(magnitude_problem):
    prior, op, m, _ = magnitude_problem
    with pytest.raises(SolverInputError, match="complex"):
        solve_with_phase(kspace_mix, op, op(m).real, prior)


def test_lambda_sweep_shares_the_seed(prior, kcrop, gen):
    op = kcrop(8)
    y = op(prior.sample(1, gen))
    runs = lambda_sweep(op, y, prior, (0.1, 1.0), seed=3, steps=5, n_samples=2)
    assert list(runs) == [0.1, 1.0]
    assert all(r.info["seed"] == 3 for r in runs.values())
    again = lambda_sweep(op, y, prior, (0.1,), seed=3, steps=5, n_samples=2)
    torch.testing.assert_close(again[0.1].samples, runs[0.1].samples, rtol=0, atol=0)
    # a larger lambda pulls the samples closer to the measurement
    assert float(runs[1.0].info["residual"].mean()) < float(runs[0.1].info["residual"].mean())
