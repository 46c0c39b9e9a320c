"""Variational diffusion model (Kingma et al. 2021, "Variational Diffusion Models").

Checked against google-research/vdm ``model_vdm.py``. With ``f`` the 8-bit discretised image
in [-1, 1] (see :mod:`invdiff.priors.likelihood`), ``x_t = alpha_t f + sigma_t eps``,
``alpha_t^2 = sigmoid(-gamma_t)``, ``sigma_t^2 = sigmoid(gamma_t)``, the negative bound is

    L = KL(q(z_1 | f) || N(0, I))  -  E log p(f | z_0)  +  L_T,

with the diffusion loss ``L_T = T/2 E[expm1(gamma_t - gamma_s) |eps - eps_hat|^2]``,
``s = t - 1/T`` (Eq. 13, ``t`` uniform on ``{1/T, ..., 1}``), or for ``T = 0`` the
continuous-time ``L_inf = 1/2 E[gamma'(t) |eps - eps_hat|^2]`` (Eq. 17).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from invdiff.priors.base import Prior, _bcast
from invdiff.priors.config import PRESETS, VDMConfig
from invdiff.priors.likelihood import (
    discretize,
    discretized_gaussian_nll,
    kl_to_standard_normal,
    level_value,
)
from invdiff.priors.schedules import LearnedSchedule, Schedule, ShapeHook, make_schedule
from invdiff.priors.unet import UNet

__all__ = ["PRESETS", "VDM", "VDMConfig", "VDMLoss", "VDMPrior"]


@dataclass
class VDMLoss:
    """Per-example terms of the negative VLB, each ``(B,)`` in bits per dimension.

    Attributes:
        prior: ``KL(q(z_1 | x) || N(0, I))``.
        recon: ``-log p(x | z_0)`` under the discretised decoder.
        diffusion: the diffusion loss (discrete ``T`` or continuous).
        total: ``prior + recon + diffusion``, the bound on ``-log2 p(x) / D``.
        objective: what to ``.mean().backward()``; equal to ``total`` in value, but with
            ``minimise_variance`` the learned schedule's shape receives the gradient of
            ``diffusion**2`` (Kingma et al. 2021, Appendix I.2) instead of that of the bound.
    """

    prior: Tensor
    recon: Tensor
    diffusion: Tensor
    total: Tensor
    objective: Tensor


class VDM(nn.Module):
    """Noise schedule ``gamma`` and eps network of a VDM, with the per-example bound.

    Args:
        config: architecture, schedule and loss settings.
        generator: seeds the learned schedule's initialisation (the U-Net uses torch's
            default initialisers; seed the global RNG for a reproducible U-Net).
    """

    def __init__(self, config: VDMConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        self.schedule: Schedule = make_schedule(
            config.schedule,
            config.gamma_min,
            config.gamma_max,
            config.schedule_features,
            generator=generator,
        )
        self.net = UNet(
            in_channels=config.channels,
            image_size=config.image_size,
            channels=config.unet_channels,
            num_res_blocks=config.num_res_blocks,
            attn_resolutions=config.attn_resolutions,
            dropout=config.dropout,
            fourier_exponents=config.fourier_exponents if config.fourier_features else (),
            gamma_min=config.gamma_min,
            gamma_max=config.gamma_max,
        )

    def gamma(self, t: Tensor | float) -> Tensor:
        """Negative log-SNR ``gamma(t)`` (float32, same shape as ``t``)."""
        return self.schedule(t)

    def eps(self, x_t: Tensor, t: Tensor | float) -> Tensor:
        """Predicted noise ``eps_hat(x_t, t)``; ``t`` of shape ``()`` or ``(B,)``."""
        _check_images(x_t, self.config)
        return self.net(x_t, self.gamma(torch.as_tensor(t, device=x_t.device)))

    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> VDMLoss:
        """Per-example negative VLB of images ``x`` ``(B, C, S, S)`` in [-1, 1], in bits/dim.

        ``x`` is first discretised to ``vocab_size`` levels (as in vdm), so that the bound is a
        bound on a probability mass.
        """
        cfg = self.config
        _check_images(x, cfg)
        batch, device = x.shape[0], x.device
        f = level_value(discretize(x, cfg.vocab_size), cfg.vocab_size)
        per_dim = 1.0 / (math.prod(cfg.image_shape) * math.log(2.0))
        g_ends, _ = self.schedule.gamma_and_derivative(torch.tensor([0.0, 1.0], device=device))
        g_0, g_1 = g_ends[0], g_ends[1]

        # 1. RECONSTRUCTION LOSS: -log p(x | z_0), with z_0 / alpha_0 = f + exp(gamma_0 / 2) eps_0
        eps_0 = torch.randn(f.shape, generator=generator, device=device)
        z_0_rescaled = f + torch.exp(0.5 * g_0) * eps_0
        recon = discretized_gaussian_nll(
            discretize(x, cfg.vocab_size), z_0_rescaled, g_0, cfg.vocab_size
        )

        # 2. PRIOR LOSS: KL(q(z_1 | x) || N(0, I))
        prior = kl_to_standard_normal(f, g_1)

        # 3. DIFFUSION LOSS
        t = self._sample_times(batch, device, generator)
        hook, set_scale = self._variance_hook()
        g_t, dg_t = self.schedule.gamma_and_derivative(t, shape_hook=hook)
        eps = torch.randn(f.shape, generator=generator, device=device)
        alpha_t, sigma_t = (_bcast(v, f) for v in (torch.sigmoid(-g_t), torch.sigmoid(g_t)))
        z_t = alpha_t.sqrt() * f + sigma_t.sqrt() * eps
        mse = (eps - self.net(z_t, g_t)).square().flatten(1).sum(1)
        if cfg.timesteps == 0:
            diffusion = 0.5 * dg_t * mse
        else:
            g_s, _ = self.schedule.gamma_and_derivative(t - 1.0 / cfg.timesteps, shape_hook=hook)
            diffusion = 0.5 * cfg.timesteps * torch.expm1(g_t - g_s) * mse

        prior, recon, diffusion = prior * per_dim, recon * per_dim, diffusion * per_dim
        set_scale(2.0 * diffusion.detach())
        total = prior + recon + diffusion
        return VDMLoss(prior=prior, recon=recon, diffusion=diffusion, total=total, objective=total)

    def _sample_times(
        self, batch: int, device: torch.device, generator: torch.Generator | None
    ) -> Tensor:
        """``t`` uniform on (0, 1], antithetic if configured, on the grid ``k / T`` if discrete."""
        if self.config.antithetic:
            t0 = torch.rand((), generator=generator, device=device)
            t = torch.remainder(t0 + torch.arange(batch, device=device) / batch, 1.0)
        else:
            t = torch.rand(batch, generator=generator, device=device)
        T = self.config.timesteps
        if T > 0:
            t = torch.ceil(t * T).clamp(min=1.0) / T  # in {1/T, ..., 1} (vdm; t = 0 -> 1/T)
        return t

    def _variance_hook(self) -> tuple[ShapeHook | None, Callable[[Tensor], None]]:
        """Gradient hook making the shape of a learned schedule minimise ``E[L_diff^2]``.

        For the learned schedule's shape ``eta``, ``d E[L_T^2] / d eta = E[2 L_T dL_T / d eta]``
        (Kingma et al. 2021, Appendix I.2): the gradient reaching the shape tensors is multiplied
        by ``2 L_T`` per example, which is known only after the forward pass, hence the setter.
        The endpoints ``gamma_0, gamma_1`` and the network keep the gradient of the bound
        (in continuous time the bound depends on the schedule only through the endpoints).
        """
        scale: dict[str, Tensor] = {}

        def set_scale(value: Tensor) -> None:
            scale["value"] = value

        use = (
            self.config.minimise_variance
            and isinstance(self.schedule, LearnedSchedule)
            and torch.is_grad_enabled()
        )
        if not use:
            return None, set_scale

        def hook(v: Tensor) -> Tensor:
            if v.requires_grad:
                v.register_hook(lambda g: g * scale["value"])
            return v

        return hook, set_scale


class VDMPrior(Prior):
    """A trained :class:`VDM` behind the :class:`~invdiff.priors.base.Prior` protocol.

    The model is put in eval mode with frozen parameters; gradients still flow to ``x_t``
    (guided solvers need them). Wrap calls in ``torch.no_grad()`` where they are not needed.
    """

    def __init__(self, model: VDM) -> None:
        self.model = model.eval().requires_grad_(False)
        self.config = model.config
        self.image_shape = model.config.image_shape

    def gamma(self, t: Tensor) -> Tensor:
        return self.model.gamma(torch.as_tensor(t, device=self.device))

    def eps(self, x_t: Tensor, t: Tensor) -> Tensor:
        """eps_hat in the dtype of ``x_t`` (the network itself runs in float32)."""
        return self.model.eps(x_t.float(), t).to(x_t.dtype)

    def bits_per_dim(
        self, x: Tensor, generator: torch.Generator | None = None, n_t: int = 16
    ) -> Tensor:
        """Monte Carlo estimate of the bound ``(B,)`` in bits/dim, averaged over ``n_t`` draws.

        Each draw samples a time (antithetic across the batch) and noise; the diffusion term of
        one draw is unbiased but has high variance, so ``n_t`` draws are averaged.
        """
        if n_t < 1:
            raise ValueError(f"n_t must be >= 1, got {n_t}")
        with torch.no_grad():
            return torch.stack(
                [self.model.loss(x, generator=generator).total for _ in range(n_t)]
            ).mean(dim=0)

    def to(self, device: str | torch.device) -> VDMPrior:
        """Move the model to ``device``; returns ``self``."""
        self.model.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def _check_images(x: Tensor, config: VDMConfig) -> None:
    if x.ndim != 4 or tuple(x.shape[1:]) != config.image_shape:
        raise ValueError(
            f"expected images of shape (B, {', '.join(map(str, config.image_shape))}), "
            f"got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"expected a floating-point image tensor, got {x.dtype}")
