"""``invdiff simulate``: a measurement file from a high-resolution image or volume."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from invdiff.cli.common import Debug, console, note, user_errors

EPILOG = (
    "Example: invdiff simulate hr.nii.gz --operator kcrop:32 --noise-sigma 0.5 --out meas.npz\n\n"
    "Example (also the low-resolution image): invdiff simulate hr.nii.gz --operator kcrop:32 "
    "--out meas.npz --lowres-out lowres.nii.gz\n"
)


def simulate(
    hr_input: Annotated[Path, typer.Argument(help="High-resolution NIfTI/PNG/.npy.")],
    operator: Annotated[str, typer.Option(help="Operator spec, e.g. kcrop:32.")],
    out: Annotated[Path, typer.Option(help="Measurement file to write (.npz).")],
    noise_sigma: Annotated[
        float, typer.Option(help="RMS noise per measured entry, image intensity units.")
    ] = 0.0,
    axis: Annotated[int, typer.Option(help="Slice axis of 3D volumes.")] = 2,
    frame: Annotated[int | None, typer.Option(help="Volume index of 4D input.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the noise draw.")] = 0,
    lowres_out: Annotated[
        Path | None,
        typer.Option(help="Also write the low-resolution magnitude image (kcrop only)."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs.")] = False,
    debug: Debug = False,
) -> None:
    """Simulate k-space (or another operator's) measurements, slice by slice."""
    from invdiff.pipeline.simulate import simulate_files

    with user_errors(debug):
        m = simulate_files(hr_input, operator, out, noise_sigma=noise_sigma, axis=axis,
                           frame=frame, seed=seed, lowres_out=lowres_out, overwrite=overwrite)
    console.print(f"wrote {out}: {m.kspace.shape[0]} slice(s) of {m.operator} on "
                  f"{m.image_shape[0]}x{m.image_shape[1]}, measurement shape "
                  f"{tuple(m.kspace.shape[1:])}, noise sigma {m.noise_sigma:g}"
                  + (f"; and {lowres_out}" if lowres_out is not None else ""))
    size = _default_prior_size()
    if size is not None and tuple(m.image_shape) != (size, size):
        where = (f" --axis {axis}" if m.axis is not None and m.axis != 2 else "") + (
            f" --frame {frame}" if frame is not None else "")
        note(f"note: the default prior models {size}x{size} slices, so `invdiff solve` with it "
             f"refuses slices of {m.image_shape[0]}x{m.image_shape[1]}; put the volume on its "
             f"grid first: invdiff resample {hr_input} --size {size}{where} --out HR.nii.gz")


def _default_prior_size() -> int | None:
    """The default prior's image side, read from its file's metadata (no weights loaded)."""
    from invdiff.priors.checkpoint import read_checkpoint_info
    from invdiff.priors.default import DEFAULT_WEIGHTS

    try:  # the note is optional: an unreadable weights file must not fail a written simulate
        return int(read_checkpoint_info(DEFAULT_WEIGHTS)["config"].image_size)
    except Exception:  # noqa: BLE001
        return None
