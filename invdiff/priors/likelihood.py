"""The data end of the VDM bound: 8-bit discretisation and the discretised Gaussian decoder.

As in google-research/vdm (``EncDec``), data are treated as ``vocab_size`` discrete levels:
level ``k`` sits at ``f_k = 2 (k + 1/2) / V - 1`` in [-1, 1]. The decoder is
``p(x = k | z_0) ∝ exp(-(z_0 / alpha_0 - f_k)^2 / (2 sigma_0^2 / alpha_0^2))`` with
``sigma_0^2 / alpha_0^2 = exp(gamma_0)`` (Kingma et al. 2021, Appendix C), so the bound is a
bound on a probability mass and bits/dim are comparable with the literature.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

#: Logits further than this below the maximum are dropped from the normaliser (e^-40 ~ 4e-18
#: relative per level; at most ``V`` levels), which is exact to float32 precision.
_LOGIT_CUTOFF = 40.0


def discretize(x: Tensor, vocab_size: int) -> Tensor:
    """Level index ``k`` in ``{0, ..., V-1}`` of ``x`` in [-1, 1] (values outside are clamped)."""
    k = torch.floor((x.float() + 1.0) * (0.5 * vocab_size))
    return k.clamp_(0, vocab_size - 1).long()


def level_value(k: Tensor, vocab_size: int) -> Tensor:
    """Centre ``2 (k + 1/2) / V - 1`` of level ``k`` (the vdm ``encode``)."""
    return (2.0 * (k.float() + 0.5) / vocab_size) - 1.0


def discretized_gaussian_nll(k: Tensor, z: Tensor, gamma_0: Tensor, vocab_size: int) -> Tensor:
    """``-sum log p(x = k | z)`` per example, in nats, shape ``(B,)``.

    ``log p(k | z) = l_k - logsumexp_j l_j`` with ``l_j = -(z - f_j)^2 / (2 exp(gamma_0))``.
    Only levels within ``W`` of the nearest level enter the normaliser, with ``W`` chosen so that
    every dropped logit is at least :data:`_LOGIT_CUTOFF` below the maximum; this costs
    ``O(W)`` instead of ``O(V)`` per pixel (``W = 2`` at ``gamma_0 = -13.3``).

    Args:
        k: level indices ``(B, ...)`` (from :func:`discretize`).
        z: rescaled latent ``z_0 / alpha_0``, same shape, float.
        gamma_0: scalar tensor ``gamma(0)``.
        vocab_size: number of levels ``V``.
    """
    inv_var = torch.exp(-gamma_0.float())
    delta = 2.0 / vocab_size
    sigma = math.exp(0.5 * float(gamma_0.detach()))
    w = min(vocab_size, math.ceil(math.sqrt(2.0 * _LOGIT_CUTOFF) * sigma / delta) + 1)
    z = z.float()
    nearest = torch.round((z + 1.0) / delta - 0.5).clamp(0, vocab_size - 1).detach()
    offsets = torch.arange(-w, w + 1, device=z.device, dtype=z.dtype)
    j = nearest.unsqueeze(-1) + offsets
    valid = (j >= 0) & (j < vocab_size)
    logits = -0.5 * (z.unsqueeze(-1) - level_value(j, vocab_size)).square() * inv_var
    log_norm = torch.logsumexp(logits.masked_fill(~valid, -math.inf), dim=-1)
    target = -0.5 * (z - level_value(k, vocab_size)).square() * inv_var
    return (log_norm - target).flatten(1).sum(1)


def kl_to_standard_normal(f: Tensor, gamma_1: Tensor) -> Tensor:
    """``KL(q(z_1 | x) || N(0, I))`` per example in nats, ``q = N(alpha_1 f, sigma_1^2 I)``.

    ``1/2 sum (alpha_1^2 f^2 + sigma_1^2 - log sigma_1^2 - 1)`` (Kingma et al. 2021, Eq. 11).
    """
    g = gamma_1.float()
    per_dim = torch.sigmoid(-g) * f.float().square() + torch.sigmoid(g) - F.logsigmoid(g) - 1.0
    return 0.5 * per_dim.flatten(1).sum(1)
