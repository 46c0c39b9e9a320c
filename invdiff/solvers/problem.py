"""Validated solver inputs and the measurement-space helpers every solver shares.

:func:`setup` checks a solver call once (shapes, finiteness, step and sample counts) and returns a
:class:`Problem`: the measurement replicated for ``n_samples`` posterior samples so that samples and
slices go through the network as one batch of ``n_samples * B`` images (sample-major).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from invdiff.solvers.result import SolveResult


class SolverInputError(ValueError):
    """A solver was called with inputs it cannot use."""


class SamplingError(FloatingPointError):
    """Non-finite values appeared while sampling."""


def describe(operator: Any) -> str:
    """A short name for an operator in error messages."""
    spec = getattr(operator, "spec", None)
    return str(spec) if spec else repr(operator)


@dataclass
class Problem:
    """A validated call: ``y`` has shape ``(B, C, *oshape)``; ``y_rep`` ``(n * B, C, *oshape)``."""

    name: str
    operator: Any
    prior: Any
    y: Tensor
    y_rep: Tensor
    n_samples: int
    image_shape: tuple[int, int, int]
    dtype: torch.dtype
    device: torch.device
    squeeze: bool
    started: float

    @property
    def batch(self) -> int:
        return self.y.shape[0]

    @property
    def x_shape(self) -> tuple[int, ...]:
        """Shape of the working batch ``(n * B, C, H, W)``."""
        return (self.n_samples * self.batch, *self.image_shape)

    def randn(self, generator: torch.Generator | None) -> Tensor:
        """Standard normal noise in image space, shape :attr:`x_shape`."""
        from invdiff.solvers.steps import randn

        return randn(self.x_shape, generator, self.dtype, self.device)

    def forward(self, x: Tensor) -> Tensor:
        return self.operator(x)

    def residual(self, x: Tensor) -> Tensor:
        """``|A x - y| / |y|`` per image of the working batch, shape ``(n * B,)``; NaN where
        ``y = 0`` (a relative residual is undefined there)."""
        r = self.forward(x) - self.y_rep
        dims = tuple(range(1, r.ndim))
        num = torch.linalg.vector_norm(r, dim=dims)
        den = torch.linalg.vector_norm(self.y_rep, dim=dims)
        return torch.where(den > 0, num / den.clamp_min(torch.finfo(num.dtype).tiny),
                           torch.full_like(num, float("nan")))

    def result(
        self, x: Tensor, info: dict[str, Any], generator: torch.Generator | None
    ) -> SolveResult:
        """Package the working batch ``(n * B, C, H, W)`` as a :class:`SolveResult`."""
        x = x.detach()
        if x.is_cuda:  # kernels run asynchronously: the wall time must include them
            torch.cuda.synchronize(x.device)
        elapsed = time.perf_counter() - self.started
        residual = self.residual(x).reshape(self.n_samples, self.batch)
        samples = x.reshape(self.n_samples, self.batch, *self.image_shape)
        info = {
            "solver": self.name,
            "seed": generator.initial_seed() if generator is not None else None,
            "wall_time": elapsed,
            "residual": residual,
            **info,
        }
        return SolveResult.from_samples(samples, info)


def setup(
    name: str, operator: Any, y: Tensor, prior: Any, *, steps: int | None, n_samples: int
) -> Problem:
    """Validate a solver call and build its :class:`Problem`.

    Raises:
        SolverInputError: on a measurement whose trailing shape is not ``operator.oshape``,
            non-finite values in ``y``, ``steps < 1``, ``n_samples < 1``, or an operator whose
            ``ishape`` differs from the prior's image size.
    """
    started = time.perf_counter()
    if not isinstance(y, Tensor):
        raise SolverInputError(f"{name}: y must be a torch.Tensor, got {type(y).__name__}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise SolverInputError(f"{name}: steps must be an integer >= 1, got {steps!r}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise SolverInputError(f"{name}: n_samples must be an integer >= 1, got {n_samples!r}")
    ishape, oshape = tuple(operator.ishape), tuple(operator.oshape)
    image_shape = tuple(prior.image_shape)
    if tuple(image_shape[-len(ishape) :]) != ishape or len(ishape) > len(image_shape):
        raise SolverInputError(
            f"{name}: operator {describe(operator)} acts on images of shape {ishape} but the prior "
            f"models {image_shape[-2:]}"
        )
    squeeze = y.shape == oshape
    if squeeze:
        y = y.reshape(1, 1, *oshape)
    if y.ndim != 2 + len(oshape) or tuple(y.shape[2:]) != oshape or y.shape[1] != image_shape[0]:
        raise SolverInputError(
            f"{name}: y must have shape (B, {image_shape[0]}, *{oshape}) or {oshape} for operator "
            f"{describe(operator)}, got {tuple(y.shape)}"
        )
    if not bool(torch.isfinite(y).all()):
        raise SolverInputError(f"{name}: y contains NaN or Inf")
    if not (y.is_complex() or y.is_floating_point()):
        raise SolverInputError(f"{name}: y must be floating point or complex, got {y.dtype}")
    makes_complex = operator.makes_complex(y.device)
    if makes_complex != y.is_complex():
        # y.real of k-space would be solved "consistently" with half the data thrown away
        raise SolverInputError(
            f"{name}: operator {describe(operator)} measures "
            f"{'complex' if makes_complex else 'real'} values but y is {y.dtype}")
    # work in the prior's dtype (float32 for network priors, which do not declare one)
    dtype = getattr(prior, "dtype", torch.float32)
    device = getattr(prior, "device", y.device)
    y = y.to(device=device, dtype=_complex_of(dtype) if y.is_complex() else dtype)
    y_rep = y.unsqueeze(0).expand(n_samples, *y.shape).reshape(n_samples * y.shape[0], *y.shape[1:])
    return Problem(
        name=name,
        operator=operator,
        prior=prior,
        y=y,
        y_rep=y_rep,
        n_samples=n_samples,
        image_shape=image_shape,  # type: ignore[arg-type]
        dtype=dtype,
        device=torch.device(device),
        squeeze=squeeze,
        started=started,
    )


def _complex_of(dtype: torch.dtype) -> torch.dtype:
    return {torch.float64: torch.complex128, torch.float16: torch.complex32}.get(
        dtype, torch.complex64
    )


def real_pinv(operator: Any, solver: str, alternative: str = "dps") -> Callable[[Tensor], Tensor]:
    """The operator's minimum-norm least-squares inverse over real images, ``operator.pinv_real``.

    Closed form for ``kcrop`` (exact on real images including the unpaired row/column of even
    crops); CG on the real normal equations for operators that only have a closed-form complex
    ``pinv``. Operators with neither are refused.

    Raises:
        SolverInputError: ``"<solver> needs an operator with pinv; <op> has none, use <alt>"``.
    """
    if not (getattr(operator, "has_pinv_real", False) or getattr(operator, "has_pinv", False)):
        raise SolverInputError(
            f"{solver} needs an operator with pinv; {describe(operator)} has none, "
            f"use {alternative}"
        )
    if hasattr(operator, "pinv_real"):
        return operator.pinv_real

    def pinv(r: Tensor) -> Tensor:
        x = operator.pinv(r)
        return x.real if x.is_complex() else x

    return pinv


def check_finite(x: Tensor, name: str, i: int, steps: int, t: float) -> None:
    """Stop sampling with a message naming the step when ``x`` is not finite."""
    if not bool(torch.isfinite(x).all()):
        raise SamplingError(
            f"{name}: non-finite values (NaN/Inf) in the sample at step {i + 1}/{steps} (t={t:.4f})"
        )


def lambda_schedule(lam: float | Callable[[float], float], name: str) -> Callable[[float], float]:
    """Turn ``lam`` (a float or a function of ``t``) into a checked function of ``t``.

    Raises:
        SolverInputError: a value outside ``(0, 1]``.
    """

    def check(v: float, where: str) -> float:
        v = float(v)
        if not 0.0 < v <= 1.0:
            raise SolverInputError(f"{name}: lambda must be in (0, 1], got {v}{where}")
        return v

    if callable(lam):
        return lambda t: check(lam(t), f" at t={t:.4f}")
    value = check(lam, "")
    return lambda t: value


def check_noise_sigma(noise_sigma: float, name: str) -> float:
    v = float(noise_sigma)
    if not v >= 0.0 or v != v or v == float("inf"):
        raise SolverInputError(f"{name}: noise_sigma must be finite and >= 0, got {noise_sigma}")
    return v
