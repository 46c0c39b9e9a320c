"""DiffPIR: denoising diffusion models for plug-and-play image restoration (Zhu et al. 2023,
CVPR-W), Algorithm 1."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from invdiff.operators.cg import conjugate_gradient
from invdiff.solvers.loop import predict_eps, reverse_loop
from invdiff.solvers.problem import SolverInputError, check_noise_sigma, setup
from invdiff.solvers.result import SolveResult
from invdiff.solvers.steps import Grid, Step

#: Floor on ``sigma_y`` in ``rho_t``: noiseless data would make ``rho_t = 0`` (an unregularised,
#: possibly singular data step); the DiffPIR code uses the same kind of floor.
NOISE_FLOOR = 1e-3


def diffpir(
    operator: Any,
    y: Tensor,
    prior: Any,
    *,
    steps: int = 50,
    n_samples: int = 1,
    generator: torch.Generator | None = None,
    noise_sigma: float = 0.0,
    grid: Grid = "uniform",
    reg_lambda: float = 1.0,
    zeta: float = 0.3,
    noise_floor: float = NOISE_FLOOR,
    cg_iters: int = 20,
    callback: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = False,
    **_: Any,
) -> SolveResult:
    """DiffPIR (Zhu et al. 2023, Algorithm 1), with the VDM schedule.

    Each step ``t -> s``:

    1. denoise: ``x0 = (x_t - sigma_t eps_hat) / alpha_t``;
    2. data proximal step with ``rho_t = lambda sigma_n^2 / sigmabar_t^2``,
       ``sigmabar_t = sigma_t / alpha_t`` and ``sigma_n = max(sigma_y, noise_floor)``:

           x0' = argmin_{x real} |y - A x|^2 + rho_t |x - x0|^2
               = x0 + (Re A^H A + rho_t I)^{-1} Re A^H (y - A x0)     (CG, ``cg_iters`` steps;
                 exact in 3 steps for ``kcrop``, whose real normal operator has eigenvalues
                 {0, 1/2, 1});

    3. ``eps' = (x_t - alpha_t x0') / sigma_t`` and
       ``x_s = alpha_s x0' + sigma_s (sqrt(1 - zeta) eps' + sqrt(zeta) z)``.

    Args: as :func:`invdiff.solvers.kspace_mix.kspace_mix`, plus ``reg_lambda`` (the paper's
    ``lambda > 0``), ``zeta`` in ``[0, 1]`` (noise mixing; the authors' configs use 0.1 for noisy
    super-resolution and deblurring and 1 for noiseless inpainting; 0.3 here lies between;
    docs/results.md measures ``zeta = 1`` on k-space crops), ``noise_floor``, ``cg_iters``.
    """
    name = "diffpir"
    p = setup(name, operator, y, prior, steps=steps, n_samples=n_samples)
    sigma_y = check_noise_sigma(noise_sigma, name)
    if not reg_lambda > 0:
        raise SolverInputError(f"{name}: reg_lambda must be > 0, got {reg_lambda}")
    if not 0.0 <= zeta <= 1.0:
        raise SolverInputError(f"{name}: zeta must be in [0, 1], got {zeta}")
    if not noise_floor > 0:
        raise SolverInputError(f"{name}: noise_floor must be > 0, got {noise_floor}")
    sigma_n = max(sigma_y, noise_floor)
    ndim = len(operator.ishape)
    normal = operator.normal

    def prox(x0: Tensor, rho: float) -> Tensor:
        rhs = operator.adjoint(p.y_rep - operator(x0))
        rhs = rhs.real if rhs.is_complex() else rhs

        def shifted(v: Tensor) -> Tensor:
            out = normal(v)
            return (out.real if out.is_complex() else out) + rho * v

        return x0 + conjugate_gradient(shifted, rhs, ndim, cg_iters)

    def update(x: Tensor, st: Step) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            eps_hat = predict_eps(prior, x, st)
        x0 = (x - st.sigma_t * eps_hat) / st.alpha_t
        rho = reg_lambda * sigma_n**2 / (st.sigma_t / st.alpha_t) ** 2
        x0c = prox(x0, rho)
        eps_c = (x - st.alpha_t * x0c) / st.sigma_t
        z = p.randn(generator) if zeta > 0 else torch.zeros_like(x)
        out = st.alpha_s * x0c + st.sigma_s * ((1 - zeta) ** 0.5 * eps_c + zeta**0.5 * z)
        return out, x0c

    x = reverse_loop(p.randn(generator), prior, name, steps, grid, update, callback, progress)
    info = {
        "steps": steps,
        "nfe": steps,
        "grid": grid,
        "reg_lambda": reg_lambda,
        "zeta": zeta,
        "sigma_n": sigma_n,
    }
    return p.result(x, info, generator)
