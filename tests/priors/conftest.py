"""Shared fixtures for the prior tests: tiny VDM configurations and seeded generators."""

from __future__ import annotations

import pytest
import torch

from invdiff.priors.vdm import VDM, VDMConfig


@pytest.fixture
def tiny_config() -> VDMConfig:
    """16 x 16, two levels of 8 and 16 channels, attention at 8 x 8, a 16-unit schedule net."""
    return VDMConfig.preset("tiny")


def make_vdm(config: VDMConfig, seed: int = 0) -> VDM:
    """A VDM with deterministic random weights, output layers perturbed away from zero and a
    non-linear learned schedule."""
    torch.manual_seed(seed)
    model = VDM(config, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for p in model.net.parameters():
            if p.ndim > 1 and not p.any():  # zero-initialised layers: make the net non-trivial
                p.normal_(0.0, 0.05)
        # vdm's schedule init (std 0.01) is linear to ~1e-4, where w1 cancels in the rescaling
        # to the endpoints; tests of the schedule's gradients need a non-linear shape
        schedule = model.schedule
        if hasattr(schedule, "w2"):
            schedule.w2.mul_(100.0)
            schedule.w3.mul_(100.0)
    return model


@pytest.fixture
def tiny_vdm(tiny_config: VDMConfig) -> VDM:
    return make_vdm(tiny_config)


@pytest.fixture
def vdm_factory():
    """``make_vdm(config, seed=0)`` for tests that need several models."""
    return make_vdm


@pytest.fixture
def images() -> torch.Tensor:
    """Eight smooth 16 x 16 images in [-1, 1]."""
    g = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 16), torch.linspace(-1, 1, 16), indexing="ij")
    freq = torch.rand(8, 1, 1, 1, generator=g) * 3 + 1
    phase = torch.rand(8, 1, 1, 1, generator=g) * 6
    return torch.sin(freq * xx + phase) * torch.cos(freq * yy) * 0.9
