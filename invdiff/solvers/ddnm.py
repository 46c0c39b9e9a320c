"""DDNM and DDNM+: denoising diffusion null-space models (Wang et al. 2023, ICLR)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from invdiff.solvers.consistency import effective_noise, soft_consistency
from invdiff.solvers.loop import predict_eps, reverse_loop
from invdiff.solvers.problem import check_finite, check_noise_sigma, real_pinv, setup
from invdiff.solvers.result import SolveResult
from invdiff.solvers.steps import Grid, Step, check_eta


def ddnm(
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
    final_dc: bool = True,
    callback: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = False,
    **_: Any,
) -> SolveResult:
    """Range-null-space decomposition sampling: Wang et al. 2023, Algorithm 1 (DDNM) and, for
    ``noise_sigma > 0``, Algorithm 2 / Eq. 17-19 (DDNM+ without time travel).

    Each step ``t -> s``: ``x0 = (x_t - sigma_t eps_hat) / alpha_t``, then the range-space part is
    replaced by the measurement,

        x0' = x0 + Sigma_t A^+ (y - A x0)     (= A^+ y + (I - A^+ A) x0 for Sigma_t = I),

    and ``x_s`` is drawn from ``q(x_s | x_t, x0')`` (:func:`invdiff.solvers.steps.step_from_x0`:
    mean ``alpha_s x0' + sigma_s sqrt(1 - eta^2 c) eps'``, noise std ``s_t = eta sigma_s sqrt(c)``).
    DDNM+: the measurement noise reaches ``x_s`` through the mean's ``x0'`` coefficient
    ``k_t = alpha_s - sigma_s sqrt(1 - eta^2 c) alpha_t / sigma_t`` (``alpha_s c`` for ``eta = 1``).
    Per measured component ``j`` with effective noise std ``sigma_y,j``
    (:func:`invdiff.solvers.consistency.effective_noise`; the paper's per-singular-value form):
    if ``s_t >= k_t sigma_y,j`` then ``Sigma_t = 1`` and the range-space noise std becomes
    ``sqrt(s_t^2 - k_t^2 sigma_y,j^2)``, otherwise ``Sigma_t = s_t / (k_t sigma_y,j)`` and no
    range-space noise is added; the null space always gets ``s_t``. ``A^+`` is the real
    pseudo-inverse, so ``A^+ A`` is the orthogonal projection onto the measured subspace of real
    images (exact for ``kcrop``). With ``final_dc`` the output gets the data-consistency step of
    :func:`invdiff.solvers.consistency.soft_consistency` (hard for ``sigma_y = 0``).

    With noise, DDNM+ is an approximation: the shrunk weights pull the measured components to a
    point near the posterior mean, so their spread is far below the posterior's (about 1 % of it
    for the 16x16 Gaussian test problem); ``kspace-mix`` samples that spread.

    Args: as :func:`invdiff.solvers.kspace_mix.kspace_mix` (no ``lam``).
    """
    name = "ddnm"
    p = setup(name, operator, y, prior, steps=steps, n_samples=n_samples)
    pinv = real_pinv(operator, name, alternative="dps")
    eta = check_eta(eta, name)
    sigma_y = check_noise_sigma(noise_sigma, name)
    noise_std = effective_noise(operator, p.y, sigma_y)

    def update(x: Tensor, st: Step) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            eps_hat = predict_eps(prior, x, st)
        x0 = (x - st.sigma_t * eps_hat) / st.alpha_t
        keep = max(1.0 - eta**2 * st.c, 0.0) ** 0.5  # coefficient of eps' in the mean
        k = st.alpha_s - st.sigma_s * keep * st.alpha_t / st.sigma_t
        s_t = eta * st.noise_std
        if sigma_y == 0:
            x0c = x0 + pinv(p.y_rep - operator(x0))
        else:  # DDNM+ Eq. 17-19, per measured component with its effective noise std
            carried = (k * noise_std).clamp_min(torch.finfo(p.dtype).tiny)
            weight = torch.where(s_t >= carried, torch.ones_like(carried), s_t / carried)
            range_std = (s_t**2 - carried**2).clamp_min(0.0).sqrt()
            x0c = x0 + pinv(weight * (p.y_rep - operator(x0)))
        eps_c = (x - st.alpha_t * x0c) / st.sigma_t
        out = st.alpha_s * x0c + st.sigma_s * keep * eps_c
        if s_t > 0:
            z = p.randn(generator)
            if sigma_y == 0:
                out = out + s_t * z
            else:
                az = operator(z)
                out = out + pinv(range_std * az) + s_t * (z - pinv(az))
        return out, x0c

    x = reverse_loop(p.randn(generator), prior, name, steps, grid, update, callback, progress)
    if final_dc:
        x = soft_consistency(x, p.y_rep, operator, pinv, sigma_y)
    check_finite(x, name, steps - 1, steps, 0.0)
    info = {"steps": steps, "nfe": steps, "grid": grid, "eta": eta}
    return p.result(x, info, generator)
