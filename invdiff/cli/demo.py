"""``invdiff demo``: the seed's experiment on the shipped validation subject, offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from invdiff.cli.common import Debug, console, stdout, user_errors

EPILOG = """\
Example (50 steps, a few minutes on 2 CPU cores): invdiff demo --out demo-output

Example (the seed's 1000 steps): invdiff demo --out seed-setting --steps 1000
"""


def demo(
    out: Annotated[Path, typer.Option(help="Output folder (figures, metrics.csv, measurements).")],
    prior: Annotated[str, typer.Option(help="'default', a prior file or a plugin name.")] = (
        "default"),
    steps: Annotated[int, typer.Option(help="Sampler steps (the seed used 1000).")] = 50,
    samples: Annotated[int, typer.Option(
        help="Posterior samples for the mean and std map (at least 2).")] = 4,
    lam: Annotated[float, typer.Option("--lambda", help="kspace-mix lambda in (0, 1].")] = 1.0,
    sweep: Annotated[bool, typer.Option(help="Also run the lambda sweep (seed Fig. 4).")] = True,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty output folder.")] = False,
    debug: Debug = False,
) -> None:
    """Simulate 32x32 and 64x64 k-space of held-out slices, reconstruct, write figures and metrics.

    Compares zero-fill, bilinear, bicubic and kspace-mix (one sample and the mean of several)
    on the validation subject that the default prior never saw in training.
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from invdiff.config import validate_device
    from invdiff.demo import DemoConfig, run_demo
    from invdiff.pipeline.run import check_device
    from invdiff.priors.registry import resolve_prior

    with user_errors(debug):
        validate_device(device)
        check_device(device)
        config = DemoConfig(out=out, prior=prior, steps=steps, samples=samples, lam=lam,
                            sweep=DemoConfig.sweep if sweep else (), seed=seed, device=device,
                            overwrite=overwrite)
        the_prior = resolve_prior(prior, device)
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      console=console, transient=False) as bar:
            task = bar.add_task("starting", total=None)
            rows = run_demo(config, the_prior, lambda msg: bar.update(task, description=msg))
            bar.update(task, description="done")
    table = Table(title=f"validation subject, {steps} steps, prior {prior}")
    for col in ("factor", "method", "PSNR [dB]", "SSIM", "NMSE", "s/slice", "NFE"):
        table.add_column(escape(col), justify="left" if col in ("factor", "method") else "right")
    for r in rows:
        table.add_row(r["factor"], r["method"], f"{r['psnr']:.2f}", f"{r['ssim']:.4f}",
                      f"{r['nmse']:.4f}", f"{r['s_per_slice']:.2f}", str(r["nfe"]))
    stdout.print(table)
    stdout.print(f"figures and metrics.csv written to {out}")
