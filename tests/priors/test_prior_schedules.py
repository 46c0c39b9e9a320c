"""Noise schedules: monotone, right endpoints, exact derivatives, and the closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from invdiff.priors.schedules import (
    CosineSchedule,
    LearnedSchedule,
    LinearSchedule,
    make_schedule,
)

T_GRID = torch.linspace(0.0, 1.0, 2001)


def _randomise(schedule: LearnedSchedule, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in schedule.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 3)
        schedule.gamma_1.copy_(schedule.gamma_0 + 1.0 + torch.rand((), generator=g) * 10)


@pytest.mark.parametrize("seed", range(5))
def test_learned_gamma_strictly_increasing_for_random_parameters(seed):
    schedule = LearnedSchedule(-13.3, 5.0, n_features=64)
    _randomise(schedule, seed)  # negative weights too: DenseMonotone uses |w|
    with torch.no_grad():
        gamma = schedule(T_GRID)
    assert torch.all(gamma[1:] > gamma[:-1])
    torch.testing.assert_close(gamma[0], schedule.gamma_0.detach(), atol=1e-5, rtol=0)
    torch.testing.assert_close(gamma[-1], schedule.gamma_1.detach(), atol=1e-5, rtol=0)


def test_learned_gamma_receives_gradients():
    schedule = LearnedSchedule(
        -13.3, 5.0, n_features=32, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():  # away from vdm's (linear) init, where w1 cancels like b1
        schedule.w2.mul_(100.0)
        schedule.w3.mul_(100.0)
    gamma, dgamma = schedule.gamma_and_derivative(torch.rand(16, generator=torch.Generator()))
    (gamma.sum() + dgamma.sum()).backward()
    for name, p in schedule.named_parameters():
        if name == "b1":  # cancels in the rescaling to the endpoints, by construction
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("name", ["learned", "linear", "cosine"])
def test_derivative_matches_autograd(name):
    schedule = make_schedule(
        name, -10.0, 6.0, n_features=32, generator=torch.Generator().manual_seed(3)
    )
    t = torch.linspace(0.02, 0.98, 25, requires_grad=True)
    gamma, dgamma = schedule.gamma_and_derivative(t)
    (auto,) = torch.autograd.grad(gamma.sum(), t)
    torch.testing.assert_close(dgamma, auto, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["learned", "linear", "cosine"])
def test_endpoints_and_monotone(name):
    schedule = make_schedule(name, -13.3, 5.0, n_features=32)
    with torch.no_grad():
        gamma = schedule(T_GRID)
    assert torch.all(gamma[1:] > gamma[:-1])
    torch.testing.assert_close(gamma[[0, -1]], torch.tensor([-13.3, 5.0]), atol=1e-4, rtol=0)


def test_linear_matches_discrete_ddpm_alpha_bar():
    """gamma(u) = log(1/alpha_bar - 1), alpha_bar = prod(1 - beta_i), beta 1e-4..0.02, T=1000."""
    schedule = LinearSchedule(-13.3, 5.0)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    alpha_bar = torch.cumprod(1 - betas, 0)
    for step in (100, 300, 500, 600):
        u = step / 1000
        t = (u - schedule.u0) / (schedule.u1 - schedule.u0)
        want = math.log(1 / alpha_bar[step - 1].item() - 1)
        got = schedule(torch.tensor(t)).item()
        assert abs(got - want) < 0.02 * max(1.0, abs(want)), (step, got, want)


def test_cosine_alpha_is_cosine_of_remapped_time():
    schedule = CosineSchedule(-13.3, 5.0)
    t = torch.linspace(0, 1, 11)
    u = schedule.u0 + (schedule.u1 - schedule.u0) * t.double()
    alpha2 = torch.sigmoid(-schedule(t).double())
    torch.testing.assert_close(alpha2, torch.cos(0.5 * math.pi * u) ** 2, rtol=1e-5, atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="gamma_min < gamma_max"):
        LinearSchedule(5.0, -13.3)
    with pytest.raises(ValueError, match="unknown schedule"):
        make_schedule("sigmoid", -13.3, 5.0)


def test_schedule_ignores_autocast():
    schedule = LearnedSchedule(-13.3, 5.0, n_features=32)
    t = torch.linspace(0, 1, 7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        g_auto = schedule(t)
    assert g_auto.dtype == torch.float32
    torch.testing.assert_close(g_auto, schedule(t))


def test_learned_schedule_initialised_as_vdm():
    """vdm's NoiseSchedule_NNet draws l2, l3 from ``nn.initializers.normal()`` (std 0.01), so
    the initial gamma is the linear schedule gamma_min + (gamma_max - gamma_min) t to ~1e-3."""
    schedule = LearnedSchedule(-13.3, 5.0, generator=torch.Generator().manual_seed(0))
    for w in (schedule.w2, schedule.w3):
        assert 0.008 < float(w.detach().std()) < 0.012
    with torch.no_grad():
        gamma = schedule(T_GRID)
    torch.testing.assert_close(gamma, -13.3 + 18.3 * T_GRID, atol=1e-3, rtol=0)
