"""Quality versus speed of every solver: time per 128x128 slice, NFE and PSNR, in one table.

    .venv/bin/python benchmarks/solvers.py [--prior default|PATH|gaussian] [--spec kcrop:32]
        [--steps 10,25,50,100,250,1000] [--solvers kspace-mix,ddnm,diffpir:zeta=1,...] [--slices 4]
        [--n-samples 1] [--device cpu|cuda] [--threads 2] [--seed 0] [--json out.json]

Measurements are simulated from the held-out validation slices of ``invdiff/data/brain128.npz``
(already in the prior's range [-1, 1]): ``y = A x``, noiseless. PSNR (data range 2, whole image)
compares the mean over ``--n-samples`` samples with the reference slice ``x``; ``dPSNR`` is the
difference to the same solver at its largest step count, so the goal "50 NFE within 0.3 dB of
1000 steps" reads directly off the table. Time per slice is the solver's wall time divided by the
number of slices in the batch (all slices and samples run as one batch).

A solver may carry options, ``NAME:KEY=VALUE[:KEY=VALUE...]`` (``invdiff solve --option``'s
pairs), e.g. ``diffpir:zeta=1``; its rows are labelled with the whole entry.

``--prior gaussian`` fits the analytic Fourier-diagonal Gaussian prior to the training slices (a
quick run that needs no trained weights); the default is the shipped default prior. The full grid
with the default VDM prior takes hours on CPU: start with ``--steps 10,50 --slices 2``.
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from invdiff.allocator import keep_freed_memory
from invdiff.config import parse_option_pairs
from invdiff.operators import from_spec
from invdiff.pipeline.solve import check_solver_options
from invdiff.priors.gaussian import GaussianPrior
from invdiff.solvers.problem import SolverInputError
from invdiff.solvers.registry import get_solver, list_solvers

DATA = Path(__file__).resolve().parents[1] / "invdiff" / "data" / "brain128.npz"
DIFFUSION = ("kspace-mix", "ddnm", "dps", "diffpir")


def psnr(x: torch.Tensor, ref: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Per-slice PSNR in dB over the last three axes."""
    mse = (x - ref).pow(2).mean(dim=(-3, -2, -1))
    return 10 * torch.log10(data_range**2 / mse.clamp_min(1e-20))


def solver_entry(entry: str) -> tuple[str, dict]:
    """``NAME:KEY=VALUE:...`` as (solver name, checked options)."""
    name, *pairs = entry.split(":")
    options = parse_option_pairs(pairs, f"solver entry {entry!r}")
    check_solver_options(get_solver(name), name, options)
    return name, options


def load_prior(name: str, device: str):
    if name == "gaussian":
        train = torch.from_numpy(np.load(DATA)["train"].astype(np.float32))[:, None]
        return GaussianPrior.fit(train, basis="fourier")
    from invdiff.priors.registry import resolve_prior

    return resolve_prior(name, device=device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prior", default="default")
    ap.add_argument("--spec", default="kcrop:32")
    ap.add_argument("--steps", default="10,25,50,100,250,1000")
    ap.add_argument("--solvers", default=",".join(list_solvers()))
    ap.add_argument("--slices", type=int, default=4)
    ap.add_argument("--n-samples", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    try:
        entries = [(e, *solver_entry(e)) for e in args.solvers.split(",")]
    except (KeyError, ValueError) as exc:  # ConfigError is a ValueError
        ap.error(f"--solvers: {exc}")
    keep_freed_memory()  # as the invdiff command does (invdiff.allocator)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", RuntimeWarning)

    prior = load_prior(args.prior, args.device)
    dtype = getattr(prior, "dtype", torch.float32)
    val = np.load(DATA)["val"].astype(np.float32)
    pick = np.linspace(0, len(val) - 1, args.slices).round().astype(int)
    x = torch.from_numpy(val[pick])[:, None].to(device=args.device, dtype=dtype)
    op = from_spec(args.spec, tuple(x.shape[-2:]))
    y = op(x)
    steps_list = [int(s) for s in args.steps.split(",")]

    try:
        rows = _measure(args, entries, prior, op, x, y, steps_list)
    except SolverInputError as exc:  # e.g. an option value out of range
        ap.error(f"--solvers: {exc}")

    best = {}
    for r in rows:
        if r["steps"] >= best.get(r["solver"], {"steps": -1})["steps"]:
            best[r["solver"]] = r
    table = Table(
        title=f"{args.spec}, prior {args.prior}, {x.shape[0]} slices, "
        f"{args.n_samples} sample(s), {args.device}, {args.threads} threads"
    )
    for col in ("solver", "steps", "NFE", "s / slice", "PSNR dB", "dPSNR", "|Ax-y|/|y|"):
        width = max(len(label) for label, *_ in entries) if col == "solver" else None
        table.add_column(col, justify="right", min_width=width)
    for r in rows:
        d = r["psnr"] - best[r["solver"]]["psnr"]
        table.add_row(
            r["solver"],
            str(r["steps"]),
            str(r["nfe"]),
            f"{r['s_per_slice']:.3f}",
            f"{r['psnr']:.2f} +- {r['psnr_std']:.2f}",
            "" if math.isclose(d, 0.0) else f"{d:+.2f}",
            f"{r['residual']:.2e}",
        )
    Console().print(table)
    if args.json:
        args.json.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=1)
        )


def _measure(args: argparse.Namespace, entries: list, prior, op, x: torch.Tensor, y: torch.Tensor,
             steps_list: list[int]) -> list[dict]:
    """One row per solver entry and step count."""
    if args.device.startswith("cuda"):  # CUDA context and kernel loading: not in the timings
        for _, name, options in entries:
            get_solver(name)(op, y, prior, steps=2, n_samples=args.n_samples,
                             generator=torch.Generator(device=args.device).manual_seed(0),
                             **options)

    rows = []
    for label, name, options in entries:
        solve = get_solver(name)
        grid = steps_list if name in DIFFUSION else [0]
        for steps in grid:
            gen = torch.Generator(device=args.device).manual_seed(args.seed)
            res = solve(op, y, prior, steps=max(steps, 1), n_samples=args.n_samples, generator=gen,
                        **options)
            p = psnr(res.mean.to(torch.float64), x.to(torch.float64))
            rows.append(
                {
                    "solver": label,
                    "steps": steps,
                    "nfe": res.info["nfe"],
                    "s_per_slice": res.info["wall_time"] / x.shape[0],
                    "psnr": float(p.mean()),
                    "psnr_std": float(p.std()) if len(p) > 1 else 0.0,
                    "residual": float(res.info["residual"].mean()),
                }
            )
            Console().log(rows[-1])
    return rows


if __name__ == "__main__":
    main()
