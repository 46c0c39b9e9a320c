"""Forward and adjoint agree with the equivalent sigpy.linop compositions (complex128)."""

import numpy as np
import pytest
import sigpy
import sigpy.mri
import torch

from invdiff.operators import from_spec
from invdiff.operators.mri import KMask, Sense, birdcage_maps, cartesian_mask

SHAPES = [(16, 16), (37, 31), (16, 15)]


def _rand(shape, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def _agree(ours, theirs, x, y):
    np.testing.assert_allclose(ours(torch.from_numpy(x)).numpy(), theirs(x), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.adjoint(torch.from_numpy(y)).numpy(), theirs.H(y), rtol=0,
                               atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_fft_matches_sigpy_linop_fft(shape):
    full = (2, *shape)
    ref = sigpy.linop.FFT(full, axes=(-2, -1), center=True)
    _agree(from_spec("fft", shape), ref, _rand(full, 0), _rand(full, 1))


@pytest.mark.parametrize(("shape", "crop"), [((16, 16), (8, 8)), ((37, 31), (8, 7)),
                                              ((37, 31), (9, 30)), ((16, 15), (7, 8))])
def test_kcrop_matches_sigpy_resize_after_fft(shape, crop):
    full, out = (2, *shape), (2, *crop)
    ref = sigpy.linop.Resize(out, full) * sigpy.linop.FFT(full, axes=(-2, -1), center=True)
    op = from_spec(f"kcrop:{crop[0]}x{crop[1]}", shape)
    _agree(op, ref, _rand(full, 2), _rand(out, 3))


@pytest.mark.parametrize("shape", SHAPES)
def test_kmask_matches_sigpy_multiply_after_fft(shape):
    mask = cartesian_mask(shape, 3.0, 4, "random", torch.Generator().manual_seed(0))
    full = (2, *shape)
    ref = sigpy.linop.Multiply(full, mask.numpy().astype(float)) * sigpy.linop.FFT(
        full, axes=(-2, -1), center=True)
    _agree(KMask(mask), ref, _rand(full, 4), _rand(full, 5))


@pytest.mark.parametrize("shape", SHAPES)
def test_sense_kmask_matches_sigpy_compositions(shape):
    maps = birdcage_maps(4, shape)
    mask = cartesian_mask(shape, 2.0, 4, "uniform")
    mps = maps.numpy()
    multiply = sigpy.linop.Multiply(shape, mps)
    fft = sigpy.linop.FFT(mps.shape, axes=(-2, -1), center=True)
    x, y = _rand(shape, 6), _rand(mps.shape, 7)
    _agree(Sense(maps), multiply, x, y)
    _agree(from_spec("fft", shape) @ Sense(maps), fft * multiply, x, y)
    ours = KMask(mask) @ Sense(maps)
    _agree(ours, sigpy.linop.Multiply(mps.shape, mask.numpy().astype(float)) * fft * multiply,
           x, y)
    # sigpy's own SENSE operator applies sqrt(weights), the same for a 0/1 mask.
    _agree(ours, sigpy.mri.linop.Sense(mps, weights=mask.numpy().astype(float)), x, y)


def test_sense_kcrop_matches_sigpy():
    shape, crop = (37, 31), (9, 8)
    maps = birdcage_maps(3, shape)
    mps = maps.numpy()
    ref = (sigpy.linop.Resize((3, *crop), mps.shape)
           * sigpy.linop.FFT(mps.shape, axes=(-2, -1), center=True)
           * sigpy.linop.Multiply(shape, mps))
    op = from_spec("sense:birdcage=3|kcrop:9x8", shape)
    assert op.ishape == shape and op.oshape == (3, *crop)
    _agree(op, ref, _rand(shape, 8), _rand((3, *crop), 9))
