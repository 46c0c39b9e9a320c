"""The prior protocol every solver uses and every prior plugin implements.

Conventions (Kingma et al. 2021, "Variational Diffusion Models", Sec. 2):

* time ``t`` in [0, 1]; ``gamma(t)`` is the negative log-SNR, increasing in ``t``;
* ``alpha_t**2 = sigmoid(-gamma_t)``, ``sigma_t**2 = sigmoid(gamma_t)`` (variance preserving),
  ``SNR(t) = alpha_t**2 / sigma_t**2 = exp(-gamma_t)``;
* ``x_t = alpha_t * x + sigma_t * eps`` with ``eps ~ N(0, I)``;
* ``x0_hat = (x_t - sigma_t * eps_hat) / alpha_t`` and ``score = -eps_hat / sigma_t``.

Image-intensity convention: images are real tensors ``(B, C, H, W)`` in the prior's data range,
``[-1, 1]`` for the built-in priors. Magnitude MRI is mapped there by
:func:`invdiff.intensity.to_prior_range` (divide by a robust scale, then ``2 x - 1``); solvers
must put measurements on the same scale (see :mod:`invdiff.intensity`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor


class Prior(ABC):
    """A diffusion prior: a noise schedule ``gamma(t)`` and a noise predictor ``eps(x_t, t)``.

    Subclasses implement :meth:`gamma` and :meth:`eps`; everything else is derived.
    ``t`` is a tensor broadcastable to the batch, shape ``()`` or ``(B,)``.
    """

    #: (channels, height, width) of the images the prior models.
    image_shape: tuple[int, int, int]
    #: (low, high) of the data range the prior was trained on.
    data_range: tuple[float, float] = (-1.0, 1.0)

    @abstractmethod
    def gamma(self, t: Tensor) -> Tensor:
        """Negative log-SNR ``gamma(t)``, strictly increasing in ``t``."""

    @abstractmethod
    def eps(self, x_t: Tensor, t: Tensor) -> Tensor:
        """Predicted noise ``eps_hat(x_t, t)`` for ``x_t`` of shape ``(B, C, H, W)``.

        Each image's prediction must depend on that image alone (solvers may split a batch into
        several calls: :func:`invdiff.solvers.loop.predict_eps`).
        """

    # -- derived quantities ---------------------------------------------------------------
    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(alpha_t, sigma_t)``: ``alpha**2 = sigmoid(-gamma)``, ``sigma**2 = sigmoid(gamma)``."""
        g = self.gamma(t)
        return torch.sigmoid(-g).sqrt(), torch.sigmoid(g).sqrt()

    def snr(self, t: Tensor) -> Tensor:
        """Signal-to-noise ratio ``exp(-gamma(t))``."""
        return torch.exp(-self.gamma(t))

    def x0_hat(self, x_t: Tensor, t: Tensor) -> Tensor:
        """Tweedie estimate ``(x_t - sigma_t eps_hat) / alpha_t``."""
        alpha, sigma = (_bcast(v, x_t) for v in self.alpha_sigma(t))
        return (x_t - sigma * self.eps(x_t, t)) / alpha

    def score(self, x_t: Tensor, t: Tensor) -> Tensor:
        """Score ``grad log p_t(x_t) = -eps_hat / sigma_t``."""
        _, sigma = self.alpha_sigma(t)
        return -self.eps(x_t, t) / _bcast(sigma, x_t)

    def bits_per_dim(self, x: Tensor) -> Tensor:
        """Negative log-likelihood bound in bits per dimension, per example ``(B,)``.

        Only priors that define a likelihood implement this.
        """
        raise NotImplementedError(f"{type(self).__name__} defines no likelihood")

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")


def _bcast(v: Tensor, like: Tensor) -> Tensor:
    """Reshape a scalar or per-example ``(B,)`` tensor to broadcast against ``(B, ...)``."""
    v = torch.as_tensor(v, dtype=like.dtype, device=like.device)
    if v.ndim == 0:
        return v
    return v.reshape(v.shape[0], *([1] * (like.ndim - 1)))
