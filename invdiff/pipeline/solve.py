"""Solving a :class:`SliceProblem` batch by batch with a registered solver.

Slices go through the solver ``batch`` at a time (posterior samples of a batch run as one network
batch inside the solver). Intensities: each batch's measurement is mapped to the prior's range by
:func:`invdiff.intensity.measurement_to_prior_range` with the problem's scale ``s``
(``y' = 2 y / s - A(1)``, noise ``sigma' = 2 sigma / s``), and the samples are mapped back with
:func:`invdiff.intensity.from_prior_range` (``m = (x + 1) s / 2``; std: ``s / 2`` times the
prior-range std). One seeded ``torch.Generator`` is consumed in slice order, so a run is
reproducible for a given batch size (bit-identical on CPU).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from invdiff.config import ConfigError, SolveConfig
from invdiff.intensity import from_prior_range, measurement_to_prior_range
from invdiff.io.geometry import from_slices
from invdiff.pipeline.orientation import oriented_prior
from invdiff.pipeline.problem import SliceProblem, squared_norm
from invdiff.priors.base import Prior
from invdiff.solvers.phase import solve_with_phase

#: Keyword arguments the pipeline passes itself; ``[options]`` may not set them.
_SHARED = {"operator", "y", "prior", "steps", "n_samples", "generator", "noise_sigma", "lam",
           "callback", "progress"}


class SolveInterrupted(KeyboardInterrupt):
    """Ctrl-C during a solve; records how far it got."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__(f"interrupted after {done} of {total} slices")
        self.done = done
        self.total = total


@dataclass
class SolveOutput:
    """The reconstruction in the input's intensity units and the output geometry.

    Attributes:
        mean: ``output_shape`` mean of the samples.
        std: pixelwise standard deviation over samples (``None`` for one sample).
        samples: ``(K, *output_shape)`` every sample (``None`` unless asked for).
        residual: ``|A mean - y| / |y|`` over all slices, input units (with ``phase``, of the
            mean magnitude times the estimated phase).
        batches: per-batch solver info (slices, NFE, wall time, mean sample residual).
    """

    mean: np.ndarray
    std: np.ndarray | None
    samples: np.ndarray | None
    residual: float
    batches: list[dict[str, Any]] = field(default_factory=list)


def for_solver(solver: Callable[..., Any], config: SolveConfig) -> SolveConfig:
    """``config`` as ``solver`` runs it, so that the manifest records what ran: one sample for a
    deterministic solver (one that takes no ``n_samples``, e.g. the baselines), so no all-zero std
    map is written for it; the default lambda, with a warning, for a solver that takes none."""
    params = inspect.signature(solver).parameters
    if config.samples > 1 and "n_samples" not in params:
        config = dataclasses.replace(config, samples=1)
    default_lam = SolveConfig.lam
    # a solver takes lambda as ``lam`` or through a ``**kwargs`` it reads; the built-ins that
    # ignore it swallow extra keywords as ``**_``
    passes_on = any(p.kind is p.VAR_KEYWORD and name != "_" for name, p in params.items())
    if config.lam != default_lam and "lam" not in params and not passes_on:
        import warnings

        warnings.warn(f"solver {config.solver} has no lambda: lambda {config.lam} is not used",
                      UserWarning, stacklevel=2)
        config = dataclasses.replace(config, lam=default_lam)
    return config


def check_solver_options(solver: Callable[..., Any], name: str, options: dict[str, Any]) -> None:
    """Refuse ``[options]`` keys the solver does not name as keyword parameters."""
    params = inspect.signature(solver).parameters
    accepted = sorted(
        p for p, v in params.items()
        if v.kind in (v.KEYWORD_ONLY, v.POSITIONAL_OR_KEYWORD) and p not in _SHARED
    )
    for key in options:
        if key in _SHARED:
            raise ConfigError(f"options.{key} is set by the top-level configuration, not [options]")
        if key not in accepted:
            raise ConfigError(
                f"solver {name} has no option {key!r}; its options: {', '.join(accepted) or 'none'}"
            )
        _check_option_type(name, key, options[key], params[key].default)


def _check_option_type(name: str, key: str, value: Any, default: Any) -> None:
    """Refuse a value whose type cannot be the parameter's (judged by its default's type).

    Without this check ``--option eta=abc`` reaches the solver and fails there without naming the
    option ("could not convert string to float: 'abc'"). Parameters whose default is ``None`` or
    of another type are not checked here.
    """
    kinds: dict[type, tuple[type, ...]] = {
        bool: (bool,), int: (int,), float: (int, float), str: (str,)
    }
    expected = kinds.get(type(default))
    if expected is None:
        return
    if isinstance(value, bool) and bool not in expected or not isinstance(value, expected):
        raise ConfigError(
            f"solver {name}: option {key} must be {type(default).__name__} (default "
            f"{default!r}), got {type(value).__name__} {value!r}"
        )


def solve_problem(
    problem: SliceProblem,
    prior: Prior,
    solver: Callable[..., Any],
    config: SolveConfig,
    progress: Callable[[float, int], None] | None = None,
) -> SolveOutput:
    """Reconstruct every slice of ``problem``.

    Args:
        problem: the measurements (:func:`invdiff.pipeline.problem.load_problem`).
        prior: the prior, loaded on ``config.device``.
        solver: a function with the shared solver signature.
        config: steps, samples, lambda, seed, batch, solver options.
        progress: called with ``(slices done, total)``: after each batch and, for solvers that
            take a ``callback``, after each step with the fraction of the batch done (a float),
            so a progress bar moves and estimates its ETA during a long batch.

    Raises:
        SolveInterrupted: on Ctrl-C, with the number of slices finished.
    """
    config = for_solver(solver, config)
    device = torch.device(config.device)
    op = problem.build_operator()
    complex_y = op.makes_complex()
    if config.phase and not complex_y:
        raise ConfigError(f"phase = true needs a k-space operator; {problem.operator} is real")
    the_prior = oriented_prior(prior, problem.orientation)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    total = problem.y.shape[0]
    k, (h, w) = config.samples, problem.image_shape
    samples = np.empty((k, total, h, w), dtype=np.float32)
    num2 = den2 = 0.0
    batches: list[dict[str, Any]] = []
    done = 0
    step_callback = "callback" in inspect.signature(solver).parameters
    if progress is not None:
        progress(0, total)
    try:
        for start in range(0, total, config.batch):
            stop = min(start + config.batch, total)
            y = torch.from_numpy(problem.y[start:stop]).to(device)
            y = (y if complex_y else y.real).unsqueeze(1)  # (b, 1, *oshape)
            kwargs = dict(steps=config.steps, n_samples=k, generator=generator,
                          noise_sigma=2.0 * problem.noise_sigma / problem.scale, lam=config.lam,
                          **config.options)
            if progress is not None and step_callback:
                kwargs["callback"] = _StepProgress(progress, start, stop, total, config.steps)
            if config.phase:  # magnitude solve of a complex image, phase put back for the fit
                phased = solve_with_phase(solver, op, y, the_prior, scale=problem.scale, **kwargs)
                result, x = phased.result, phased.magnitude.detach()
                fit = x.mean(dim=0) * phased.phase
            else:
                y_prior = measurement_to_prior_range(y, problem.scale, op, problem.image_shape)
                result = solver(op, y_prior, the_prior, **kwargs)
                x = from_prior_range(result.samples.detach(), problem.scale)  # (K, b, 1, H, W)
                fit = x.mean(dim=0)
            samples[:, start:stop] = x[:, :, 0].float().cpu().numpy()
            r = op(fit.to(y.device)) - y
            num2 += squared_norm(r)
            den2 += squared_norm(y)
            batches.append(_batch_info(start, stop, result.info))
            done = stop
            if progress is not None:
                progress(done, total)
    except KeyboardInterrupt:
        raise SolveInterrupted(done, total) from None
    return SolveOutput(
        mean=from_slices(samples.mean(axis=0), problem.ndim, problem.axis),
        std=from_slices(samples.std(axis=0, ddof=1), problem.ndim, problem.axis) if k > 1 else None,
        samples=from_slices(samples, problem.ndim, problem.axis) if config.save_samples else None,
        residual=float(np.sqrt(num2 / den2)) if den2 > 0 else float("nan"),
        batches=batches,
    )


class _StepProgress:
    """A solver ``callback`` reporting ``start + (stop - start) * (i + 1) / steps`` slices done."""

    def __init__(self, progress: Callable[[float, int], None], start: int, stop: int,
                 total: int, steps: int) -> None:
        self.progress, self.start, self.stop, self.total = progress, start, stop, total
        self.steps = steps
        self.done = float(start)

    def __call__(self, info: dict[str, Any]) -> None:
        fraction = min((int(info["i"]) + 1) / self.steps, 1.0)
        done = self.start + (self.stop - self.start) * fraction
        if done > self.done:  # never backwards (e.g. a solver that loops over samples)
            self.done = done
            self.progress(done, self.total)


def _batch_info(start: int, stop: int, info: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"slices": [start, stop]}
    for key in ("nfe", "wall_time", "steps"):
        if key in info:
            out[key] = info[key]
    if isinstance(info.get("residual"), torch.Tensor):
        r = info["residual"].float()
        r = r[torch.isfinite(r)]  # NaN marks slices with y = 0: no relative residual there
        out["sample_residual"] = float(r.mean()) if r.numel() else None
    return out
