"""A tiny third-party prior: data ``x ~ N(0, I)`` on 4 x 4 images, linear log-SNR schedule.

For standard normal data ``x_t ~ N(0, I)`` and ``E[eps | x_t] = sigma_t x_t`` exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from invdiff.priors.base import Prior, _bcast


class StandardNormalPrior(Prior):
    image_shape = (1, 4, 4)

    def __init__(self, device: str = "cpu") -> None:
        self._device = torch.device(device)

    def gamma(self, t: Tensor) -> Tensor:
        return -10.0 + 15.0 * torch.as_tensor(t, dtype=torch.float32, device=self._device)

    def eps(self, x_t: Tensor, t: Tensor) -> Tensor:
        _, sigma = self.alpha_sigma(t)
        return _bcast(sigma, x_t) * x_t

    @property
    def device(self) -> torch.device:
        return self._device


def load(device: str = "cpu") -> StandardNormalPrior:
    """Standard normal data on 4 x 4 images (invdiff's test plugin, ``tiny-test-prior``)."""
    return StandardNormalPrior(device)
