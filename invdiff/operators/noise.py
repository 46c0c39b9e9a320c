"""Measurement noise, kept apart from the operators: ``y = A x + n``, ``n ~ N(0, sigma^2)``.

Complex measurements use circularly symmetric complex Gaussian noise with ``E|n_i|^2 = sigma^2``
per complex entry, i.e. standard deviation ``sigma / sqrt(2)`` in each of the real and imaginary
parts. Real measurements get standard deviation ``sigma`` per entry. So ``sigma`` is always the
root-mean-square noise magnitude per measured entry, and ``|n|^2 / numel ~ sigma^2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class GaussianNoise:
    """Additive white Gaussian noise with known ``sigma`` (RMS magnitude per entry)."""

    sigma: float

    def __post_init__(self) -> None:
        if not (isinstance(self.sigma, int | float) and math.isfinite(self.sigma)
                and self.sigma >= 0):
            raise ValueError(f"noise sigma must be a finite number >= 0, got {self.sigma!r}")

    def sample(self, like: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A noise draw shaped and typed like ``like`` (complex: ``sigma / sqrt(2)`` per part).

        Drawn on the generator's device (CPU when ``generator`` is None and ``like`` is on CPU)
        and moved to ``like.device``.
        """
        dev = generator.device if generator is not None else like.device
        real = like.real.dtype if like.is_complex() else like.dtype
        if like.is_complex():
            parts = torch.randn((*like.shape, 2), dtype=real, device=dev, generator=generator)
            noise = torch.view_as_complex(parts) * (self.sigma / math.sqrt(2.0))
        else:
            noise = torch.randn(like.shape, dtype=real, device=dev, generator=generator)
            noise = noise * self.sigma
        return noise.to(like.device)

    def __call__(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``y + n`` with a fresh noise draw ``n`` (see :meth:`sample`)."""
        return y + self.sample(y, generator)

    def log_likelihood(self, y: Tensor, ax: Tensor, ndim: int) -> Tensor:
        """``-|y - A x|^2 / sigma^2`` summed over the trailing ``ndim`` axes (up to a constant).

        For complex data this is the circular-Gaussian log-density ``-|r|^2 / sigma^2``; for
        real data the Gaussian one is ``-|r|^2 / (2 sigma^2)``. Requires ``sigma > 0``.
        """
        if self.sigma == 0:
            raise ValueError("log_likelihood needs sigma > 0")
        r2 = (y - ax).abs().square().sum(dim=tuple(range(-ndim, 0)))
        return -r2 / (self.sigma**2 if y.is_complex() else 2 * self.sigma**2)
