"""The one solver signature and its result type.

Every solver is a plain function (k-diffusion's ``sampling.py`` style)::

    solver(operator, y, prior, *, steps=50, n_samples=1, generator=None, noise_sigma=0.0,
           callback=None, progress=False, **options) -> SolveResult

* ``operator``: an :mod:`invdiff.operators` linear operator acting on the trailing image axes
  ``operator.ishape`` (e.g. ``(H, W)``) and returning ``operator.oshape``.
* ``y``: the measurement in the **prior's intensity range**, shape ``(B, C, *oshape)`` or
  ``oshape`` for one single-channel slice. A measurement of magnitude data ``m`` is put there by
  :func:`invdiff.intensity.measurement_to_prior_range` (``y' = 2 y / s - A(1)``); measurements with
  a phase go through :func:`invdiff.solvers.phase.solve_with_phase`.
* ``prior``: an :class:`invdiff.priors.base.Prior`; images are real ``(B, C, H, W)``.
* Returned images are in the prior's range; map them back with
  :func:`invdiff.intensity.from_prior_range`.

Options a solver does not use are accepted and ignored (``**_``), so one call site can switch
solvers by name (:mod:`invdiff.solvers.registry`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor


@dataclass
class SolveResult:
    """What every solver returns.

    Attributes:
        samples: ``(n_samples, B, C, H, W)`` reconstructions in the prior's range.
        mean: ``(B, C, H, W)`` mean over samples.
        std: ``(B, C, H, W)`` pixelwise standard deviation over samples (zeros for one sample).
        info: ``solver``, ``steps``, ``nfe`` (network evaluations per batch), ``wall_time`` (s),
            ``seed`` (the generator's initial seed, or None), ``residual`` (``(n_samples, B)``
            tensor of ``|A x - y| / |y|``), plus solver-specific entries.
    """

    samples: Tensor
    mean: Tensor
    std: Tensor
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_samples(cls, samples: Tensor, info: dict[str, Any]) -> SolveResult:
        std = (
            samples.std(dim=0, unbiased=True)
            if samples.shape[0] > 1
            else torch.zeros_like(samples[0])
        )
        return cls(samples=samples, mean=samples.mean(dim=0), std=std, info=info)


class Solver(Protocol):
    """The shared solver signature (see the module docstring)."""

    def __call__(
        self,
        operator: Any,
        y: Tensor,
        prior: Any,
        *,
        steps: int = 50,
        n_samples: int = 1,
        generator: torch.Generator | None = None,
        noise_sigma: float = 0.0,
        callback: Callable[[dict[str, Any]], None] | None = None,
        progress: bool = False,
        **options: Any,
    ) -> SolveResult: ...
