"""The shared signature, the registry, capability checks and bad input."""

from __future__ import annotations

import warnings

import pytest
import torch

from invdiff.operators import Identity, KCrop
from invdiff.priors.gaussian import GaussianPrior
from invdiff.solvers.problem import SamplingError, SolverInputError
from invdiff.solvers.registry import UnknownSolverError, get_solver, list_solvers

ALL = [
    "adjoint",
    "bicubic",
    "bilinear",
    "cs-tv",
    "cs-wavelet",
    "ddnm",
    "diffpir",
    "dps",
    "kspace-mix",
    "zero-fill",
]
DIFFUSION = ["kspace-mix", "ddnm", "dps", "diffpir"]


@pytest.fixture
def problem(prior, kcrop, gen):
    op = kcrop(8)
    return op, op(prior.sample(2, gen)), prior


def test_registry_lists_and_loads_every_solver():
    assert list_solvers() == ALL
    for name in ALL:
        assert callable(get_solver(name))


def test_unknown_solver_lists_known_ones():
    with pytest.raises(UnknownSolverError, match="known solvers: adjoint, bicubic"):
        get_solver("ddrm")


@pytest.mark.parametrize("name", ALL)
def test_shared_signature_and_result(name, problem, gen):
    op, y, prior = problem
    res = get_solver(name)(
        op, y, prior, steps=3, n_samples=2, generator=gen, noise_sigma=0.0, an_option_nobody_uses=1
    )
    n = 2 if name in DIFFUSION else 1
    assert res.samples.shape == (n, 2, 1, 16, 16)
    assert res.mean.shape == res.std.shape == (2, 1, 16, 16)
    assert bool(torch.isfinite(res.samples).all())
    assert res.info["residual"].shape == (n, 2)
    assert {"steps", "nfe", "wall_time", "seed", "solver"} <= set(res.info)
    assert res.info["solver"] == name
    if name in DIFFUSION:
        assert res.info["nfe"] == 3 and res.info["seed"] == 0


def test_single_slice_measurement_shape_is_accepted(problem, gen):
    op, y, prior = problem
    res = get_solver("kspace-mix")(op, y[0, 0], prior, steps=2, generator=gen)
    assert res.samples.shape == (1, 1, 1, 16, 16)


@pytest.mark.parametrize("name", ["kspace-mix", "ddnm"])
def test_pinv_capability_message(name, prior):
    op = KCrop((16, 16), (8, 8)) @ Identity((16, 16))  # a composition has no closed-form pinv
    y = op(prior.sample(1))
    with pytest.raises(SolverInputError, match=f"{name} needs an operator with pinv; .* use dps"):
        get_solver(name)(op, y, prior, steps=2)


@pytest.mark.parametrize("name", DIFFUSION)
def test_bad_input(name, problem):
    op, y, prior = problem
    solve = get_solver(name)
    with pytest.raises(SolverInputError, match=r"y must have shape \(B, 1, \*\(8, 8\)\)"):
        solve(op, y[..., :7], prior, steps=2)
    bad = y.clone()
    bad[0, 0, 1, 1] = float("nan")
    with pytest.raises(SolverInputError, match="NaN or Inf"):
        solve(op, bad, prior, steps=2)
    bad[0, 0, 1, 1] = complex(float("inf"), 0)
    with pytest.raises(SolverInputError, match="NaN or Inf"):
        solve(op, bad, prior, steps=2)
    with pytest.raises(SolverInputError, match="steps must be an integer >= 1, got 0"):
        solve(op, y, prior, steps=0)
    with pytest.raises(SolverInputError, match="n_samples must be an integer >= 1, got 0"):
        solve(op, y, prior, steps=2, n_samples=0)
    big = KCrop((32, 32), (8, 8))
    with pytest.raises(SolverInputError, match=r"images of shape \(32, 32\) but the prior models"):
        solve(big, y, prior, steps=2)
    with pytest.raises(SolverInputError, match="noise_sigma"):
        solve(op, y, prior, steps=2, noise_sigma=-1.0)
    with pytest.raises(SolverInputError, match="measures complex values but y is torch.float32"):
        solve(op, y.real.float(), prior, steps=2)  # half of the k-space thrown away
    with pytest.raises(SolverInputError, match="n_samples must be an integer >= 1, got True"):
        solve(op, y, prior, steps=2, n_samples=True)


@pytest.mark.parametrize("lam", [0.0, -0.5, 1.5, float("nan")])
def test_lambda_outside_unit_interval(problem, lam):
    op, y, prior = problem
    with pytest.raises(SolverInputError, match="lambda must be in \\(0, 1\\]"):
        get_solver("kspace-mix")(op, y, prior, steps=2, lam=lam)


def test_lambda_schedule_outside_unit_interval_names_t(problem):
    op, y, prior = problem
    with pytest.raises(SolverInputError, match="at t="):
        get_solver("kspace-mix")(op, y, prior, steps=4, lam=lambda t: 2 * t)


class _NaNPrior(GaussianPrior):
    """Breaks down below t = 0.5."""

    def eps(self, x_t, t):
        out = super().eps(x_t, t)
        return out * float("nan") if float(t) < 0.5 else out


@pytest.mark.parametrize("name", DIFFUSION)
def test_nan_during_sampling_names_the_step(name, problem):
    op, y, _ = problem
    prior = _NaNPrior(
        torch.full((1, 16, 16), 0.1, dtype=torch.float64),
        torch.ones(1, 16, 16, dtype=torch.float64),
    )
    with pytest.raises(SamplingError, match=rf"{name}: non-finite .* at step 4/4 \(t=0.2500\)"):
        get_solver(name)(op, y, prior, steps=4, generator=torch.Generator().manual_seed(0))


def test_relative_residual_is_nan_for_zero_measurement(problem):
    op, y, prior = problem
    res = get_solver("zero-fill")(op, torch.zeros_like(y), prior)
    assert bool(torch.isnan(res.info["residual"]).all())
    res = get_solver("zero-fill")(op, y, prior)
    assert bool(torch.isfinite(res.info["residual"]).all())


def test_dps_says_that_it_does_not_use_the_noise_level(problem):
    op, y, prior = problem
    with pytest.warns(UserWarning, match="dps: noise_sigma 0.1 is not used"):
        get_solver("dps")(op, y, prior, steps=2, noise_sigma=0.1)


def test_dps_warns_when_zeta_over_many_steps_would_over_correct(problem):
    """zeta 1 suits ~50 steps; at 1000 it over-corrects (docs/results.md), so it says so and
    suggests a step-scaled zeta; the default 50 steps and zeta 0.1 at 1000 stay quiet."""
    op, y, prior = problem
    with pytest.warns(UserWarning, match=r"dps: zeta 1 over 300 steps .* try zeta ~0.33"):
        get_solver("dps")(op, y, prior, steps=300)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        get_solver("dps")(op, y, prior, steps=50)
        get_solver("dps")(op, y, prior, steps=1000, zeta=0.1)
