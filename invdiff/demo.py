"""``invdiff demo``: the seed's experiment on the held-out validation subject, offline.

On central axial slices of the validation subject shipped in ``invdiff/data`` (never used for
training), for each crop size N (32 and 64 -> 128): simulate the central NxN of k-space
(:func:`invdiff.pipeline.simulate.simulate`), then reconstruct with the baselines and with
``kspace-mix`` on the prior (several posterior samples), exactly as ``invdiff solve`` does
(:func:`invdiff.pipeline.solve.solve_problem`). Writes to the output folder:

* ``comparison_N.png``: rows = methods with error maps, columns = slices (seed Figs. 2 and 3);
* ``lambda_sweep_N.png``: kspace-mix for lambda from 0 (unguided) to 1, one seed (seed Fig. 4);
* ``uncertainty_N.png``: posterior samples, their mean, its error and the pixelwise std;
* ``metrics.csv``: PSNR/SSIM/NMSE, seconds per slice and NFE for every method;
* ``kcropN/measurement.npz``: the simulated measurement (``invdiff solve`` reads it).
"""

from __future__ import annotations

import csv
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from invdiff.config import SolveConfig
from invdiff.figures import comparison_figure, lambda_sweep_figure, uncertainty_figure
from invdiff.io import Image, read_image, to_slices, write_measurement
from invdiff.metrics import evaluate
from invdiff.pipeline.problem import SliceProblem, load_problem
from invdiff.pipeline.simulate import simulate
from invdiff.pipeline.solve import solve_problem
from invdiff.priors.base import Prior
from invdiff.solvers.registry import get_solver
from invdiff.solvers.result import SolveResult
from invdiff.solvers.unconditional import sample_prior

#: The held-out validation slab (see invdiff/data/ATTRIBUTION.md) and the demo's slices of it.
VALIDATION_SLAB = "validation_slab.nii.gz"
DEMO_SLICES = (2, 6)


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo (defaults fit a few minutes on 2 CPU cores)."""

    out: Path
    prior: str = "default"
    steps: int = 50
    samples: int = 4
    factors: tuple[int, ...] = (32, 64)
    baselines: tuple[str, ...] = ("zero-fill", "bilinear", "bicubic")
    solver: str = "kspace-mix"
    lam: float = 1.0
    sweep: tuple[float, ...] = (0.0, 0.02, 0.1, 0.3, 1.0)
    seed: int = 0
    device: str = "cpu"
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.samples < 2:
            raise ValueError(f"samples must be >= 2 (the demo shows the mean and the std map of "
                             f"several posterior samples), got {self.samples}")
        if not 0.0 < self.lam <= 1.0:
            raise ValueError(f"lambda must be in (0, 1], got {self.lam}")
        bad = [lam for lam in self.sweep if not 0.0 <= lam <= 1.0]
        if bad:
            raise ValueError(f"sweep lambdas must lie in [0, 1] (0 = unguided), got {bad}")


@dataclass
class MethodRun:
    """One method's reconstruction of the demo slices, in the reference's intensity units."""

    method: str
    factor: int
    mean: np.ndarray  # (S, H, W)
    std: np.ndarray | None
    samples: np.ndarray | None  # (K, S, H, W)
    seconds_per_slice: float
    nfe: int

    def row(self, reference: np.ndarray) -> dict[str, Any]:
        m = evaluate(reference, self.mean, axis=0)
        return {"factor": f"{128 // self.factor}x ({self.factor}->128)", "method": self.method,
                "psnr": round(m.psnr, 2), "ssim": round(m.ssim, 4), "nmse": round(m.nmse, 5),
                "s_per_slice": round(self.seconds_per_slice, 2), "nfe": self.nfe}


def validation_volume(slices: tuple[int, int] = DEMO_SLICES, path: Path | None = None) -> Image:
    """Axial slices ``[start, stop)`` of the shipped validation slab (or of the volume at
    ``path``), with their affine."""
    if path is None:
        with resources.as_file(resources.files("invdiff") / "data" / VALIDATION_SLAB) as p:
            image = read_image(p)
    else:
        image = read_image(path)
    start, stop = slices
    if image.data.ndim != 3 or not 0 <= start < stop <= image.data.shape[2]:
        raise ValueError(f"slices {start}:{stop} are not within the axial slices of a 3D "
                         f"volume of shape {image.data.shape}")
    shift = np.eye(4)
    shift[2, 3] = start
    return dataclasses.replace(image, data=image.data[:, :, start:stop],
                               affine=image.affine @ shift)


def run_method(
    problem: SliceProblem, prior: Prior, solver: str | Callable[..., SolveResult],
    config: SolveConfig, factor: int, name: str,
) -> MethodRun:
    """Solve every slice of ``problem`` with ``solver`` (a name or a solver function)."""
    fn = get_solver(solver) if isinstance(solver, str) else solver
    t0 = time.perf_counter()
    out = solve_problem(problem, prior, fn, config)
    seconds = (time.perf_counter() - t0) / problem.y.shape[0]
    nfe = sum(int(b.get("nfe", 0)) for b in out.batches) // max(len(out.batches), 1)
    volume = to_slices(out.mean, 2)
    std = None if out.std is None else to_slices(out.std, 2)
    samples = None if out.samples is None else np.stack([to_slices(s, 2) for s in out.samples])
    return MethodRun(name, factor, volume, std, samples, seconds, nfe)


def posterior_runs(
    problem: SliceProblem, prior: Prior, config: SolveConfig, factor: int
) -> tuple[MethodRun, MethodRun]:
    """``config.samples`` posterior samples: (the first sample alone, their mean and std).

    The first sample's time per slice is the run's divided by the sample count.
    """
    config = dataclasses.replace(config, save_samples=True)
    post = run_method(problem, prior, config.solver, config, factor,
                      f"{config.solver} (mean of {config.samples})")
    one = dataclasses.replace(post, method=f"{config.solver} (1 sample)", mean=post.samples[0],
                              std=None, samples=None,
                              seconds_per_slice=post.seconds_per_slice / config.samples)
    return one, post


def unguided(operator: Any, y: torch.Tensor, prior: Any, *, steps: int = 50, n_samples: int = 1,
             generator: torch.Generator | None = None, **_: Any) -> SolveResult:
    """Lambda = 0 of the sweep: prior samples that ignore ``y`` (seed Fig. 4, first column)."""
    t0 = time.perf_counter()
    x = sample_prior(prior, n_samples * y.shape[0], steps=steps, generator=generator)
    samples = x.reshape(n_samples, y.shape[0], *x.shape[1:])
    return SolveResult.from_samples(samples, {"solver": "unguided", "steps": steps, "nfe": steps,
                                              "wall_time": time.perf_counter() - t0})


def run_demo(
    config: DemoConfig, prior: Prior, progress: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    """Run the demo, write its figures and table to ``config.out``, return the table rows."""
    out = Path(config.out)
    if out.exists() and any(out.iterdir()) and not config.overwrite:
        raise FileExistsError(f"output folder {out} is not empty; pass --overwrite to replace")
    out.mkdir(parents=True, exist_ok=True)
    note = progress or (lambda _msg: None)
    image = validation_volume()
    reference = to_slices(image.data.astype(np.float32), 2)
    base = SolveConfig(prior=config.prior, steps=config.steps, seed=config.seed,
                       device=config.device, batch=reference.shape[0])
    rows: list[dict[str, Any]] = []
    for n in config.factors:
        problem = simulated_problem(image, n, out, base, prior)
        runs = []
        for name in config.baselines:
            note(f"{name} at kcrop:{n}")
            runs.append(run_method(problem, prior, name, base, n, name))
        note(f"{config.solver} at kcrop:{n}, {config.samples} samples x {config.steps} steps")
        cfg = dataclasses.replace(base, solver=config.solver, samples=config.samples,
                                  lam=config.lam)
        one, posterior = posterior_runs(problem, prior, cfg, n)
        runs += [one, posterior]
        rows += [r.row(reference) for r in runs]
        comparison_figure({r.method: r.mean for r in runs}, reference, out / f"comparison_{n}.png",
                          title=f"kcrop:{n} -> 128, validation subject")
        uncertainty_figure(posterior.mean, posterior.std, reference, out / f"uncertainty_{n}.png",
                           samples=list(posterior.samples[:2]),
                           title=f"{config.solver}, {config.samples} posterior samples, kcrop:{n}")
        if config.sweep:
            note(f"lambda sweep at kcrop:{n}")
            sweep = lambda_sweep(problem, prior, base, config, n)
            lambda_sweep_figure(sweep, reference, out / f"lambda_sweep_{n}.png",
                                title=f"{config.solver} lambda sweep, same seed, kcrop:{n}")
    _write_csv(rows, out / "metrics.csv")
    return rows


def lambda_sweep(problem: SliceProblem, prior: Prior, base: SolveConfig, config: DemoConfig,
                 n: int) -> dict[float, np.ndarray]:
    """One sample per lambda with the same seed; no final data-consistency step (as the seed)."""
    sweep = {}
    base = dataclasses.replace(base, samples=1)
    for lam in config.sweep:
        if lam == 0.0:
            run = run_method(problem, prior, unguided, base, n, "unguided")
        else:
            cfg = dataclasses.replace(base, solver=config.solver, lam=lam,
                                      options={"final_dc": False})
            run = run_method(problem, prior, config.solver, cfg, n, f"lambda={lam}")
        sweep[lam] = run.mean
    return sweep


def simulated_problem(
    image: Image, n: int, out: Path, config: SolveConfig, prior: Prior
) -> SliceProblem:
    """Simulate noiseless ``kcrop:n`` k-space of ``image``, write it to ``out``, load it back."""
    spec = f"kcrop:{n}"
    folder = out / f"kcrop{n}"
    folder.mkdir(exist_ok=True)
    path = folder / "measurement.npz"
    write_measurement(path, simulate(image, spec, generator=torch.Generator().manual_seed(0)))
    return load_problem(path, config, tuple(prior.image_shape[-2:]))


def _write_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
