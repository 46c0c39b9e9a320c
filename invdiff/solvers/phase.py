"""Measurements of complex images with a phase, for solvers whose prior models magnitudes.

A complex MR image is ``m e^{i phi}`` with magnitude ``m >= 0``; the priors model ``m`` (in their
intensity range). :func:`solve_with_phase` estimates the phase from the low-resolution image,
removes it from the measurement, solves for the magnitude, and puts the phase back:

1. ``u = A^+ y`` (for ``kcrop`` the zero-filled image), smoothed by a Gaussian of ``smooth``
   pixels; ``p = u_s / |u_s|`` (``1`` where ``|u_s|`` vanishes);
2. demodulated real image ``m_lr = A_r^+ A (conj(p) A^+ y)`` and measurement ``y_m = A m_lr``,
   where ``A_r^+`` is the pseudo-inverse over real images (``pinv_real``; plain ``Re`` would halve
   an even crop's unpaired row/column);
3. ``y_m`` to the prior's range (:func:`invdiff.intensity.measurement_to_prior_range`, with the
   robust scale of ``|A^+ y|`` unless given), any solver, back to physical units;
4. the complex result ``m_hat p``.

What is exact: if ``p = e^{i phi}`` and ``phi`` is constant over the image, ``conj(p) A^+ A (m p)
= A^+ A m`` and step 2 gives exactly ``A m``. For a varying phase the error is the commutator of
the projection ``A^+ A`` with multiplication by ``e^{i phi}``, which is small when ``e^{i phi}`` is
smooth compared to the measured band (its spectrum is much narrower than the crop), and the phase
estimate is itself only as good as the low-resolution image; the test bounds the resulting loss
for a smooth synthetic phase. Projecting onto real images in step 2 removes the part of the error
that is imaginary after demodulation, and keeps ``y_m`` in the range of ``A`` over real images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from invdiff.intensity import from_prior_range, measurement_to_prior_range, robust_scale
from invdiff.operators.fourier import fft2c, ifft2c
from invdiff.solvers.problem import SolverInputError
from invdiff.solvers.result import SolveResult


@dataclass
class PhaseSolve:
    """A magnitude solve of a measurement with phase.

    Attributes:
        result: the solver's result in the prior's range (of the demodulated measurement).
        phase: unit-modulus phase image ``(B, C, H, W)`` that was removed and put back.
        scale: the intensity scale ``s`` used (physical = ``(x + 1) s / 2``).
    """

    result: SolveResult
    phase: Tensor
    scale: float

    @property
    def magnitude(self) -> Tensor:
        """Samples in physical units ``(n, B, C, H, W)``."""
        return from_prior_range(self.result.samples, self.scale)

    @property
    def images(self) -> Tensor:
        """Complex samples ``magnitude * phase`` ``(n, B, C, H, W)``."""
        return self.magnitude * self.phase


def _gaussian_smooth(u: Tensor, sigma: float) -> Tensor:
    """Periodic Gaussian blur of std ``sigma`` pixels over the last two axes (via the FFT)."""
    if sigma <= 0:
        return u
    h, w = u.shape[-2:]
    fy = torch.fft.fftshift(torch.fft.fftfreq(h, dtype=torch.float64, device=u.device))
    fx = torch.fft.fftshift(torch.fft.fftfreq(w, dtype=torch.float64, device=u.device))
    kernel = torch.exp(-2 * (torch.pi * sigma) ** 2 * (fy[:, None] ** 2 + fx[None, :] ** 2))
    return ifft2c(fft2c(u) * kernel.to(u.real.dtype))


def estimate_phase(operator: Any, y: Tensor, smooth: float = 2.0) -> Tensor:
    """Unit-modulus phase ``p`` of the smoothed low-resolution image ``A^+ y`` (module, step 1)."""
    u = operator.pinv(y)
    u = u if u.is_complex() else u.to(torch.complex128)
    us = _gaussian_smooth(u, smooth)
    mag = us.abs()
    tiny = 1e-6 * float(mag.max()) if mag.numel() else 0.0
    return torch.where(mag > tiny, us / mag.clamp_min(1e-30), torch.ones_like(us))


def demodulate(operator: Any, y: Tensor, phase: Tensor) -> Tensor:
    """``A A_r^+ A (conj(p) A^+ y)``: the measurement of the phase-free real image (step 2)."""
    return operator(operator.pinv_real(operator(phase.conj() * operator.pinv(y))))


def solve_with_phase(
    solver: Callable[..., SolveResult],
    operator: Any,
    y: Tensor,
    prior: Any,
    *,
    scale: float | None = None,
    smooth: float = 2.0,
    **options: Any,
) -> PhaseSolve:
    """Solve for the magnitude of a complex image from ``y = A(m e^{i phi})`` in physical units.

    Args:
        solver: any solver with the shared signature (e.g. ``get_solver("kspace-mix")``).
        operator: the linear operator; needs a pseudo-inverse (``pinv``).
        y: complex measurement ``(B, C, *oshape)`` in physical units.
        prior: the magnitude prior.
        scale: intensity scale ``s``; default the robust scale of ``|A^+ y|``.
        smooth: std in pixels of the Gaussian that smooths the phase estimate.
        **options: passed to ``solver``.
    """
    if not y.is_complex():
        raise SolverInputError(f"solve_with_phase: y must be complex, got {y.dtype}")
    if not getattr(operator, "has_pinv", False):
        raise SolverInputError(
            f"solve_with_phase needs an operator with pinv to estimate the phase; {operator!r} "
            "has none"
        )
    phase = estimate_phase(operator, y, smooth)
    y_m = demodulate(operator, y, phase)
    if scale is None:
        scale = robust_scale(operator.pinv(y).abs())
    y_prior = measurement_to_prior_range(y_m, scale, operator, tuple(operator.ishape))
    result = solver(operator, y_prior, prior, **options)
    return PhaseSolve(result=result, phase=phase, scale=float(scale))
