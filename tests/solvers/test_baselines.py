"""Baselines: exactness where they should be exact, interpolation geometry, CS objectives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from invdiff.operators import Downsample
from invdiff.operators.fourier import KCrop
from invdiff.solvers.baselines import adjoint, bicubic, bilinear, cs_tv, cs_wavelet, zero_fill
from invdiff.solvers.problem import SolverInputError


def _cosine(shape=(16, 16), period=16.0, phase=0.3):
    i = torch.arange(shape[0], dtype=torch.float64)
    j = torch.arange(shape[1], dtype=torch.float64)
    img = (
        torch.cos(2 * torch.pi * i / period + phase)[:, None]
        * torch.cos(2 * torch.pi * j / period)[None, :]
    )
    return img[None, None]


def test_zero_fill_is_real_least_squares_and_adjoint_is_re_ah(prior, kcrop, gen):
    op = kcrop(8)
    x = prior.sample(2, gen)
    y = op(x)
    zf = zero_fill(op, y, prior)
    assert float(zf.info["residual"].max()) < 1e-12  # exact on the unpaired row too
    torch.testing.assert_close(adjoint(op, y, prior).mean, op.adjoint(y).real)
    mag = zero_fill(op, y, prior, part="magnitude")
    torch.testing.assert_close(mag.mean, op.adjoint(y).abs())
    with pytest.raises(SolverInputError, match="part"):
        zero_fill(op, y, prior, part="phase")


@pytest.mark.parametrize("solver", [bilinear, bicubic])
@pytest.mark.parametrize("shape", [(16, 16), (15, 13)])
def test_interpolation_preserves_constants(solver, shape):
    from invdiff.priors.gaussian import GaussianPrior

    prior = GaussianPrior.stationary(shape)
    op = KCrop(shape, (8, 6))
    c = torch.full((1, 1, *shape), 0.7, dtype=torch.float64)
    torch.testing.assert_close(solver(op, op(c), prior).mean, c, atol=1e-12, rtol=0)


def test_interpolation_is_aligned_with_the_full_grid(prior):
    """A band-limited image is recovered closely; a half-pixel shift would cost far more."""
    op = KCrop((16, 16), (8, 8))
    s = _cosine()
    err_cubic = float((bicubic(op, op(s), prior).mean - s).abs().max())
    err_lin = float((bilinear(op, op(s), prior).mean - s).abs().max())
    assert err_cubic < 0.06 and err_lin < 0.16
    shifted = torch.roll(bicubic(op, op(s), prior).mean, 1, dims=-1)
    assert float((shifted - s).abs().max()) > 0.3


def test_interpolation_for_downsample_and_refusal_elsewhere(prior):
    ds = Downsample((16, 16), 2)
    s = _cosine(period=16.0)
    out = bicubic(ds, ds(s), prior).mean
    err = float((out - s).abs().max())  # block averaging attenuates a little
    assert err < 0.1
    assert float((torch.roll(out, 1, dims=-2) - s).abs().max()) > 2 * err
    from invdiff.operators import Identity

    with pytest.raises(SolverInputError, match="kcrop or downsample"):
        bilinear(Identity((16, 16)), s, prior)


def _tv(x: np.ndarray) -> float:
    return float(np.abs(np.diff(x, axis=0)).sum() + np.abs(np.diff(x, axis=1)).sum())


@pytest.mark.parametrize("recon", [cs_wavelet, cs_tv])
def test_cs_reduces_its_objective_and_tends_to_least_squares(recon, prior, kcrop, gen):
    op = kcrop(8)
    x = prior.sample(1, gen)
    y = op(x)
    ls = zero_fill(op, y, prior).mean
    loose = recon(op, y, prior, lamda=1e-6, max_iter=200)
    assert float(loose.info["residual"].max()) < 1e-3  # tiny lamda: a least-squares solution
    tight = recon(op, y, prior, lamda=0.05, max_iter=200).mean
    assert float(tight.imag.abs().max() if tight.is_complex() else 0.0) == 0.0

    if recon is cs_tv:

        def reg(v):
            return _tv(v[0, 0].numpy())
    else:
        import sigpy as sp

        w = sp.linop.Wavelet([16, 16], wave_name="db4")

        def reg(v):
            return float(np.abs(w(v[0, 0].numpy())).sum())

    def objective(v):
        return 0.5 * float((op(v) - y).abs().pow(2).sum()) + 0.05 * reg(v)

    assert objective(tight) < objective(ls)
