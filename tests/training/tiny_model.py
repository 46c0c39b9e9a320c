"""A tiny stand-in with the VDM training interface (``.loss(x, generator)``), for tests only.

Fixed linear schedule gamma(t) = g0 + (g1 - g0) t with learnable endpoints, a two-layer conv
eps-network, continuous-time diffusion loss 1/2 gamma'(t) |eps - eps_hat|^2 in bits/dim. Not a
likelihood model worth training; it exercises optimiser, EMA, RNG and data plumbing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from invdiff.training import ImageSets


@dataclass(frozen=True)
class TinyConfig:
    image_size: int = 16
    width: int = 8
    deterministic: bool = False  # t = 0.5, eps = 0: the loss draws nothing (for DDP checks)


@dataclass
class TinyLoss:
    prior: Tensor
    recon: Tensor
    diffusion: Tensor
    total: Tensor
    objective: Tensor


class TinyModel(nn.Module):
    def __init__(self, config: TinyConfig = TinyConfig()):
        super().__init__()
        self.config = config
        self.g0 = nn.Parameter(torch.tensor(-5.0))
        self.g1 = nn.Parameter(torch.tensor(3.0))
        self.net = nn.Sequential(
            nn.Conv2d(2, config.width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(config.width, 1, 3, padding=1),
        )

    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> TinyLoss:
        b = x.shape[0]
        if self.config.deterministic:
            t = torch.full((b,), 0.5, device=x.device)
            eps = torch.linspace(-1, 1, x[0].numel(), device=x.device).view_as(x[0]).expand_as(x)
        else:
            t = torch.rand(b, generator=generator, device=x.device)
            eps = torch.randn(x.shape, generator=generator, device=x.device)
        g = self.g0 + (self.g1 - self.g0) * t
        alpha = torch.sigmoid(-g).sqrt().view(-1, 1, 1, 1)
        sigma = torch.sigmoid(g).sqrt().view(-1, 1, 1, 1)
        z = alpha * x + sigma * eps
        eps_hat = self.net(torch.cat([z, g.view(-1, 1, 1, 1).expand_as(z)], dim=1))
        per_dim = math.log(2.0) * x[0].numel()
        diffusion = 0.5 * (self.g1 - self.g0) * (eps - eps_hat).pow(2).flatten(1).sum(1) / per_dim
        zero = torch.zeros_like(diffusion)
        return TinyLoss(zero, zero, diffusion, diffusion, diffusion)


def export_state(path: Path, model: nn.Module, meta: dict[str, Any]) -> None:
    """Stand-in for save_prior: the state dict in safetensors."""
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={"step": str(meta["step"])})


def make_images(n_train: int = 20, n_val: int = 6, size: int = 16, seed: int = 0) -> ImageSets:
    """Seeded random images in [-1, 1], float16 like the shipped dataset."""
    g = torch.Generator().manual_seed(seed)
    train = (torch.rand(n_train, 1, size, size, generator=g) * 2 - 1).half()
    val = (torch.rand(n_val, 1, size, size, generator=g) * 2 - 1).half()
    return ImageSets(train=train, val=val)
