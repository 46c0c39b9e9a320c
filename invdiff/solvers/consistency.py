"""Data-consistency steps in measurement space, shared by the diffusion solvers.

All use the operator's real pseudo-inverse ``A^+`` (:func:`invdiff.solvers.problem.real_pinv`):
the image stays real after each step, which is how a correction returns to a real-valued prior's
domain. For ``kcrop`` on real images ``A^+ r = Re F^{-1}[pad(r) with the mirror of an even crop's
unpaired row/column filled by conjugate symmetry]``, so a weight-1 step makes ``A x = y`` exactly
whenever ``y`` is the measurement of some real image (see ``/work/shared/MATH-NOTES.md``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Pinv = Callable[[Tensor], Tensor]


def _per_image(v: Tensor, like: Tensor) -> Tensor:
    return v.reshape(v.shape[0], *([1] * (like.ndim - 1)))


def hard_consistency(x: Tensor, y: Tensor, forward, pinv: Pinv, weight: float = 1.0) -> Tensor:
    """``x + weight A^+ (y - A x)``; ``weight = 1`` replaces the measured part by ``y``."""
    return x + weight * pinv(y - forward(x))


def soft_consistency(x: Tensor, y: Tensor, forward, pinv: Pinv, noise_sigma: float) -> Tensor:
    """Noise-aware final step: ``x + w A^+ (y - A x)``, ``w = tau^2 / (tau^2 + sigma_y^2)``.

    Model the measured components of the sample as ``A x = A x_true + e`` (the prior's error, with
    per-entry variance ``tau^2``) and ``y = A x_true + n`` (``E|n_j|^2 = sigma_y^2``). The
    inverse-variance-weighted estimate of ``A x_true`` is ``A x + w (y - A x)`` with ``w`` above;
    ``tau^2 = max(mean_j |y_j - (A x)_j|^2 - sigma_y^2, 0)`` is estimated per image from the
    residual (method of moments). A residual at the noise level keeps ``x``; a large one moves it
    to ``y``. ``sigma_y = 0`` gives ``w = 1``, the hard replacement.
    """
    r = y - forward(x)
    if noise_sigma <= 0:
        return x + pinv(r)
    dims = tuple(range(1, r.ndim))
    power = r.abs().pow(2).mean(dim=dims)
    tau2 = (power - noise_sigma**2).clamp_min(0.0)
    w = tau2 / (tau2 + noise_sigma**2)
    return x + _per_image(w, x).to(x.dtype) * pinv(r)


def noisy_weight(alpha: float, sigma: float, noise_sigma: float) -> tuple[float, float]:
    """Range-space weight and the extra measurement noise for a step at level ``(alpha, sigma)``.

    The scaled measurement ``alpha y`` already carries noise of std ``alpha sigma_y``. Following
    DDNM+ (Wang et al. 2023, Eq. 17-19): if ``sigma >= alpha sigma_y`` use weight 1 and add noise of
    std ``sqrt(sigma^2 - alpha^2 sigma_y^2)``; otherwise use weight ``sigma / (alpha sigma_y)`` and
    add none. Returns ``(weight, extra_std)``.
    """
    carried = alpha * noise_sigma
    if sigma >= carried:
        return 1.0, (sigma**2 - carried**2) ** 0.5
    return sigma / carried, 0.0


def perturbed_measurement(
    y: Tensor, forward, alpha: float, std: float, shape, generator: torch.Generator | None
) -> Tensor:
    """``alpha y + std A z'`` with fresh image-space noise ``z' ~ N(0, I)`` of ``shape``.

    Noise is drawn in image space and pushed through ``A`` so that ``y_t`` has exactly the
    distribution of ``A x_t`` under the forward process (for ``kcrop`` of real images this
    includes the Hermitian structure of the measured block).
    """
    dtype = y.real.dtype if y.is_complex() else y.dtype
    z = torch.randn(shape, generator=generator, dtype=dtype, device=y.device)
    return alpha * y + std * forward(z)
