"""The seed's k-space guided VDM sampler, generalised to any operator with a pseudo-inverse."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from invdiff.solvers.consistency import (
    effective_noise,
    hard_consistency,
    noise_topup,
    perturbed_measurement,
    soft_consistency,
)
from invdiff.solvers.loop import predict_eps, reverse_loop
from invdiff.solvers.problem import (
    check_finite,
    check_noise_sigma,
    lambda_schedule,
    real_pinv,
    setup,
)
from invdiff.solvers.result import SolveResult
from invdiff.solvers.steps import Grid, Step, ancestral_step, check_eta


def kspace_mix(
    operator: Any,
    y: Tensor,
    prior: Any,
    *,
    steps: int = 50,
    n_samples: int = 1,
    generator: torch.Generator | None = None,
    noise_sigma: float = 0.0,
    grid: Grid = "uniform",
    eta: float = 1.0,
    lam: float | Callable[[float], float] = 1.0,
    final_dc: bool = True,
    callback: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = False,
    **_: Any,
) -> SolveResult:
    """K-space guided ancestral VDM sampling (the seed paper's sampler).

    Each step ``t -> s`` of the time grid:

    1. ancestral VDM step ``x_s = a (x_t - b eps_hat(x_t, t)) + c_z z`` with ``a = alpha_s /
       alpha_t``, ``b = -sigma_t expm1(gamma_s - gamma_t)``, ``c_z^2 = -sigma_s^2 expm1(gamma_s -
       gamma_t)`` (derivation from ``q(z_s | z_t, x)`` in :mod:`invdiff.solvers.steps`); ``eta``
       scales the injected noise, ``eta = 0`` is deterministic DDIM;
    2. the seed's correction with a perturbed measurement ``y_s = alpha_s y + sigma_s A z'``:

           x_s' = x_s + lambda(s) A^+ (y_s - A x_s).

       For ``kcrop`` (``A = crop . F``) this is the seed's
       ``F^{-1}[lambda pad(y_s) + (1 - lambda) M F x + (I - M) F x]``, with the pad made Hermitian
       on an even crop's unpaired row/column so that the image stays real (``A^+`` is the
       minimum-norm inverse over real images).

    With measurement noise ``sigma_y = noise_sigma > 0`` the perturbation only tops the noise of
    each measured component up to ``sigma_s``, and a component is no longer corrected once its
    noise ``alpha_s s_j`` exceeds ``sigma_s`` (:func:`invdiff.solvers.consistency.noise_topup`,
    :func:`invdiff.solvers.consistency.effective_noise`): ``y`` is then itself a diffusion state of
    that component, so for a Gaussian prior diagonal in the operator's Fourier basis the sampler
    targets the exact noisy posterior (tested). After the last step the
    sample is rescaled by ``1 / alpha_0`` (VDM) and, with ``final_dc``, made consistent with
    ``y``: a hard replacement ``x + A^+ (y - A x)`` for ``sigma_y = 0`` (then ``A x = y`` to float
    precision), else the noise-aware soft step of
    :func:`invdiff.solvers.consistency.soft_consistency`, which moves each sample's measured
    components towards an estimate of the truth (less spread, lower error); pass
    ``final_dc=False`` for samples of the noisy posterior.

    Args:
        operator: linear operator with ``pinv_real`` or ``pinv``.
        y: measurement in the prior's range, ``(B, C, *oshape)``.
        prior: :class:`invdiff.priors.base.Prior`.
        steps: number of reverse steps (1000 on the uniform grid reproduces the seed).
        n_samples: posterior samples per measurement (one network batch with the slices).
        generator: random generator (its seed is recorded in ``info``).
        noise_sigma: measurement noise std ``sigma_y`` per entry (``E|n_j|^2 = sigma_y^2``).
        grid: ``"uniform"`` in ``t`` or ``"logsnr"``.
        eta: noise scale of the reverse step in ``[0, 1]``.
        lam: mixing weight ``lambda`` in ``(0, 1]``, a float or a function of ``t``.
        final_dc: apply the final data-consistency step.
        callback: called after every step with ``{"i", "t", "x", "x0_hat"}``.
        progress: show a progress bar.

    Returns:
        :class:`invdiff.solvers.result.SolveResult` with ``n_samples`` samples.
    """
    name = "kspace-mix"
    p = setup(name, operator, y, prior, steps=steps, n_samples=n_samples)
    pinv = real_pinv(operator, name, alternative="dps")
    lam_of = lambda_schedule(lam, name)
    eta = check_eta(eta, name)
    sigma_y = check_noise_sigma(noise_sigma, name)
    noise_std = effective_noise(operator, p.y, sigma_y)

    def update(x: Tensor, st: Step) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            eps_hat = predict_eps(prior, x, st)
        x0_hat = (x - st.sigma_t * eps_hat) / st.alpha_t
        x = ancestral_step(x, eps_hat, st, eta, generator)
        if sigma_y == 0:
            y_s = perturbed_measurement(
                p.y_rep, operator, st.alpha_s, st.sigma_s, p.x_shape, generator
            )
            return hard_consistency(x, y_s, operator, pinv, lam_of(st.s)), x0_hat
        extra, gate = noise_topup(st.alpha_s, st.sigma_s, noise_std)
        if not bool(gate.any()):  # y is noisier than x_s everywhere: no more corrections
            return x, x0_hat
        y_s = perturbed_measurement(p.y_rep, operator, st.alpha_s, extra, p.x_shape, generator)
        return x + lam_of(st.s) * pinv(gate * (y_s - operator(x))), x0_hat

    x = reverse_loop(p.randn(generator), prior, name, steps, grid, update, callback, progress)
    if final_dc:
        x = soft_consistency(x, p.y_rep, operator, pinv, sigma_y)
    check_finite(x, name, steps - 1, steps, 0.0)
    info = {"steps": steps, "nfe": steps, "grid": grid, "eta": eta, "lam": _describe_lam(lam)}
    return p.result(x, info, generator)


def _describe_lam(lam: float | Callable[[float], float]) -> float | str:
    if callable(lam):
        return getattr(lam, "__name__", "schedule")
    return float(lam) if math.isfinite(float(lam)) else str(lam)
