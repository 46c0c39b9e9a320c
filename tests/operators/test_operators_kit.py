"""The conformance kit itself: it passes correct operators and catches broken ones."""

import pytest
import torch

from invdiff.operators import KCrop, LinearOperator
from invdiff.operators.fourier import KPad, fft2c, ifft2c
from invdiff.operators.testing import (
    check_adjoint,
    check_linear,
    check_normal,
    check_pinv,
    check_selection_unitary,
    tolerance,
)


class _ScaledAdjoint(KCrop):
    """Adjoint off by a factor 1.0001: only the double-precision tolerance can see it."""

    def _adjoint_operator(self):
        return 1.0001 * KPad(KCrop(self.ishape, self.oshape))


class _Nonlinear(KCrop):
    def _apply(self, x):
        y = super()._apply(x)
        return y + 1e-3 * y * y.abs()


class _BadNormal(KCrop):
    def _normal_operator(self):
        return KPad(self) @ KCrop(self.ishape, self.oshape) @ KPad(self) @ KCrop(
            self.ishape, self.oshape) * 2.0


class _BadPinv(KCrop):
    def _pinv(self, y):
        return 2 * self.adjoint(y)


class _ReAdjointAsRealPinv(KCrop):
    """The mistake from MATH-NOTES: Re(A^H y) used as the real-image inverse."""

    def pinv_real(self, y, maxiter=100):
        return self.adjoint(y).real


class _Downcast(LinearOperator):
    def __init__(self):
        super().__init__((6, 5), (6, 5))

    def _apply(self, x):
        return fft2c(x).to(torch.complex64)

    def _adjoint_operator(self):
        return _Upcast(self)


class _Upcast(LinearOperator):
    def __init__(self, fwd):
        super().__init__((6, 5), (6, 5))

    def _apply(self, y):
        return ifft2c(y)

    def _adjoint_operator(self):
        return _Downcast()


def test_correct_operator_passes_every_check():
    op = KCrop((16, 15), (8, 7))
    for check in (check_adjoint, check_linear, check_normal, check_pinv, check_selection_unitary):
        check(op)


def test_tolerance_depends_on_precision():
    assert tolerance(torch.float64) == tolerance(torch.complex128) < 1e-8
    assert tolerance(torch.float32) == tolerance(torch.complex64) > 1e-6


C128 = torch.complex128


@pytest.mark.parametrize(("op", "check", "dtype", "message"), [
    (_ScaledAdjoint((16, 15), (8, 7)), check_adjoint, C128, "<Ax, y>"),
    (_ScaledAdjoint((16, 15), (8, 7)), check_adjoint, torch.float64, "<Ax, y>"),
    (_Nonlinear((16, 15), (8, 7)), check_linear, C128, "linearity"),
    (_BadNormal((16, 15), (8, 7)), check_normal, C128, "normal"),
    (_BadPinv((16, 15), (8, 7)), check_pinv, C128, "A A\\+ A x = A x"),
    (_ReAdjointAsRealPinv((16, 16), (8, 8)), check_pinv, C128, "pinv_real .*A A\\+ A x"),
    (_Downcast(), check_linear, torch.float64, "precision changed"),
])
def test_broken_operators_are_caught(op, check, dtype, message):
    with pytest.raises(AssertionError, match=message):
        check(op, dtype)


def test_scaled_adjoint_passes_single_precision_tolerance():
    check_adjoint(_ScaledAdjoint((16, 15), (8, 7)), torch.complex64, rtol=1e-3)
