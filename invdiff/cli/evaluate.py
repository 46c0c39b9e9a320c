"""``invdiff evaluate``: PSNR, SSIM and NMSE of a reconstruction against a reference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from invdiff.cli.common import Debug, stdout, user_errors

if TYPE_CHECKING:  # the library is imported when a command runs, so --help stays fast
    from invdiff.metrics import Metrics

EPILOG = """\
Example: invdiff evaluate --reference hr.nii.gz --recon recon.nii.gz --mask auto --json
"""


def evaluate(
    reference: Annotated[Path, typer.Option(help="High-resolution reference image or volume.")],
    recon: Annotated[Path, typer.Option(help="Reconstruction of the same shape.")],
    mask: Annotated[
        str | None,
        typer.Option(help="'auto' (thresholded reference) or a mask file; default all voxels."),
    ] = None,
    axis: Annotated[int, typer.Option(help="Slice axis of 3D volumes.")] = 2,
    frame: Annotated[int | None, typer.Option(help="Volume index of 4D files.")] = None,
    ignore_geometry: Annotated[
        bool,
        typer.Option("--ignore-geometry", help="Compare the voxels even when the NIfTI affines "
                     "put them in different places (refused by default)."),
    ] = False,
    per_slice: Annotated[bool, typer.Option(help="Also print the per-slice table.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    debug: Debug = False,
) -> None:
    """PSNR, SSIM and NMSE (scikit-image), overall and per slice.

    NIfTI files must lie on the same grid (same affine up to float32 rounding) unless
    --ignore-geometry; PNG and .npy files carry no geometry and are compared by shape.
    """
    from invdiff.pipeline.evaluate import evaluate_files

    with user_errors(debug):
        metrics = evaluate_files(reference, recon, mask, axis=axis, frame=frame,
                                 ignore_geometry=ignore_geometry)
    if as_json:
        typer.echo(json.dumps(metrics.to_dict(), indent=2))
    else:
        stdout.print(metrics_table(metrics, per_slice))


def metrics_table(metrics: Metrics, per_slice: bool = False) -> Table:
    """A rich table: the overall row, then one row per slice when asked."""
    table = Table(title=f"metrics over {metrics.n_voxels} voxels")
    for name in ("slice", "PSNR [dB]", "SSIM", "NMSE"):
        table.add_column(escape(name), justify="right")  # "[dB]" is not rich markup
    table.add_row("all", f"{metrics.psnr:.2f}", f"{metrics.ssim:.4f}", f"{metrics.nmse:.3e}")
    if per_slice:
        for s in metrics.slices:
            cells = ("-", "-", "-") if s.psnr is None else (
                f"{s.psnr:.2f}", f"{s.ssim:.4f}", f"{s.nmse:.3e}")
            table.add_row(str(s.index), *cells)
    return table
