"""Noise schedules ``gamma(t)`` (negative log-SNR) on ``t`` in [0, 1].

Every schedule returns ``gamma(t)`` and its time derivative ``gamma'(t)`` (needed by the
continuous-time diffusion loss of Kingma et al. 2021, Eq. 17) and is written as

    gamma(t) = gamma_0 + (gamma_1 - gamma_0) * shape(t),   shape(0) = 0, shape(1) = 1,

so the endpoints (which alone fix the continuous-time VLB, Kingma et al. 2021 Sec. 5.1) are
separate from the shape (which only affects the variance of its Monte Carlo estimate).

* :class:`LearnedSchedule`: the monotone network ``NoiseSchedule_NNet`` of the VDM paper
  (Appendix I.1 / google-research/vdm ``model_vdm.py``) with learned endpoints.
* :class:`LinearSchedule`: the linear-beta DDPM schedule (Ho et al. 2020) in log-SNR form.
* :class:`CosineSchedule`: the cosine schedule (Nichol & Dhariwal 2021) in log-SNR form.

The fixed schedules restrict their log-SNR curve to ``[gamma_min, gamma_max]`` by an affine
change of time, so every schedule spans the same configured range.

Schedules compute in float32 with autocast disabled: in bf16, ``gamma`` would lose the
precision the discrete loss ``expm1(gamma_t - gamma_s)`` needs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

SCHEDULES = ("learned", "linear", "cosine")

#: Std of the normal initialisation of the learned schedule's hidden weights (vdm's
#: ``nn.initializers.normal()`` default, ``jax.nn.initializers.normal(stddev=0.01)``).
HIDDEN_INIT_STD = 0.01

#: A function applied to the schedule's shape tensors (identity in value).
ShapeHook = Callable[[Tensor], Tensor]


class Schedule(nn.Module):
    """Base class: subclasses implement :meth:`shape_and_derivative` on float32 ``t``."""

    gamma_0: Tensor
    gamma_1: Tensor

    def shape_and_derivative(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(shape(t), shape'(t))`` with ``shape(0) = 0``, ``shape(1) = 1``, increasing."""
        raise NotImplementedError

    def forward(self, t: Tensor | float) -> Tensor:
        """``gamma(t)``, same shape as ``t``."""
        return self.gamma_and_derivative(t)[0]

    def gamma_and_derivative(
        self, t: Tensor | float, shape_hook: ShapeHook | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(gamma(t), gamma'(t))``.

        Args:
            t: times in [0, 1], any shape.
            shape_hook: if given, called on the shape tensors before they are combined with the
                endpoints; used by the VDM loss to give the schedule's shape the
                variance-minimising gradient (Kingma et al. 2021, Appendix I.2).
        """
        t = torch.as_tensor(t, dtype=torch.float32, device=self.gamma_0.device)
        with torch.autocast(t.device.type, enabled=False):
            shape, dshape = self.shape_and_derivative(t.float())
            if shape_hook is not None:
                shape, dshape = shape_hook(shape), shape_hook(dshape)
            span = self.gamma_1 - self.gamma_0
            return self.gamma_0 + span * shape, span * dshape


class LearnedSchedule(Schedule):
    """Monotone network ``gamma_eta(t)`` of Kingma et al. 2021 (Eq. 8 / Appendix I.1).

    ``g~(t) = l1(t) + l3(phi(l2(2 t - 1))) / n_features`` with ``phi(u) = 2 sigmoid(u) - 1``
    and every weight used through its absolute value (``DenseMonotone``), so ``g~`` is
    strictly increasing whenever ``|w1| > 0``. The output is rescaled to learned endpoints:
    ``gamma(t) = gamma_0 + (gamma_1 - gamma_0) (g~(t) - g~(0)) / (g~(1) - g~(0))``, with
    ``gamma_0, gamma_1`` initialised at ``gamma_min, gamma_max``.

    Args:
        gamma_min: initial ``gamma_0`` (``-log SNR_max``).
        gamma_max: initial ``gamma_1`` (``-log SNR_min``).
        n_features: width of the monotone hidden layer (1024 in the paper).
        generator: seeds the initialisation of the hidden layers: normal with std
            :data:`HIDDEN_INIT_STD` = 0.01, vdm's ``nn.initializers.normal()`` (whose default
            ``stddev`` is 0.01), so the initial schedule is linear up to ~1e-4.
    """

    def __init__(
        self,
        gamma_min: float,
        gamma_max: float,
        n_features: int = 1024,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        _check_range(gamma_min, gamma_max)
        self.gamma_0 = nn.Parameter(torch.tensor(float(gamma_min)))
        self.gamma_1 = nn.Parameter(torch.tensor(float(gamma_max)))
        self.n_features = n_features
        self.w1 = nn.Parameter(torch.tensor(float(gamma_max - gamma_min)))
        self.b1 = nn.Parameter(torch.tensor(float(gamma_min)))
        std = HIDDEN_INIT_STD
        self.w2 = nn.Parameter(std * torch.randn(n_features, generator=generator))
        self.b2 = nn.Parameter(torch.zeros(n_features))
        self.w3 = nn.Parameter(std * torch.randn(n_features, generator=generator))

    def _g_tilde(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """Unnormalised ``g~(t)`` and ``g~'(t)`` (derivative in closed form)."""
        w1, w2, w3 = self.w1.abs(), self.w2.abs(), self.w3.abs()
        u = (2.0 * t - 1.0).unsqueeze(-1) * w2 + self.b2
        sig = torch.sigmoid(u)
        phi = 2.0 * sig - 1.0
        g = w1 * t + self.b1 + (phi @ w3) / self.n_features
        dphi_dt = 2.0 * sig * (1.0 - sig) * 2.0 * w2
        dg = w1 + (dphi_dt @ w3) / self.n_features
        return g, dg

    def shape_and_derivative(self, t: Tensor) -> tuple[Tensor, Tensor]:
        g, dg = self._g_tilde(t)
        ends, _ = self._g_tilde(torch.tensor([0.0, 1.0], device=t.device))
        span = ends[1] - ends[0]
        return (g - ends[0]) / span, dg / span


class LinearSchedule(Schedule):
    """Linear-beta DDPM schedule (Ho et al. 2020) in log-SNR form.

    In the continuous limit (Song et al. 2021, VP-SDE) ``beta(u) = b0 + (b1 - b0) u`` with
    ``b0 = 0.1``, ``b1 = 20`` (``T beta`` for ``beta`` from 1e-4 to 0.02 over ``T = 1000``), so
    ``alpha_u^2 = exp(-q(u))`` with ``q(u) = b0 u + (b1 - b0) u^2 / 2`` and
    ``gamma(u) = log(expm1(q(u)))``. Time is remapped affinely, ``u = u0 + (u1 - u0) t``, so
    that ``gamma(0) = gamma_min`` and ``gamma(1) = gamma_max``.
    """

    def __init__(
        self, gamma_min: float, gamma_max: float, beta_min: float = 0.1, beta_max: float = 20.0
    ) -> None:
        super().__init__()
        _check_range(gamma_min, gamma_max)
        self.register_buffer("gamma_0", torch.tensor(float(gamma_min)))
        self.register_buffer("gamma_1", torch.tensor(float(gamma_max)))
        self.beta_min, self.beta_max = beta_min, beta_max
        self.u0, self.u1 = self._u_of_gamma(gamma_min), self._u_of_gamma(gamma_max)

    def _u_of_gamma(self, gamma: float) -> float:
        # Solve b0 u + (b1 - b0) u^2 / 2 = log(1 + e^gamma) for u >= 0.
        q = math.log1p(math.exp(gamma)) if gamma < 30 else gamma
        a, b = 0.5 * (self.beta_max - self.beta_min), self.beta_min
        return 2.0 * q / (b + math.sqrt(b * b + 4.0 * a * q))

    def _gamma_of_u(self, u: Tensor) -> tuple[Tensor, Tensor]:
        q = self.beta_min * u + 0.5 * (self.beta_max - self.beta_min) * u * u
        dq = self.beta_min + (self.beta_max - self.beta_min) * u
        # d/du log(expm1(q)) = q' e^q / (e^q - 1) = -q' / expm1(-q)
        return torch.log(torch.expm1(q)), -dq / torch.expm1(-q)

    def shape_and_derivative(self, t: Tensor) -> tuple[Tensor, Tensor]:
        du = self.u1 - self.u0
        g, dg = self._gamma_of_u(self.u0 + du * t.double())
        span = self.gamma_1.double() - self.gamma_0.double()
        return ((g - self.gamma_0) / span).float(), (dg * du / span).float()


class CosineSchedule(Schedule):
    """Cosine schedule (Nichol & Dhariwal 2021) in log-SNR form.

    ``alpha_u^2 = cos^2(pi u / 2)`` gives ``gamma(u) = 2 log tan(pi u / 2)``; time is remapped
    affinely, ``u = u0 + (u1 - u0) t`` with ``u = (2 / pi) atan(exp(gamma / 2))`` at the
    endpoints, so ``gamma(0) = gamma_min`` and ``gamma(1) = gamma_max`` (the truncated cosine).
    """

    def __init__(self, gamma_min: float, gamma_max: float) -> None:
        super().__init__()
        _check_range(gamma_min, gamma_max)
        self.register_buffer("gamma_0", torch.tensor(float(gamma_min)))
        self.register_buffer("gamma_1", torch.tensor(float(gamma_max)))
        self.u0 = 2.0 / math.pi * math.atan(math.exp(0.5 * gamma_min))
        self.u1 = 2.0 / math.pi * math.atan(math.exp(0.5 * gamma_max))

    def shape_and_derivative(self, t: Tensor) -> tuple[Tensor, Tensor]:
        du = self.u1 - self.u0
        u = self.u0 + du * t.double()
        g = 2.0 * torch.log(torch.tan(0.5 * math.pi * u))
        dg = 2.0 * math.pi / torch.sin(math.pi * u)
        span = self.gamma_1.double() - self.gamma_0.double()
        return ((g - self.gamma_0) / span).float(), (dg * du / span).float()


def make_schedule(
    name: str,
    gamma_min: float,
    gamma_max: float,
    n_features: int = 1024,
    generator: torch.Generator | None = None,
) -> Schedule:
    """Build the schedule ``name`` (one of :data:`SCHEDULES`); ``n_features`` for "learned"."""
    if name == "learned":
        return LearnedSchedule(gamma_min, gamma_max, n_features, generator=generator)
    if name == "linear":
        return LinearSchedule(gamma_min, gamma_max)
    if name == "cosine":
        return CosineSchedule(gamma_min, gamma_max)
    raise ValueError(f"unknown schedule {name!r}; expected one of {SCHEDULES}")


def _check_range(gamma_min: float, gamma_max: float) -> None:
    if not gamma_min < gamma_max:
        raise ValueError(f"need gamma_min < gamma_max, got {gamma_min} and {gamma_max}")


__all__ = [
    "SCHEDULES",
    "CosineSchedule",
    "LearnedSchedule",
    "LinearSchedule",
    "Schedule",
    "ShapeHook",
    "make_schedule",
]
