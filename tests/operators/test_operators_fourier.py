"""Centred FFT and kcrop: conventions, exact pseudo-inverses, real-image least squares."""

import numpy as np
import pytest
import sigpy
import torch

from invdiff.operators import FFT, KCrop, from_spec
from invdiff.operators.fourier import centred_mirror, fft2c, ifft2c

SHAPES = [(16, 16), (37, 31), (16, 15), (15, 16)]


@pytest.mark.parametrize("shape", SHAPES)
def test_fft2c_matches_sigpy_centred_ortho(shape):
    g = torch.Generator().manual_seed(1)
    x = torch.randn((2, *shape), dtype=torch.complex128, generator=g)
    ref = sigpy.fft(x.numpy(), axes=(-2, -1), center=True, norm="ortho")
    np.testing.assert_allclose(fft2c(x).numpy(), ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ifft2c(fft2c(x)).numpy(), x.numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_centred_mirror_is_frequency_negation(shape):
    # F(conj x) = conj(F x)[-k]: the mirror of the conjugate spectrum is the spectrum of conj(x).
    g = torch.Generator().manual_seed(2)
    x = torch.randn(shape, dtype=torch.complex128, generator=g)
    torch.testing.assert_close(centred_mirror(fft2c(x).conj()), fft2c(x.conj()))


@pytest.mark.parametrize(("shape", "crop"), [((16, 16), (8, 8)), ((37, 31), (8, 7)),
                                              ((37, 31), (9, 30)), ((16, 15), (7, 8))])
def test_kcrop_keeps_dc_at_sigpy_centre(shape, crop):
    x = torch.ones(shape, dtype=torch.float64)
    y = KCrop(shape, crop)(x)
    expected = torch.zeros(crop, dtype=torch.complex128)
    expected[crop[0] // 2, crop[1] // 2] = np.sqrt(shape[0] * shape[1])
    torch.testing.assert_close(y, expected)


def test_real_input_gives_complex_output_of_same_precision():
    op = from_spec("kcrop:8", (16, 16))
    assert op(torch.zeros(16, 16)).dtype == torch.complex64
    assert op(torch.zeros(16, 16, dtype=torch.float64)).dtype == torch.complex128
    assert op.adjoint(torch.zeros(8, 8, dtype=torch.complex64)).dtype == torch.complex64
    assert op.pinv_real(torch.zeros(8, 8, dtype=torch.complex64)).dtype == torch.float32


@pytest.mark.parametrize(("shape", "crop"), [((16, 16), (8, 8)), ((37, 31), (8, 7)),
                                              ((16, 15), (7, 8)), ((16, 16), (16, 16))])
def test_kcrop_pinv_real_replacement_reproduces_y_on_real_images(shape, crop):
    """Data consistency with lambda = 1: x = pinv_real(y) is real and A x == y for y = A x_real."""
    g = torch.Generator().manual_seed(3)
    op = KCrop(shape, crop)
    x_real = torch.randn((3, *shape), dtype=torch.float64, generator=g)
    y = op(x_real)
    x = op.pinv_real(y)
    assert x.dtype == torch.float64
    torch.testing.assert_close(op(x), y, rtol=0, atol=1e-12)
    # The closed form is the minimum-norm real solution: it equals the low-pass part of x_real.
    torch.testing.assert_close(op.pinv_real(op(x)), x, rtol=0, atol=1e-12)


def test_real_part_of_adjoint_misses_the_unpaired_row_for_even_crops():
    """MATH-NOTES: Re(A^H y) is not a real least-squares inverse when the crop is even."""
    g = torch.Generator().manual_seed(4)
    op = KCrop((16, 16), (8, 8))
    y = op(torch.randn(16, 16, dtype=torch.float64, generator=g))
    err = (op(op.adjoint(y).real) - y).abs()
    assert err[0, :].max() > 1e-3 and err[:, 0].max() > 1e-3  # row/column -n/2
    assert err[1:, 1:].max() < 1e-12  # every paired sample is reproduced


def test_kcrop_selection_unitary_is_mask_on_fft_grid():
    op = KCrop((16, 15), (8, 7))
    mask, unitary = op.selection_unitary()
    assert isinstance(unitary, FFT) and mask.shape == (16, 15) and int(mask.sum()) == 56
    x = torch.randn(16, 15, dtype=torch.complex128, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(unitary(x)[mask].reshape(8, 7), op(x))


def test_algebra_adjoints_and_caching():
    a = KCrop((16, 16), (8, 8))
    assert a.H.H is a and a.H is a.H
    comp = a.H @ a
    assert comp.ishape == (16, 16) and comp.H.H is comp
    x = torch.randn(2, 16, 16, dtype=torch.complex128, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close((a * x), a(x))
    torch.testing.assert_close(((1 - 2j) * a - a)(x), -2j * a(x))
    torch.testing.assert_close((a.H * a)(x), a.normal(x))
