"""Every diffusion solver runs against a (tiny, untrained) VDM network prior."""

from __future__ import annotations

import pytest
import torch

from invdiff.operators import KCrop
from invdiff.priors.config import VDMConfig
from invdiff.priors.vdm import VDM, VDMPrior
from invdiff.solvers.registry import get_solver


@pytest.fixture(scope="module")
def vdm_prior():
    model = VDM(
        VDMConfig.preset("tiny", schedule="learned"), generator=torch.Generator().manual_seed(0)
    )
    return VDMPrior(model)


@pytest.mark.parametrize("name", ["kspace-mix", "ddnm", "dps", "diffpir"])
def test_solver_runs_with_a_network_prior(vdm_prior, name):
    op = KCrop((16, 16), (8, 8))
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    y = op(x)
    res = get_solver(name)(
        op,
        y,
        vdm_prior,
        steps=3,
        n_samples=2,
        grid="logsnr",
        generator=torch.Generator().manual_seed(0),
    )
    assert res.samples.shape == (2, 2, 1, 16, 16) and res.samples.dtype == torch.float32
    assert bool(torch.isfinite(res.samples).all())
    if name in ("kspace-mix", "ddnm"):
        assert float(res.info["residual"].max()) < 1e-5


def test_dps_guidance_uses_the_network_gradient(vdm_prior):
    """With zeta -> tiny the DPS samples approach unguided ancestral samples; a normal zeta
    moves them (the gradient through the network is nonzero)."""
    op = KCrop((16, 16), (8, 8))
    y = op(torch.zeros(1, 1, 16, 16))
    dps = get_solver("dps")
    a = dps(op, y, vdm_prior, steps=3, zeta=1e-9, generator=torch.Generator().manual_seed(0))
    b = dps(op, y, vdm_prior, steps=3, zeta=1.0, generator=torch.Generator().manual_seed(0))
    assert float((a.samples - b.samples).abs().max()) > 1e-3


def test_double_precision_measurement_with_a_float32_network(vdm_prior):
    op = KCrop((16, 16), (8, 8))
    y = op(torch.zeros(1, 1, 16, 16, dtype=torch.float64))
    res = get_solver("kspace-mix")(op, y, vdm_prior, steps=2)
    assert res.samples.dtype == torch.float32
