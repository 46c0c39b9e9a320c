"""Data-consistency steps in measurement space, shared by the diffusion solvers.

All use the operator's real pseudo-inverse ``A^+`` (:func:`invdiff.solvers.problem.real_pinv`):
the image stays real after each step, which is how a correction returns to a real-valued prior's
domain. For ``kcrop`` on real images ``A^+ r = Re F^{-1}[pad(r) with the mirror of an even crop's
unpaired row/column filled by conjugate symmetry]``, so a weight-1 step makes ``A x = y`` exactly
whenever ``y`` is the measurement of some real image (see :mod:`invdiff.operators.fourier`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from invdiff.solvers.steps import randn

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


def effective_noise(operator: Any, y: Tensor, noise_sigma: float) -> Tensor:
    """Std of the measurement noise as a real-image estimate sees it, per entry of ``y``.

    The noise ``n`` (``E|n_j|^2 = sigma_y^2``) reaches a real image through ``A_r^+``, which keeps
    only the part consistent with real images. For a Fourier selection (``kcrop``, ``kmask``:
    ``operator.selection_unitary()`` gives ``(mask, FFT)``) a frequency ``k`` whose mirror ``-k`` is
    also measured (or ``k = -k``, e.g. DC) is observed twice, through ``y_k`` and ``conj(y_{-k})``,
    so its effective std is ``sigma_y / sqrt(2)``; an unpaired one (an even crop's edge row and
    column) keeps ``sigma_y``. Other operators: ``sigma_y`` for real ``y``, ``sigma_y / sqrt(2)``
    for complex ``y`` (the real part of complex noise), an approximation.

    Returns:
        a tensor broadcastable to ``y`` (a scalar tensor for other operators).
    """
    from invdiff.operators.fourier import FFT, centred_mirror

    real = y.real.dtype if y.is_complex() else y.dtype
    sel = operator.selection_unitary() if hasattr(operator, "selection_unitary") else None
    if y.is_complex() and sel is not None and isinstance(sel[1], FFT):
        mask = sel[0].to(device=y.device, dtype=real)
        seen = mask + centred_mirror(mask)  # 1 or 2 observations of each measured frequency
        grid = noise_sigma / seen.clamp_min(1.0).sqrt()
        return operator(sel[1].adjoint(grid.to(y.dtype))).real
    scale = 2**-0.5 if y.is_complex() else 1.0
    return torch.tensor(noise_sigma * scale, dtype=real, device=y.device)


def noise_topup(alpha: float, sigma: float, noise_std: Tensor) -> tuple[Tensor, Tensor]:
    """Extra noise std bringing ``alpha y`` to the noise level ``sigma`` of ``x_s``, and a gate.

    ``alpha y = alpha A x + alpha n`` already carries noise of std ``alpha s_j`` per entry
    (``s_j`` from :func:`effective_noise`), while ``A x_s = alpha A x + sigma A z``. Where
    ``sigma >= alpha s_j``, adding ``sqrt(sigma^2 - alpha^2 s_j^2) (A z')_j`` makes ``y_s``
    distributed as ``A x_s`` given ``x``, so replacing ``A x_s`` by ``y_s`` is the forward
    process's own conditional; at ``sigma = alpha s_j`` the noisy ``y_j`` *is* a diffusion state
    of that component (as in DDRM, Kawar et al. 2022). Below that level no noise can be removed,
    so the entry is no longer corrected (gate 0) and the sampler continues unconditionally there.

    Returns:
        ``(extra_std, gate)``, both broadcastable to ``y``.
    """
    carried = alpha * noise_std
    gate = (carried <= sigma).to(noise_std.dtype)
    extra = (sigma**2 - carried**2).clamp_min(0.0).sqrt() * gate
    return extra, gate


def perturbed_measurement(
    y: Tensor, forward, alpha: float, std: float | Tensor, shape, generator: torch.Generator | None
) -> Tensor:
    """``alpha y + std A z'`` with fresh image-space noise ``z' ~ N(0, I)`` of ``shape``.

    Noise is drawn in image space and pushed through ``A`` so that ``y_t`` has exactly the
    distribution of ``A x_t`` under the forward process (for ``kcrop`` of real images this
    includes the Hermitian structure of the measured block).
    """
    dtype = y.real.dtype if y.is_complex() else y.dtype
    z = randn(shape, generator, dtype, y.device)
    return alpha * y + std * forward(z)
