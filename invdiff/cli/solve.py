"""``invdiff solve``: reconstruct a measurement file or a low-resolution image/volume."""

from __future__ import annotations

import dataclasses
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from invdiff.cli.common import EXIT_INTERRUPTED, Debug, console, fail, note, user_errors
from invdiff.config import load_config, parse_config, parse_option_pairs, resolve_config
from invdiff.manifest import environment_changes, read_manifest

if TYPE_CHECKING:  # the library is imported when a command runs, so --help stays fast
    from invdiff.pipeline.run import SolveRequest

EPILOG = """\
Example: invdiff solve meas.npz --prior vdm.ckpt --steps 50 --samples 4 --out recon.nii.gz

Example: invdiff solve lowres.nii.gz --config configs/fast-50.toml --out recon.nii.gz

Example (repeat a run): invdiff solve --manifest recon.nii.gz.manifest.json --out again.nii.gz
"""


def solve(
    input: Annotated[
        Path | None,
        typer.Argument(help="Measurement .npz, or low-resolution NIfTI/PNG/.npy (image of the "
                       "central k-space). Optional with --manifest."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output .nii.gz/.nii/.npy (or .png for 2D).")
    ] = None,
    operator: Annotated[
        str | None, typer.Option(help="Operator spec; image input default kcrop:<h>x<w>.")
    ] = None,
    prior: Annotated[
        str | None, typer.Option(help="'default' (default), a checkpoint file, or a plugin name.")
    ] = None,
    solver: Annotated[
        str | None, typer.Option(help="Solver name (invdiff solvers list); default kspace-mix.")
    ] = None,
    lam: Annotated[
        float | None, typer.Option("--lambda", help="Data-consistency weight in (0, 1]; default 1.")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Sampling steps; default 50.")] = None,
    samples: Annotated[
        int | None,
        typer.Option(help="Posterior samples per slice; default 4 (the output is their mean, "
                          "their std a map); 1 is 4x faster."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed; default 0.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu (default), cuda or cuda:N.")] = None,
    batch: Annotated[int | None, typer.Option(help="Slices per solver call; default 8.")] = None,
    axis: Annotated[int | None, typer.Option(help="Slice axis of 3D volumes (default 2).")] = None,
    frame: Annotated[
        int | None, typer.Option(help="Volume index of 4D input (measurement input: of a 4D "
                                      "--reference).")
    ] = None,
    noise_sigma: Annotated[
        float | None, typer.Option(help="Measurement noise RMS (input units).")
    ] = None,
    save_samples: Annotated[
        bool | None, typer.Option("--save-samples", help="Also write every sample.")
    ] = None,
    phase: Annotated[
        bool | None,
        typer.Option("--phase/--no-phase", help="Complex-image k-space: estimate, remove and "
                     "restore a smooth phase; writes the magnitude."),
    ] = None,
    reorient: Annotated[
        bool | None,
        typer.Option("--reorient/--no-reorient", help="Show the prior slices in its training "
                     "orientation (RAS, superior/anterior up; default) or in file voxel order."),
    ] = None,
    option: Annotated[
        list[str] | None, typer.Option(help="Solver option KEY=VALUE (repeatable), e.g. eta=0.")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="TOML configuration file.")] = None,
    manifest: Annotated[
        Path | None, typer.Option(help="Repeat the run recorded in this manifest.")
    ] = None,
    reference: Annotated[
        Path | None, typer.Option(help="High-resolution reference: metrics in the manifest.")
    ] = None,
    ignore_geometry: Annotated[
        bool,
        typer.Option("--ignore-geometry", help="Compute the metrics even when the reference's "
                     "NIfTI affine differs from the output's (refused by default)."),
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    debug: Debug = False,
) -> None:
    """Reconstruct slice by slice with a diffusion prior; writes OUT and OUT.manifest.json."""
    from invdiff.pipeline.run import SolveRequest

    flags = {
        "operator": operator, "prior": prior, "solver": solver, "lam": lam, "steps": steps,
        "samples": samples, "seed": seed, "device": device, "batch": batch, "axis": axis,
        "frame": frame, "noise_sigma": noise_sigma, "save_samples": save_samples,
        "phase": phase, "reorient": reorient,
    }
    with user_errors(debug):
        if option:
            flags["options"] = parse_option_pairs(option)
        layers: list[dict[str, Any]] = []
        expected: dict[str, str | None] = {}
        expected_files: dict[str, str] | None = None
        if config is not None:
            layers.append(load_config(config))
        if manifest is not None:
            record = read_manifest(manifest)
            changes = environment_changes(record)
            if changes:  # the run is repeated, but its last bits may differ: say why
                note(f"note: {manifest} was written with other software ({'; '.join(changes)}); "
                     "the re-run may not be bit-identical")
            layers.insert(0, parse_config(record["config"], f"{manifest} (config)"))
            if input is not None and record["input"].get("kind") == "measurement":
                # with a measurement input the recorded frame picked the recorded reference's
                # volume; another input does not inherit that reference
                layers[0].pop("frame", None)
            # files taken from the manifest must be the recorded ones; an INPUT or --prior given
            # explicitly (flag or --config) overrides the record like any other setting
            if input is None:
                input = Path(record["input"]["path"])
                expected["input"] = record["input"].get("sha256")
                if isinstance(record["input"].get("operator_files"), dict):
                    expected_files = record["input"]["operator_files"]
                if reference is None and record.get("reference"):  # metrics again, same file
                    reference = Path(record["reference"]["path"])
                    expected["reference"] = record["reference"].get("sha256")
                    ignore_geometry |= bool(record["reference"].get("ignore_geometry"))
            if prior is None and not any("prior" in layer for layer in layers[1:]):
                expected["prior"] = (record.get("prior") or {}).get("sha256")
            out = out or Path(record["outputs"]["mean"])
        if input is None:
            raise fail("missing INPUT (or --manifest)")
        if out is None:
            raise fail("missing --out")
        request = SolveRequest(
            input=input, out=out, config=resolve_config(*layers, flags), reference=reference,
            overwrite=overwrite, config_file=config, expected_sha256=expected,
            ignore_geometry=ignore_geometry, expected_operator_files=expected_files,
        )
        _run(request, quiet)


class _SliceBar:
    """A rich progress bar over slices with ETA, shown from the first progress report on."""

    def __init__(self, name: str, quiet: bool) -> None:
        self.name = name
        self.quiet = quiet
        self.bar: Progress | None = None
        self.task: Any = None
        self.announced = False

    def __call__(self, done: float, total: int) -> None:
        if not self.announced and not console.is_terminal:  # logs get one line, not a live bar
            note(f"solving {self.name}: {total} slices")
        self.announced = True
        if self.quiet:
            return
        if self.bar is None:
            self.bar = Progress(
                TextColumn(f"solving {self.name}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("slices"), TimeElapsedColumn(), TextColumn("ETA"),
                TimeRemainingColumn(), console=console,
            )
            self.bar.start()
            self.task = self.bar.add_task(self.name, total=total)
        self.bar.update(self.task, completed=done, total=total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM (kill) takes the Ctrl-C path, so temporary files are removed on the way out."""
    raise KeyboardInterrupt


def _run(request: SolveRequest, quiet: bool) -> None:
    from invdiff.pipeline.run import run_solve, stale_outputs
    from invdiff.pipeline.solve import SolveInterrupted

    bar = _SliceBar(request.input.name, quiet)
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main else None
    try:
        record = run_solve(request, bar)
    except SolveInterrupted as stop:
        bar.close()
        note(f"interrupted: stopped after {stop.done} of {stop.total} slices of "
             f"{request.input}; no output was written")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except KeyboardInterrupt:
        bar.close()
        note(f"interrupted while working on {request.input}; no output was written")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        bar.close()
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    console.print(
        f"wrote {request.out} (residual |Ax-y|/|y| = {record['residual']:.3g}, "
        f"{record['timings_s']['total']:.1f} s)"
    )
    ran = dataclasses.replace(request.config, samples=record["config"]["samples"])
    for path in stale_outputs(request.out, ran):  # as run: a baseline draws one sample
        note(f"note: {path} is left from an earlier run; this run did not write it")
    metrics = record.get("metrics")
    if metrics:
        for label, key in (("all voxels", "all_voxels"), ("foreground", "foreground")):
            m = metrics[key]
            console.print(f"{label}: PSNR {_number(m['psnr'], '.2f')} dB, SSIM "
                          f"{_number(m['ssim'], '.4f')}, NMSE {_number(m['nmse'], '.3e')}")


def _number(value: Any, spec: str) -> str:
    """A metric as the manifest holds it: a number, or ``"inf"``/``"nan"`` (JSON has neither)."""
    return value if isinstance(value, str) else format(value, spec)
