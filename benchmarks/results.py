#!/usr/bin/env python3
"""Quality and speed of every solver on the held-out validation subject (docs/results.md).

For kcrop:32 and kcrop:64 (4x and 2x) on the central axial slices of the validation slab that
ships in ``invdiff/data`` (never used in training): zero-fill, bilinear, bicubic, cs-wavelet,
kspace-mix (one sample, the mean of ``--samples`` and, with ``--more-samples K``, the mean of
K: a closer estimate of the posterior mean), ddnm, dps and diffpir, all through
``invdiff.pipeline`` exactly as ``invdiff solve`` runs them. Prints a rich table, writes it as
markdown and CSV, and writes the figures.

    python benchmarks/results.py --prior default --steps 50 --out docs/results

``--posterior diffpir`` draws the sample and mean rows with another solver instead of kspace-mix
(then run alone, e.g. ``--methods zero-fill``), ``--option zeta=1`` sets its options.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from invdiff.allocator import keep_freed_memory
from invdiff.config import SolveConfig, parse_option_pairs
from invdiff.demo import (
    MethodRun,
    posterior_runs,
    run_method,
    simulated_problem,
    validation_volume,
)
from invdiff.figures import comparison_figure, uncertainty_figure
from invdiff.io import to_slices
from invdiff.pipeline.solve import check_solver_options
from invdiff.priors.registry import resolve_prior
from invdiff.solvers.problem import SolverInputError
from invdiff.solvers.registry import get_solver

BASELINES = ("zero-fill", "bilinear", "bicubic", "cs-wavelet")
DIFFUSION = ("ddnm", "dps", "diffpir")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prior", default="default")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--posterior", default="kspace-mix", choices=("kspace-mix", *DIFFUSION),
                    help="the solver whose one-sample and mean-of-samples rows are drawn")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="an option of the --posterior solver (repeatable), as invdiff solve's")
    ap.add_argument("--more-samples", type=int, default=0,
                    help="also report the mean of this many samples (drawn once, the first "
                         "--samples of them are the mean-of---samples row)")
    ap.add_argument("--slices", type=int, nargs=2, default=(0, 8), help="slab slices [start, stop)")
    ap.add_argument("--reference", type=Path, default=None,
                    help="another reference volume on the prior's grid (axial slices along axis "
                         "2), e.g. from benchmarks/reference_slabs.py; default: the shipped slab")
    ap.add_argument("--factors", type=int, nargs="+", default=(32, 64))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default=",".join((*BASELINES, *DIFFUSION)),
                    help="baselines and other solvers to run besides --posterior (always run), "
                         "comma-separated; e.g. zero-fill for a quick kspace-mix check")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", type=Path, default=Path("docs/results"))
    args = ap.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - {*BASELINES, *DIFFUSION})
    if unknown:
        ap.error(f"unknown --methods {unknown}; choose from {', '.join((*BASELINES, *DIFFUSION))}")
    try:
        options = parse_option_pairs(args.option)
        check_solver_options(get_solver(args.posterior), args.posterior, options)
    except ValueError as exc:
        ap.error(str(exc))
    label = args.posterior + "".join(f":{key}={value}" for key, value in options.items())
    keep_freed_memory()  # as the invdiff command does (invdiff.allocator)

    args.out.mkdir(parents=True, exist_ok=True)
    prior = resolve_prior(args.prior, args.device)
    if args.device.startswith("cuda"):  # CUDA context and kernel loading: not in the timings
        slices = args.slices[1] - args.slices[0]
        for batch in {slices, slices * max(args.samples, args.more_samples)}:
            x = torch.zeros(batch, *prior.image_shape, device=args.device)
            with torch.no_grad():
                prior.eps(x, torch.full((batch,), 0.5, device=args.device))
        torch.cuda.synchronize(args.device)
    try:
        image = validation_volume(tuple(args.slices), args.reference)
    except (OSError, ValueError) as exc:
        ap.error(f"--reference/--slices: {exc}")
    reference = to_slices(image.data.astype("float32"), 2)
    base = SolveConfig(prior=args.prior, steps=args.steps, seed=args.seed, device=args.device,
                       batch=reference.shape[0], samples=1)
    try:
        rows = _run(args, methods, options, label, prior, image, reference, base)
    except SolverInputError as exc:  # e.g. an option value out of range
        ap.error(str(exc))
    _report(rows, args)


def _run(args: argparse.Namespace, methods: list[str], options: dict, label: str, prior: Any,
         image: Any, reference: Any, base: SolveConfig) -> list[dict]:
    """The rows of every factor; writes the figures."""
    rows = []
    for n in args.factors:
        problem = simulated_problem(image, n, args.out, base, prior)
        runs: list[MethodRun] = []
        for name in (m for m in BASELINES if m in methods):
            runs.append(run_method(problem, prior, name, base, n, name))
        drawn = max(args.samples, args.more_samples)
        config = dataclasses.replace(base, solver=args.posterior, samples=drawn, options=options)
        one, post = (dataclasses.replace(r, method=r.method.replace(args.posterior, label, 1))
                     for r in posterior_runs(problem, prior, config, n))
        if drawn > args.samples:
            more, post = post, first_samples(post, args.samples)
            runs += [one, post, more]
        else:
            runs += [one, post]
        for name in (m for m in DIFFUSION if m in methods and m != label):
            t0 = time.perf_counter()
            runs.append(run_method(problem, prior, name, dataclasses.replace(base, solver=name),
                                   n, name))
            print(f"{name} at kcrop:{n}: {time.perf_counter() - t0:.1f} s", flush=True)
        rows += [r.row(reference) for r in runs]
        shown = {r.method: r.mean[::2] for r in runs if r.method in
                 ("zero-fill", "bicubic", "cs-wavelet", one.method, post.method)}
        comparison_figure(shown, reference[::2], args.out / f"comparison_{n}.png",
                          title=f"kcrop:{n} -> 128, validation subject, {args.steps} steps")
        uncertainty_figure(post.mean[::2], post.std[::2], reference[::2],
                           args.out / f"uncertainty_{n}.png", samples=list(post.samples[:2, ::2]),
                           title=f"{label}, {args.samples} samples, kcrop:{n}")
    return rows


def first_samples(run: MethodRun, k: int) -> MethodRun:
    """The row of the first ``k`` samples of a posterior run (time per slice scaled to k)."""
    samples = run.samples[:k]
    return dataclasses.replace(
        run, method=run.method.replace(f"mean of {len(run.samples)}", f"mean of {k}"),
        mean=samples.mean(0), std=samples.std(0, ddof=1) if k > 1 else None, samples=samples,
        seconds_per_slice=run.seconds_per_slice * k / len(run.samples))


def _report(rows: list[dict], args: argparse.Namespace) -> None:
    table = Table(title=f"validation subject, {args.steps} steps, prior {args.prior}")
    for col in rows[0]:
        table.add_column(col)
    for r in rows:
        table.add_row(*(str(v) for v in r.values()))
    Console().print(table)
    with open(args.out / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = ["| factor | method | PSNR [dB] | SSIM | NMSE | s/slice | NFE |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['factor']} | {r['method']} | {r['psnr']:.2f} | {r['ssim']:.4f} | "
              f"{r['nmse']:.4f} | {r['s_per_slice']:.2f} | {r['nfe']} |" for r in rows]
    (args.out / "table.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
