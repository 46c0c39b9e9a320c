"""DiffPIR: the proximal data step and the noiseless floor."""

from __future__ import annotations

import pytest
import torch

from invdiff.solvers.diffpir import diffpir
from invdiff.solvers.problem import SolverInputError


def test_noiseless_data_is_fitted_with_the_floor(prior, kcrop, gen):
    op = kcrop(8)
    y = op(prior.sample(2, gen))
    res = diffpir(op, y, prior, steps=20, n_samples=4, generator=gen)
    assert res.info["sigma_n"] == pytest.approx(1e-3)
    assert float(res.info["residual"].max()) < 0.02
    assert float(res.std.mean()) > 0.05  # still a sampler: the unmeasured part varies


def test_proximal_step_weights_data_by_rho(prior, kcrop, gen):
    """A large measurement noise makes rho large: the data barely move the samples."""
    op = kcrop(8)
    y = op(prior.sample(1, gen))
    close = diffpir(op, y, prior, steps=10, n_samples=8, generator=gen, noise_sigma=0.0)
    loose = diffpir(op, y, prior, steps=10, n_samples=8, generator=gen, noise_sigma=100.0)
    assert float(loose.info["residual"].mean()) > 10 * float(close.info["residual"].mean())


def test_bad_options(prior, kcrop):
    op = kcrop(8)
    y = op(prior.sample(1))
    for kw, msg in [
        ({"reg_lambda": 0}, "reg_lambda"),
        ({"zeta": 1.5}, "zeta"),
        ({"noise_floor": 0}, "noise_floor"),
    ]:
        with pytest.raises(SolverInputError, match=msg):
            diffpir(op, y, prior, steps=2, **kw)


def test_diffpir_zeta_zero_is_deterministic_given_the_start(prior, kcrop):
    op = kcrop(8)
    y = op(prior.sample(1, torch.Generator().manual_seed(0)))
    a = diffpir(op, y, prior, steps=5, zeta=0.0, generator=torch.Generator().manual_seed(4))
    b = diffpir(op, y, prior, steps=5, zeta=0.0, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(a.samples, b.samples, rtol=0, atol=0)
