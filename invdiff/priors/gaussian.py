"""An analytic Gaussian prior whose noise prediction and posteriors are exact.

Data model: ``x = mu + B^H diag(sqrt(v)) B w`` with ``w ~ N(0, I)`` real, i.e. ``x ~ N(mu, C)`` with
``C = B^H diag(v) B`` for an orthonormal basis ``B``:

* ``basis="pixel"``: ``B = I``, ``C = diag(v)`` (independent pixels);
* ``basis="fourier"``: ``B`` the centred orthonormal 2D DFT over ``(H, W)``. ``C`` is then the
  circulant (stationary) covariance with power spectrum ``v``; it is real because ``v`` is made
  symmetric under ``k -> -k`` (see :func:`symmetrize_spectrum`).

Forward process (Kingma et al. 2021, Sec. 2): ``x_t = alpha_t x + sigma_t eps``, so
``x_t ~ N(alpha_t mu, alpha_t^2 C + sigma_t^2 I)`` and, in the basis ``B``, each coefficient is
independent. The exact minimum-mean-squared-error noise prediction is

    eps_hat(x_t, t) = E[eps | x_t] = sigma_t (alpha_t^2 C + sigma_t^2 I)^{-1} (x_t - alpha_t mu)
                    = B^H [ sigma_t / (alpha_t^2 v + sigma_t^2) * B (x_t - alpha_t mu) ],

which makes ``x0_hat = (x_t - sigma_t eps_hat) / alpha_t`` the exact posterior mean ``E[x | x_t]``.
Its schedule is a fixed function: ``gamma(t)`` linear in ``t`` between ``gamma_min`` and
``gamma_max`` (the VDM defaults -13.3 and 5) or the cosine schedule's log-SNR.

:meth:`GaussianPrior.posterior` gives the closed-form posterior of ``x`` given a linear Gaussian
measurement ``y = A x + n`` (dense, for the small images tests use).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from invdiff.priors.base import Prior, _bcast

Basis = Literal["pixel", "fourier"]
Schedule = Literal["linear", "cosine"]


def fft2c(x: Tensor) -> Tensor:
    """Centred orthonormal 2D DFT over the last two axes."""
    x = torch.fft.ifftshift(x, dim=(-2, -1))
    return torch.fft.fftshift(torch.fft.fft2(x, norm="ortho"), dim=(-2, -1))


def ifft2c(k: Tensor) -> Tensor:
    """Inverse of :func:`fft2c`."""
    k = torch.fft.ifftshift(k, dim=(-2, -1))
    return torch.fft.fftshift(torch.fft.ifft2(k, norm="ortho"), dim=(-2, -1))


def mirror(v: Tensor) -> Tensor:
    """``v[-k]`` for a centred spectrum over the last two axes (index ``i`` is frequency
    ``i - n // 2``, so frequency ``-f`` lives at index ``(2 (n // 2) - i) mod n``)."""
    out = v
    for dim in (-2, -1):
        n = v.shape[dim]
        idx = (2 * (n // 2) - torch.arange(n, device=v.device)) % n
        out = out.index_select(dim, idx)
    return out


def symmetrize_spectrum(v: Tensor) -> Tensor:
    """``(v[k] + v[-k]) / 2``: the power spectrum of a real stationary field is symmetric."""
    return 0.5 * (v + mirror(v))


def power_law_spectrum(
    shape: tuple[int, int], exponent: float = 2.0, floor: float = 0.02, dtype=torch.float64
) -> Tensor:
    """A natural-image-like spectrum ``v(k) = 1 / (floor + |k|^2)^(exponent/2)``, normalised so
    that the mean variance per pixel is 1 (``|k|`` in cycles/pixel)."""
    fy = torch.fft.fftshift(torch.fft.fftfreq(shape[0], dtype=dtype))
    fx = torch.fft.fftshift(torch.fft.fftfreq(shape[1], dtype=dtype))
    k2 = fy[:, None] ** 2 + fx[None, :] ** 2
    v = (floor + k2) ** (-exponent / 2)
    return symmetrize_spectrum(v / v.mean())


class GaussianPrior(Prior):
    """``x ~ N(mu, B^H diag(v) B)`` in the pixel or centred-orthonormal-Fourier basis ``B``.

    Args:
        mean: ``mu``, shape ``(C, H, W)`` (or ``(H, W)`` for one channel), real.
        var: ``v``, the variances in basis ``B``, positive, broadcastable to ``(C, H, W)``.
            For ``basis="fourier"`` it is symmetrised (``v[k] = v[-k]``) so that ``C`` is real.
        basis: ``"pixel"`` or ``"fourier"``.
        schedule: ``"linear"`` (``gamma`` linear in ``t``) or ``"cosine"``
            (``gamma(t) = -2 log(cot(pi t / 2))`` clipped to ``[gamma_min, gamma_max]``).
        gamma_min, gamma_max: ``gamma(0)`` and ``gamma(1)``.
    """

    def __init__(
        self,
        mean: Tensor,
        var: Tensor,
        basis: Basis = "fourier",
        schedule: Schedule = "linear",
        gamma_min: float = -13.3,
        gamma_max: float = 5.0,
    ) -> None:
        mean = torch.as_tensor(mean)
        if mean.ndim == 2:
            mean = mean[None]
        if mean.ndim != 3 or mean.is_complex():
            raise ValueError(f"mean must be a real (C, H, W) tensor, got shape {tuple(mean.shape)}")
        var = torch.as_tensor(var, dtype=mean.dtype).broadcast_to(mean.shape).clone()
        if not bool((var > 0).all()):
            raise ValueError("var must be positive everywhere")
        if basis not in ("pixel", "fourier"):
            raise ValueError(f"basis must be 'pixel' or 'fourier', got {basis!r}")
        if schedule not in ("linear", "cosine"):
            raise ValueError(f"schedule must be 'linear' or 'cosine', got {schedule!r}")
        if not gamma_min < gamma_max:
            raise ValueError(f"need gamma_min < gamma_max, got {gamma_min} >= {gamma_max}")
        self.mean = mean
        self.var = symmetrize_spectrum(var) if basis == "fourier" else var
        self.basis: Basis = basis
        self.schedule: Schedule = schedule
        self.gamma_min, self.gamma_max = float(gamma_min), float(gamma_max)
        self.image_shape = tuple(mean.shape)  # type: ignore[assignment]

    @classmethod
    def stationary(
        cls, shape: tuple[int, int], mean: float = 0.0, dtype=torch.float64, **kwargs
    ) -> GaussianPrior:
        """One-channel Fourier-diagonal prior with :func:`power_law_spectrum` and constant mean."""
        v = power_law_spectrum(shape, dtype=dtype)
        return cls(torch.full((1, *shape), float(mean), dtype=dtype), v, basis="fourier", **kwargs)

    @property
    def dtype(self) -> torch.dtype:
        return self.mean.dtype

    @classmethod
    def fit(
        cls, images: Tensor, basis: Basis = "fourier", floor: float = 1e-6, **kwargs
    ) -> GaussianPrior:
        """Maximum-likelihood fit to images ``(N, C, H, W)``: the mean image and the variance of
        each basis coefficient (``E|B (x - mu)|^2``), plus ``floor``."""
        if images.ndim != 4 or images.shape[0] < 2:
            raise ValueError(f"need images of shape (N >= 2, C, H, W), got {tuple(images.shape)}")
        images = images.to(torch.float64)
        mean = images.mean(0)
        d = images - mean
        coef = fft2c(d) if basis == "fourier" else d
        var = coef.abs().pow(2).mean(0) + floor
        return cls(mean, var, basis=basis, **kwargs)

    # -- the Prior protocol -----------------------------------------------------------------
    def gamma(self, t: Tensor) -> Tensor:
        t = torch.as_tensor(t, dtype=self.mean.dtype)
        if self.schedule == "linear":
            return self.gamma_min + (self.gamma_max - self.gamma_min) * t
        # cosine: SNR = cot^2(pi t / 2)  ->  gamma = -log SNR = 2 log tan(pi t / 2)
        tc = t.clamp(1e-7, 1 - 1e-7)
        g = 2.0 * torch.log(torch.tan(0.5 * math.pi * tc))
        return g.clamp(self.gamma_min, self.gamma_max)

    def eps(self, x_t: Tensor, t: Tensor) -> Tensor:
        if tuple(x_t.shape[1:]) != self.image_shape:
            raise ValueError(
                f"expected x_t of shape (B, *{self.image_shape}), got {tuple(x_t.shape)}"
            )
        alpha, sigma = (_bcast(s, x_t) for s in self.alpha_sigma(torch.as_tensor(t)))
        mean, var = self.mean.to(x_t), self.var.to(x_t)
        d = x_t - alpha * mean
        gain = sigma / (alpha**2 * var + sigma**2)
        if self.basis == "pixel":
            return gain * d
        return ifft2c(gain * fft2c(d)).real

    # -- closed forms -----------------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` exact samples ``(n, C, H, W)``."""
        w = torch.randn((n, *self.image_shape), generator=generator, dtype=self.mean.dtype)
        return self.mean + self._apply_sqrt_cov(w)

    def _apply_sqrt_cov(self, w: Tensor) -> Tensor:
        if self.basis == "pixel":
            return self.var.sqrt() * w
        return ifft2c(self.var.sqrt() * fft2c(w)).real

    def covariance(self) -> Tensor:
        """Dense prior covariance ``C`` of the flattened image, ``(D, D)``, ``D = C*H*W``."""
        d = self.mean.numel()
        eye = torch.eye(d, dtype=self.mean.dtype).reshape(d, *self.image_shape)
        # C is symmetric, and C = S S with S = B^H diag(sqrt v) B symmetric.
        return self._apply_sqrt_cov(self._apply_sqrt_cov(eye)).reshape(d, d)

    def marginal_variance(self) -> Tensor:
        """Per-pixel prior variance ``diag(C)`` as an image ``(C, H, W)``."""
        if self.basis == "pixel":
            return self.var.clone()
        # C_ii = sum_k |B_ki|^2 v_k = mean_k v_k for the orthonormal DFT.
        return self.var.mean(dim=(-2, -1), keepdim=True).expand(self.image_shape).clone()

    def posterior(self, forward, y: Tensor, noise_sigma: float = 0.0) -> tuple[Tensor, Tensor]:
        """Closed-form posterior of ``x`` given ``y = A x + n`` for one measurement.

        ``n`` is Gaussian with ``E|n_j|^2 = noise_sigma^2`` per entry (for complex ``y``: real and
        imaginary parts each ``noise_sigma^2 / 2``). Writing ``G`` for ``A`` as a real matrix
        (real and imaginary parts of the outputs stacked), the posterior is Gaussian with

            mean = mu + C G^T (G C G^T + R)^+ (y - G mu),   cov = C - C G^T (G C G^T + R)^+ G C,

        with ``R`` the noise covariance; the pseudo-inverse covers noiseless and rank-deficient
        ``G`` (e.g. the imaginary part of the DC of a real image's k-space is always zero).

        Args:
            forward: callable ``A``, images ``(B, C, H, W)`` -> measurements ``(B, ...)``.
            y: one measurement, shape ``(1, ...)`` or ``(...)`` as ``forward`` returns per image.
            noise_sigma: ``sigma_y``.

        Returns:
            ``(mean (C, H, W), cov (D, D))``, ``D = C*H*W``.
        """
        d = self.mean.numel()
        dt = self.mean.dtype
        eye = torch.eye(d, dtype=dt).reshape(d, *self.image_shape)
        g = _as_real_rows(forward(eye).reshape(d, -1)).T  # (M', D)
        yv = _as_real_rows(y.reshape(1, -1).to(torch.promote_types(y.dtype, dt)))[0]
        cplx = forward(eye[:1]).is_complex()
        r_var = noise_sigma**2 / (2.0 if cplx else 1.0)
        cov0 = self.covariance()
        mu = self.mean.reshape(d)
        s = g @ cov0 @ g.T + r_var * torch.eye(g.shape[0], dtype=dt)
        k = cov0 @ g.T @ torch.linalg.pinv(s, hermitian=True, rtol=1e-10)
        mean = mu + k @ (yv - g @ mu)
        cov = cov0 - k @ g @ cov0
        return mean.reshape(self.image_shape), 0.5 * (cov + cov.T)


def _as_real_rows(a: Tensor) -> Tensor:
    """Stack real and imaginary parts along the last axis for complex ``a``."""
    if a.is_complex():
        return torch.cat([a.real, a.imag], dim=-1)
    return a
