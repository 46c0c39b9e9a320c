"""``invdiff resample``: put a scanner image or volume on a prior's square N x N grid."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from invdiff.cli.common import Debug, console, user_errors

EPILOG = (
    "Example (a 1 mm T1 onto the default prior's grid, then the seed's 4x measurement): "
    "invdiff resample t1.nii.gz --out t1-128.nii.gz && "
    "invdiff simulate t1-128.nii.gz --operator kcrop:32 --out meas.npz\n"
)


def resample(
    source: Annotated[Path, typer.Argument(help="Image or volume: NIfTI/PNG/.npy.")],
    out: Annotated[Path, typer.Option(
        help="Output image (.nii.gz/.nii/.npy; .png for 2D, scaled to 16 bits for viewing).")],
    size: Annotated[int, typer.Option(
        help="Output slices are SIZE x SIZE (the default prior's 128).")] = 128,
    axis: Annotated[int, typer.Option(help="Slice axis of 3D volumes (kept as it is).")] = 2,
    frame: Annotated[int | None, typer.Option(help="Volume index of 4D input.")] = None,
    method: Annotated[str, typer.Option(
        help="fourier (k-space crop/zero-pad: what an N x N acquisition would give), "
             "linear or cubic (anti-aliased interpolation).")] = "fourier",
    slices: Annotated[str | None, typer.Option(
        help="Only slices START:STOP along the slice axis (0-based, STOP excluded), "
             "e.g. 80:88 for a quick trial on a few slices.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
    debug: Debug = False,
) -> None:
    """Pad each slice to a square field of view and resample it to SIZE x SIZE, world
    positions kept (the affine is updated)."""
    from invdiff.pipeline.resample import resample_files

    with user_errors(debug, "use a smaller --size or fewer --slices"):
        r = resample_files(source, out, size=size, axis=axis, frame=frame, method=method,
                           slices=slices, overwrite=overwrite)
    n_slices = 1 if r.axis is None else r.image.data.shape[r.axis]
    unit = "voxels" if r.image.affine is None else r.image.spatial_unit or "(affine units)"
    console.print(f"wrote {out}: {n_slices} slice(s) of {size}x{size} ({method}), padded to "
                  f"{r.padded_shape[0]}x{r.padded_shape[1]} before resampling, pixels "
                  f"{r.pixel_size[0]:.4g} x {r.pixel_size[1]:.4g} {unit}")
