"""The eps-predicting U-Net of the VDM prior (Kingma et al. 2021, Appendix B).

Follows google-research/vdm ``ScoreUNet`` and the DDPM U-Net (Ho et al. 2020): residual blocks
with GroupNorm and SiLU, conditioning on the normalised ``gamma_t`` through a sinusoidal
embedding and an MLP, single-head self-attention at the configured resolutions and in the
middle, zero-initialised output layers, Fourier features of the input concatenated to it
(Kingma et al. 2021, Appendix C), and the "base measure" ``eps_hat = net(z) + z`` of the
reference code. Unlike the reference (no down-sampling), resolutions are halved between levels
so that it runs on a CPU at 128 x 128.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _groups(channels: int) -> int:
    """Largest divisor of ``channels`` not above ``min(32, channels // 4)`` (at least 1)."""
    for g in range(min(32, max(channels // 4, 1)), 0, -1):
        if channels % g == 0:
            return g
    return 1


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of ``1000 t`` (Vaswani et al. 2017, as in vdm), shape ``(B, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / (half - 1))
    arg = 1000.0 * t.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)
    return F.pad(emb, (0, dim % 2))


def fourier_features(z: Tensor, exponents: tuple[int, ...]) -> Tensor:
    """``[sin(2^n pi z), cos(2^n pi z)]`` for ``n`` in ``exponents`` (Kingma et al. 2021, App. C).

    Computed in float32: at ``n = 8`` bf16 would destroy the phase.
    """
    if not exponents:
        return z[:, :0]
    w = math.pi * torch.tensor([2.0**n for n in exponents], device=z.device)
    h = (z.float().unsqueeze(2) * w[None, None, :, None, None]).flatten(1, 2)
    return torch.cat([torch.sin(h), torch.cos(h)], dim=1)


class ResBlock(nn.Module):
    """GN-SiLU-conv, add conditioning, GN-SiLU-dropout-conv (zero init), residual."""

    def __init__(self, c_in: int, c_out: int, c_emb: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.cond = _zero(nn.Linear(c_emb, c_out, bias=False))
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.drop = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.cond(emb)[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all pixels, residual, zero-initialised projection."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(2, 3).unbind(1)
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return x + self.proj(out.transpose(1, 2).reshape(b, c, h, w))


class Level(nn.Module):
    """Residual blocks (each optionally followed by attention) at one resolution."""

    def __init__(self, c_ins: list[int], c_out: int, c_emb: int, attn: bool, dropout: float):
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(c, c_out, c_emb, dropout) for c in c_ins)
        self.attns = nn.ModuleList(AttnBlock(c_out) if attn else nn.Identity() for _ in c_ins)


class UNet(nn.Module):
    """eps network ``eps_hat(z_t, gamma_t)`` for images ``(B, C, S, S)``.

    Args:
        in_channels: image channels ``C``.
        image_size: ``S``; must be divisible by ``2 ** (len(channels) - 1)``.
        channels: feature channels per resolution level (halving the resolution between levels).
        num_res_blocks: residual blocks per level on the way down (one more on the way up).
        attn_resolutions: side lengths that get self-attention (the middle always does).
        dropout: dropout rate inside residual blocks.
        fourier_exponents: ``n`` of the Fourier features ``sin/cos(2^n pi z)``; empty for none.
        gamma_min, gamma_max: range used to normalise ``gamma_t`` to [0, 1] for the embedding.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        channels: tuple[int, ...] = (16, 32, 64, 128),
        num_res_blocks: int = 2,
        attn_resolutions: tuple[int, ...] = (16,),
        dropout: float = 0.0,
        fourier_exponents: tuple[int, ...] = (7, 8),
        gamma_min: float = -13.3,
        gamma_max: float = 5.0,
    ) -> None:
        super().__init__()
        factor = 2 ** (len(channels) - 1)
        if image_size % factor:
            raise ValueError(
                f"image_size must be divisible by {factor} for {len(channels)} levels, "
                f"got {image_size}"
            )
        self.fourier_exponents = tuple(fourier_exponents)
        self.gamma_min, self.gamma_max = float(gamma_min), float(gamma_max)
        c0, c_emb = channels[0], 4 * channels[0]
        self.emb = nn.Sequential(
            nn.Linear(c0, c_emb), nn.SiLU(), nn.Linear(c_emb, c_emb), nn.SiLU()
        )
        c_feat = in_channels * (1 + 2 * len(self.fourier_exponents))
        self.conv_in = nn.Conv2d(c_feat, c0, 3, padding=1)

        res = [image_size // 2**i for i in range(len(channels))]
        skips, c = [c0], c0
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        for i, ch in enumerate(channels):
            ins = [c] + [ch] * (num_res_blocks - 1)
            self.down.append(Level(ins, ch, c_emb, res[i] in attn_resolutions, dropout))
            skips += [ch] * num_res_blocks
            c = ch
            if i < len(channels) - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
        self.mid1 = ResBlock(c, c, c_emb, dropout)
        self.mid_attn = AttnBlock(c)
        self.mid2 = ResBlock(c, c, c_emb, dropout)

        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(len(channels))):
            ch = channels[i]
            ins = []
            for _ in range(num_res_blocks + 1):
                ins.append(c + skips.pop())
                c = ch
            self.up.append(Level(ins, ch, c_emb, res[i] in attn_resolutions, dropout))
            if i > 0:
                self.upsample.append(nn.Conv2d(c, c, 3, padding=1))
        self.norm_out = nn.GroupNorm(_groups(c), c)
        self.conv_out = _zero(nn.Conv2d(c, in_channels, 3, padding=1))

    def forward(self, z: Tensor, gamma: Tensor) -> Tensor:
        """Predict eps from ``z`` ``(B, C, S, S)`` and ``gamma`` of shape ``()`` or ``(B,)``."""
        gamma = torch.as_tensor(gamma, device=z.device).float().expand(z.shape[0])
        t = (gamma - self.gamma_min) / (self.gamma_max - self.gamma_min)
        emb = self.emb(timestep_embedding(t, self.conv_in.out_channels))
        h = self.conv_in(torch.cat([z, fourier_features(z, self.fourier_exponents)], dim=1))
        hs = [h]
        for i, level in enumerate(self.down):
            for block, attn in zip(level.blocks, level.attns, strict=True):
                h = attn(block(h, emb))
                hs.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
                hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for i, level in enumerate(self.up):
            for block, attn in zip(level.blocks, level.attns, strict=True):
                h = attn(block(torch.cat([h, hs.pop()], dim=1), emb))
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        eps = self.conv_out(F.silu(self.norm_out(h)))
        return eps.float() + z  # base measure of the reference code: eps_hat = net(z) + z
