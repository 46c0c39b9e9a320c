"""File-level evaluation: read a reference, a reconstruction and a mask; compute the metrics.

Metrics compare voxels by index, so they mean something only when the files share a grid. Files
that carry a voxel-to-world affine (NIfTI) are checked for that (:func:`check_same_grid`); PNG
and ``.npy`` files carry none and are compared by shape alone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from invdiff.io import read_image
from invdiff.io.geometry import voxel_sizes
from invdiff.metrics import Metrics, auto_mask, evaluate

#: Two grids are the same when no voxel centre moves by more than this fraction of the smallest
#: voxel size (plus ``COORDINATE_RTOL`` of the largest world coordinate). NIfTI stores the sform
#: as float32, so copies of one grid differ by ~1e-7 relative: far below this. A qform-only file
#: is decoded from a float32 quaternion, which for rotations near 180 degrees can move voxels by
#: a good fraction of a voxel; such a file is refused unless ``ignore_geometry``.
GRID_TOLERANCE = 1e-3
COORDINATE_RTOL = 1e-6
#: millimetres per unit of the NIfTI header's spatial unit (unknown: millimetres, as nibabel)
_MM = {None: 1.0, "mm": 1.0, "meter": 1000.0, "micron": 1e-3}


class GeometryError(ValueError):
    """Two images with affines that put their voxels in different places."""


def check_same_grid(
    first: tuple[np.ndarray | None, str | None, str],
    second: tuple[np.ndarray | None, str | None, str],
    shape: Sequence[int],
) -> None:
    """Refuse two grids of ``shape`` whose voxel centres differ beyond :data:`GRID_TOLERANCE`.

    Args:
        first, second: ``(affine, spatial_unit, description)`` of each image; an affine of
            ``None`` (PNG, ``.npy``) cannot be checked and passes.
        shape: the common array shape (2D or 3D; the affine maps the first three indices).

    Raises:
        GeometryError: one line naming both images, the largest distance between corresponding
            voxel centres (mm) and what differs; it suggests ``--ignore-geometry``.
    """
    (a, unit_a, name_a), (b, unit_b, name_b) = first, second
    if a is None or b is None:
        return
    a = np.asarray(a, dtype=np.float64) * _scale(unit_a)
    b = np.asarray(b, dtype=np.float64) * _scale(unit_b)
    a[3], b[3] = (0, 0, 0, 1), (0, 0, 0, 1)
    dims = [*(int(n) for n in shape[:3]), 1, 1][:3]
    corners = np.array(np.meshgrid(*[(0, n - 1) for n in dims], indexing="ij")).reshape(3, -1)
    corners = np.vstack([corners, np.ones(corners.shape[1])])
    world_a, world_b = (a @ corners)[:3], (b @ corners)[:3]
    distance = float(np.max(np.linalg.norm(world_a - world_b, axis=0)))
    zooms_a, zooms_b = voxel_sizes(a), voxel_sizes(b)
    spread = [i for i in range(3) if dims[i] > 1] or [0]  # a single slice's thickness is moot
    tol = (GRID_TOLERANCE * float(min(zooms_a[spread].min(), zooms_b[spread].min()))
           + COORDINATE_RTOL * float(max(np.abs(world_a).max(), np.abs(world_b).max())))
    if distance <= tol:
        return
    if np.max(np.abs(zooms_a - zooms_b)) > tol:
        what = f"voxel size {_size(zooms_a)} vs {_size(zooms_b)} mm"
    elif distance - np.linalg.norm(a[:3, 3] - b[:3, 3]) > tol:
        what = "different orientation"
    else:
        what = "shifted origin"
    raise GeometryError(
        f"{name_a} and {name_b} are on different grids (voxel centres up to {distance:.3g} mm "
        f"apart: {what}); pass --ignore-geometry to compare the voxels anyway"
    )


def _scale(unit: str | None) -> float:
    return _MM.get(unit, 1.0)


def _size(zooms: np.ndarray) -> str:
    return "x".join(f"{z:.4g}" for z in zooms)


def evaluate_files(
    reference: str | os.PathLike,
    recon: str | os.PathLike,
    mask: str | os.PathLike | None = None,
    axis: int = 2,
    frame: int | None = None,
    ignore_geometry: bool = False,
) -> Metrics:
    """PSNR/SSIM/NMSE of the image in ``recon`` against ``reference``.

    Args:
        reference, recon: image files of the same shape (NIfTI, PNG, ``.npy``); the
            reconstruction may be all zero (a failed method still gets its numbers).
        mask: ``None`` (all voxels), ``"auto"`` (thresholded reference, see
            :func:`invdiff.metrics.auto_mask`) or a mask image file (non-zero = inside).
        axis: slice axis of 3D volumes for the per-slice table.
        frame: volume index for 4D files (a 2D/3D file among them is read as it is).
        ignore_geometry: compare the voxels even when the affines of NIfTI files say that they
            lie in different places (:func:`check_same_grid`).
    """
    for role, path in (("reference", reference), ("reconstruction", recon), ("mask", mask)):
        if path is not None and str(path) != "auto" and not Path(path).is_file():
            raise FileNotFoundError(f"{role} {path} does not exist")
    ref = read_image(reference, frame=frame, frame_if_4d=True)
    rec = read_image(recon, frame=frame, allow_zero=True, frame_if_4d=True)
    target = (ref.affine, ref.spatial_unit, f"reference {reference}")
    if not ignore_geometry and rec.data.shape == ref.data.shape:  # other shapes: evaluate says
        check_same_grid((rec.affine, rec.spatial_unit, f"reconstruction {recon}"), target,
                        ref.data.shape)
    if str(mask) == "auto":
        m = auto_mask(ref.data)
    elif mask is not None:
        mask_image = read_image(mask, frame=frame, allow_zero=True, frame_if_4d=True)
        if not ignore_geometry and mask_image.data.shape == ref.data.shape:
            check_same_grid((mask_image.affine, mask_image.spatial_unit, f"mask {mask}"), target,
                            ref.data.shape)
        m = mask_image.data != 0
    else:
        m = None
    return evaluate(ref.data, rec.data, m, axis=axis)
