"""Time grids and the ancestral VDM step shared by all diffusion solvers.

Notation (Kingma et al. 2021, "Variational Diffusion Models", Sec. 3.2 and Appendix A.4): for
``0 <= s < t <= 1`` with ``alpha^2 = sigmoid(-gamma)``, ``sigma^2 = sigmoid(gamma)``, the forward
process gives ``q(z_t | z_s) = N(alpha_{t|s} z_s, sigma_{t|s}^2 I)`` with
``alpha_{t|s} = alpha_t / alpha_s`` and ``sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2``, and
the reverse conditional is

    q(z_s | z_t, x) = N(mu, sigma_Q^2 I),
    mu        = alpha_{t|s} sigma_s^2 / sigma_t^2 * z_t + alpha_s sigma_{t|s}^2 / sigma_t^2 * x,
    sigma_Q^2 = sigma_{t|s}^2 sigma_s^2 / sigma_t^2.

Write ``c = -expm1(gamma_s - gamma_t) = 1 - SNR(t)/SNR(s)`` in ``(0, 1)``. Since
``alpha_{t|s}^2 sigma_s^2 / sigma_t^2 = SNR(t)/SNR(s) = 1 - c``, one gets
``sigma_{t|s}^2 / sigma_t^2 = c``, so

    mu        = alpha_s / alpha_t * (1 - c) z_t + alpha_s c x,       sigma_Q^2 = sigma_s^2 c.

Substituting ``x = x0_hat = (z_t - sigma_t eps_hat) / alpha_t`` gives the ancestral step

    z_s = a (z_t - b eps_hat) + c_z z,   a = alpha_s / alpha_t,   b = sigma_t c,
    c_z = sigma_s sqrt(c),   z ~ N(0, I)

(the paper's ``sqrt(alpha_s^2/alpha_t^2) (z_t - c sigma_t eps_hat) + sqrt((1 - alpha_s^2) c) eps``).
The same step written in ``(x0, eps')``, ``eps' = (z_t - alpha_t x0) / sigma_t``, is

    z_s = alpha_s x0 + sigma_s sqrt(1 - eta^2 c) eps' + eta sigma_s sqrt(c) z,

which is the ancestral step for ``eta = 1`` (check: ``sigma_s sqrt(1 - c) / sigma_t
= alpha_s (1 - c) / alpha_t``) and the deterministic DDIM step (Song et al. 2021, Eq. 12) for
``eta = 0``. Solvers that modify ``x0`` (DDNM, DiffPIR) use this form.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

Grid = Literal["uniform", "logsnr"]


@dataclass(frozen=True)
class Step:
    """One step ``t -> s`` of a time grid, with the schedule values the updates need."""

    index: int
    t: float
    s: float
    alpha_t: float
    sigma_t: float
    alpha_s: float
    sigma_s: float
    #: ``c = -expm1(gamma_s - gamma_t)``, the fraction of the variance removed by this step.
    c: float

    @property
    def a(self) -> float:
        """``alpha_s / alpha_t``."""
        return self.alpha_s / self.alpha_t

    @property
    def b(self) -> float:
        """``sigma_t c``."""
        return self.sigma_t * self.c

    @property
    def noise_std(self) -> float:
        """``sigma_s sqrt(c)``, the standard deviation of ``q(z_s | z_t, x)``."""
        return self.sigma_s * self.c**0.5


def randn(
    shape, generator: torch.Generator | None, dtype: torch.dtype, device: torch.device | str
) -> Tensor:
    """Standard normal noise drawn on the generator's device, then moved to ``device``.

    A CPU generator therefore also drives a GPU solve (reproducibly, at the cost of a copy).
    """
    where = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, dtype=dtype, device=where).to(device)


def _gamma(prior, t: Tensor) -> Tensor:
    """``gamma(t)`` as float64, evaluated in the prior's own dtype (float32 unless it says)."""
    dtype = getattr(prior, "dtype", torch.float32)
    with torch.no_grad():
        g = prior.gamma(t.to(dtype=dtype, device=getattr(prior, "device", "cpu")))
    return torch.as_tensor(g).to(device="cpu", dtype=torch.float64).reshape(t.shape)


def invert_gamma(prior, g: Tensor, iters: int = 60) -> Tensor:
    """``t`` with ``gamma(t) = g`` by bisection (``gamma`` is increasing)."""
    lo = torch.zeros_like(g, dtype=torch.float64)
    hi = torch.ones_like(g, dtype=torch.float64)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        below = _gamma(prior, mid) < g
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    return 0.5 * (lo + hi)


def time_grid(prior, steps: int, grid: Grid = "uniform") -> Tensor:
    """Decreasing times ``t_0 = 1 > ... > t_steps = 0`` (float64, length ``steps + 1``).

    ``"uniform"`` spaces ``t`` evenly (``steps = 1000`` is the seed's grid); ``"logsnr"`` spaces
    ``log SNR = -gamma`` evenly between ``-gamma(1)`` and ``-gamma(0)``.
    """
    if grid == "uniform":
        return torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    if grid == "logsnr":
        g = _gamma(prior, torch.tensor([1.0, 0.0], dtype=torch.float64))
        gs = torch.linspace(float(g[0]), float(g[1]), steps + 1, dtype=torch.float64)
        ts = invert_gamma(prior, gs)
        ts[0], ts[-1] = 1.0, 0.0
        return ts
    raise ValueError(f"grid must be 'uniform' or 'logsnr', got {grid!r}")


def schedule(prior, steps: int, grid: Grid = "uniform") -> list[Step]:
    """The :class:`Step` list of a grid, schedule values computed in float64."""
    ts = time_grid(prior, steps, grid)
    g = _gamma(prior, ts)
    alpha = torch.sigmoid(-g).sqrt()
    sigma = torch.sigmoid(g).sqrt()
    c = -torch.expm1(g[1:] - g[:-1])
    return [
        Step(
            i,
            float(ts[i]),
            float(ts[i + 1]),
            float(alpha[i]),
            float(sigma[i]),
            float(alpha[i + 1]),
            float(sigma[i + 1]),
            float(c[i]),
        )
        for i in range(steps)
    ]


def iterate(steps: list[Step], progress: bool, name: str) -> Iterator[Step]:
    """Iterate over steps, with a rich progress bar when ``progress`` is true."""
    if not progress:
        yield from steps
        return
    from rich.progress import track

    yield from track(steps, description=name)


def step_from_x0(
    x_t: Tensor, x0: Tensor, st: Step, eta: float, generator: torch.Generator | None
) -> Tensor:
    """``z_s = alpha_s x0 + sigma_s sqrt(1 - eta^2 c) eps' + eta sigma_s sqrt(c) z`` (module)."""
    eps = (x_t - st.alpha_t * x0) / st.sigma_t
    out = st.alpha_s * x0 + st.sigma_s * max(1.0 - eta**2 * st.c, 0.0) ** 0.5 * eps
    if eta > 0:
        z = randn(x_t.shape, generator, x_t.dtype, x_t.device)
        out = out + eta * st.noise_std * z
    return out


def ancestral_step(
    x_t: Tensor, eps_hat: Tensor, st: Step, eta: float, generator: torch.Generator | None
) -> Tensor:
    """One reverse step from the network's ``eps_hat``.

    ``eta = 1``: ``z_s = a (z_t - b eps_hat) + c_z z`` (VDM ancestral step, module docstring);
    other ``eta``: :func:`step_from_x0` with ``x0 = (z_t - sigma_t eps_hat) / alpha_t``.
    """
    if eta == 1.0:
        z = randn(x_t.shape, generator, x_t.dtype, x_t.device)
        return st.a * (x_t - st.b * eps_hat) + st.noise_std * z
    return step_from_x0(x_t, (x_t - st.sigma_t * eps_hat) / st.alpha_t, st, eta, generator)


def check_eta(eta: float, name: str) -> float:
    from invdiff.solvers.problem import SolverInputError

    eta = float(eta)
    if not 0.0 <= eta <= 1.0:
        raise SolverInputError(f"{name}: eta must be in [0, 1], got {eta}")
    return eta


def final_rescale(x: Tensor, prior) -> Tensor:
    """VDM's output map at ``t = 0``: ``x = z_0 / alpha_0`` (Kingma et al. 2021, App. A.4)."""
    g0 = _gamma(prior, torch.zeros((), dtype=torch.float64))
    return x / float(torch.sigmoid(-g0).sqrt())
