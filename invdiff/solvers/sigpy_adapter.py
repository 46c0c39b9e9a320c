"""Wrap an :mod:`invdiff.operators` operator as a real ``sigpy.linop.Linop`` (torch <-> numpy).

sigpy's primal-dual solvers mix the data term's dual variable with the regulariser's, so the whole
problem is made real: the Linop maps a real image ``x`` (``ishape``) to the real and imaginary
parts of ``A x`` stacked on a trailing axis of 2 (``(*oshape, 2)``), and its adjoint maps such a
stack ``r`` back to ``Re(A^H (r[..., 0] + i r[..., 1]))``. This is the adjoint under the real inner
product, and ``|A_r x - y_r|^2 = |A x - y|^2``. Solutions therefore stay real, which keeps the
unpaired row/column of an even ``kcrop`` exact (see :mod:`invdiff.operators.fourier`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sigpy as sp
import torch
from torch import Tensor


def stack_real(y: Tensor) -> Tensor:
    """``(..., ) complex -> (..., 2)`` real (a real ``y`` gets a zero imaginary part)."""
    return torch.view_as_real(y if y.is_complex() else y.to(torch.complex128)).contiguous()


class RealImageLinop(sp.linop.Linop):
    """``x (real, ishape) -> [Re A x, Im A x] (*oshape, 2)`` for a torch operator ``A``."""

    def __init__(self, op: Any) -> None:
        self.op = op
        super().__init__([*op.oshape, 2], list(op.ishape), repr_str=f"RealImageLinop({op!r})")

    def _apply(self, input: np.ndarray) -> np.ndarray:  # noqa: A002 (sigpy's name)
        x = torch.from_numpy(np.ascontiguousarray(np.real(input)))
        return stack_real(self.op(x)).detach().cpu().numpy()

    def _adjoint_linop(self) -> sp.linop.Linop:
        return _RealImageAdjoint(self)


class _RealImageAdjoint(sp.linop.Linop):
    """``r (*oshape, 2) -> Re(A^H (r_re + i r_im))``."""

    def __init__(self, fwd: RealImageLinop) -> None:
        self.fwd = fwd
        super().__init__(fwd.ishape, fwd.oshape, repr_str=f"adjoint of {fwd!r}")

    def _apply(self, input: np.ndarray) -> np.ndarray:  # noqa: A002
        r = torch.view_as_complex(torch.from_numpy(np.ascontiguousarray(np.real(input))))
        out = self.fwd.op.adjoint(r)
        return (out.real if out.is_complex() else out).detach().cpu().numpy()

    def _adjoint_linop(self) -> sp.linop.Linop:
        return self.fwd
