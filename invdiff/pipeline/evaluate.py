"""File-level evaluation: read a reference, a reconstruction and a mask; compute the metrics."""

from __future__ import annotations

import os
from pathlib import Path

from invdiff.io import read_image
from invdiff.metrics import Metrics, auto_mask, evaluate


def evaluate_files(
    reference: str | os.PathLike,
    recon: str | os.PathLike,
    mask: str | os.PathLike | None = None,
    axis: int = 2,
    frame: int | None = None,
) -> Metrics:
    """PSNR/SSIM/NMSE of the image in ``recon`` against ``reference``.

    Args:
        reference, recon: image files of the same shape (NIfTI, PNG, ``.npy``); the
            reconstruction may be all zero (a failed method still gets its numbers).
        mask: ``None`` (all voxels), ``"auto"`` (thresholded reference, see
            :func:`invdiff.metrics.auto_mask`) or a mask image file (non-zero = inside).
        axis: slice axis of 3D volumes for the per-slice table.
        frame: volume index for 4D files (a 2D/3D file among them is read as it is).
    """
    for role, path in (("reference", reference), ("reconstruction", recon), ("mask", mask)):
        if path is not None and str(path) != "auto" and not Path(path).is_file():
            raise FileNotFoundError(f"{role} {path} does not exist")
    ref = read_image(reference, frame=frame, frame_if_4d=True).data
    rec = read_image(recon, frame=frame, allow_zero=True, frame_if_4d=True).data
    if str(mask) == "auto":
        m = auto_mask(ref)
    elif mask is not None:
        m = read_image(mask, frame=frame, allow_zero=True, frame_if_4d=True).data != 0
    else:
        m = None
    return evaluate(ref, rec, m, axis=axis)
