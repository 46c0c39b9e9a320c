"""Unconditional ancestral sampling from a prior (the sampler without any measurement)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from invdiff.solvers.loop import predict_eps, reverse_loop
from invdiff.solvers.problem import SolverInputError
from invdiff.solvers.steps import Grid, Step, ancestral_step, check_eta, randn


def sample_prior(
    prior: Any,
    n: int,
    *,
    steps: int = 50,
    generator: torch.Generator | None = None,
    grid: Grid = "uniform",
    eta: float = 1.0,
    dtype: torch.dtype | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = False,
) -> Tensor:
    """``n`` samples ``(n, C, H, W)`` by ancestral VDM sampling (Kingma et al. 2021, App. A.4).

    The same step as :func:`invdiff.solvers.kspace_mix.kspace_mix` without the correction:
    ``x_s = a (x_t - b eps_hat) + c_z z`` (:mod:`invdiff.solvers.steps`), then ``x_0 / alpha_0``.
    """
    if not isinstance(steps, int) or steps < 1:
        raise SolverInputError(f"sample_prior: steps must be an integer >= 1, got {steps!r}")
    if not isinstance(n, int) or n < 1:
        raise SolverInputError(f"sample_prior: n must be an integer >= 1, got {n!r}")
    eta = check_eta(eta, "sample_prior")
    dtype = dtype or getattr(prior, "dtype", torch.float32)
    device = getattr(prior, "device", torch.device("cpu"))
    x = randn((n, *prior.image_shape), generator, dtype, device)

    def update(x: Tensor, st: Step) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            eps_hat = predict_eps(prior, x, st)
        return ancestral_step(x, eps_hat, st, eta, generator), (
            x - st.sigma_t * eps_hat
        ) / st.alpha_t

    return reverse_loop(x, prior, "sample_prior", steps, grid, update, callback, progress)
