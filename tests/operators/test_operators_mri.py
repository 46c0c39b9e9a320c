"""Cartesian masks, SENSE pseudo-inverses against dense linear algebra, ESPIRiT maps."""

import numpy as np
import pytest
import sigpy
import torch

from invdiff.operators import from_spec
from invdiff.operators.mri import KMask, Sense, birdcage_maps, cartesian_mask, espirit_maps


def _dense(op, dtype=torch.complex128):
    """The matrix of ``op`` (outputs flattened) by applying it to the standard basis."""
    n = int(np.prod(op.ishape))
    basis = torch.eye(n, dtype=dtype).reshape(n, *op.ishape)
    return op(basis).reshape(n, -1).T


@pytest.mark.parametrize("pattern", ["random", "uniform"])
def test_mask_has_full_rows_centre_and_rate(pattern):
    mask = cartesian_mask((64, 37), 4.0, 8, pattern, torch.Generator().manual_seed(0))
    rows = mask[:, 0]
    assert torch.equal(mask, rows[:, None].expand(64, 37))  # phase-encode lines are whole rows
    assert rows[28:36].all()  # the ACS block, start 64 // 2 - 8 // 2
    if pattern == "random":
        assert int(rows.sum()) == 16  # round(64 / 4)
    else:
        assert rows[32::4].all() and rows[0:32:4].all()  # every 4th row from the centre
        assert int(rows.sum()) == 16 + 6  # 16 uniform rows + ACS rows 28..35 other than 28, 32


def test_random_mask_is_seeded():
    a = from_spec("kmask:accel=4,acs=4,seed=3", (32, 8)).mask
    b = from_spec("kmask:accel=4,acs=4,seed=3", (32, 8)).mask
    c = from_spec("kmask:accel=4,acs=4,seed=4", (32, 8)).mask
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_kmask_default_acs_and_selection_unitary():
    op = from_spec("kmask:accel=4", (50, 9))
    assert op.mask[:, 0][23:27].all()  # round(0.08 * 50) = 4 central rows
    mask, unitary = op.selection_unitary()
    x = torch.randn(50, 9, dtype=torch.complex128, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(op(x), unitary(x) * mask)


def test_kmask_pinv_real_reproduces_y_on_real_images():
    op = KMask(cartesian_mask((16, 15), 3.0, 3, "random", torch.Generator().manual_seed(1)))
    x = torch.randn(2, 16, 15, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y = op(x)
    torch.testing.assert_close(op(op.pinv_real(y)), y, rtol=0, atol=1e-12)


def test_sense_closed_form_pinv_matches_dense_pinv():
    maps = birdcage_maps(3, (7, 6)) * torch.linspace(0.2, 1.0, 42).reshape(7, 6)
    op = Sense(maps)
    y = torch.randn(2, 3, 7, 6, dtype=torch.complex128, generator=torch.Generator().manual_seed(3))
    dense = torch.linalg.pinv(_dense(op))
    ref = (dense @ y.reshape(2, -1).T).T.reshape(2, 7, 6)
    torch.testing.assert_close(op.pinv(y), ref)


def test_cg_pinv_of_undersampled_sense_matches_dense_pinv():
    """The CG fallback (no closed form for kmask @ sense) reaches the minimum-norm solution."""
    shape = (8, 7)
    op = from_spec("sense:birdcage=2|kmask:accel=3,acs=2,seed=0", shape)
    assert not op.has_pinv
    y = torch.randn(2, *op.oshape, dtype=torch.complex128,
                    generator=torch.Generator().manual_seed(4))
    dense = torch.linalg.pinv(_dense(op), rtol=1e-10)
    ref = (dense @ y.reshape(2, -1).T).T.reshape(2, *shape)
    torch.testing.assert_close(op.pinv(y, maxiter=400), ref, rtol=1e-6, atol=1e-6)
    # real-image least squares: the dense pinv of [Re A; Im A]
    a = _dense(op)
    stacked = torch.cat([a.real, a.imag])
    yr = torch.cat([y.reshape(2, -1).real.T, y.reshape(2, -1).imag.T])
    ref_real = (torch.linalg.pinv(stacked, rtol=1e-10) @ yr).T.reshape(2, *shape)
    torch.testing.assert_close(op.pinv_real(y, maxiter=400), ref_real, rtol=1e-6, atol=1e-6)


def test_espirit_maps_recover_the_coil_subspace():
    """ESPIRiT maps from fully sampled multi-coil k-space span the true maps pixel-wise."""
    shape = (24, 24)
    true = birdcage_maps(4, shape)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 24), torch.linspace(-1, 1, 24), indexing="ij")
    image = ((xx**2 + yy**2) < 0.8).to(torch.complex128) * (1 + 0.3 * xx)
    ksp = from_spec("fft", shape)(Sense(true)(image))
    est = espirit_maps(ksp, calib=12, thresh=0.02, kernel=5, crop=0.9)
    assert est.shape == (4, 24, 24)
    inside = (xx**2 + yy**2) < 0.6
    # maps are unique up to a pixel-wise phase: |<est, true>| = |est| |true| inside the object
    corr = (est.conj() * true).sum(0).abs()[inside]
    norms = (est.abs().square().sum(0).sqrt() * true.abs().square().sum(0).sqrt())[inside]
    assert float((corr / norms).min()) > 0.99


def test_espirit_spec_reads_kspace_file(tmp_path):
    shape = (24, 24)
    ksp = from_spec("sense:birdcage=2|fft", shape)(torch.ones(shape, dtype=torch.complex128))
    np.save(tmp_path / "ksp.npy", ksp.numpy())
    op = from_spec(f"sense:espirit={tmp_path / 'ksp.npy'},calib=8,kernel=4", shape)
    assert op.oshape == (2, 24, 24)
    with pytest.raises(ValueError, match="calib 30 larger"):
        from_spec(f"sense:espirit={tmp_path / 'ksp.npy'},calib=30", shape)


def test_birdcage_maps_are_sigpys():
    ref = sigpy.mri.birdcage_maps((3, 9, 8))
    np.testing.assert_allclose(birdcage_maps(3, (9, 8)).numpy(), ref)
