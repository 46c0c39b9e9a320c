"""2D training slices from NIfTI volumes and PNG images.

For each volume (``.nii``/``.nii.gz``; 4D volumes use their first frame; a 2D image is one
slice along axis 2, whatever ``DataConfig.axes`` says; complex data or NaN/Inf voxels are an
error, as for ``invdiff solve``):

1. magnitude ``m = |v|`` and its robust scale ``s`` over the whole volume
   (:func:`invdiff.intensity.robust_scale`, the 99.5th percentile);
2. slices along each of ``DataConfig.axes`` (axes of the file's voxel array), turned to display
   orientation when ``DataConfig.reorient`` (default): the slice ``flipud(C.T)`` of the RAS slice
   ``C``, superior/anterior at the top, as the shipped data (``scripts/build_dataset.py``) and as
   ``invdiff solve`` presents slices to a prior by default
   (:func:`invdiff.pipeline.orientation.display_orientation`); a slice is kept if at least
   ``min_foreground`` of its pixels exceed ``0.1 s`` (near-empty slices outside the head are
   skipped);
3. ``x = clip(2 m / s - 1, -1, 1)`` (:func:`invdiff.intensity.to_prior_range`);
4. resized (bilinear, antialiased) so that the longer physical side (voxel sizes from the
   header) spans ``image_size`` pixels with square pixels, then padded with background (-1)
   to ``image_size x image_size``, centred.

A PNG image (8 or 16 bit grey; colour refused, RGB with equal channels read as grey) is one
slice with its own robust scale. A folder contributes its ``*.png``, ``*.nii`` and ``*.nii.gz``
files, sorted by name.

Held-out data: when no ``val_paths`` are given, ``val_fraction`` of the files (at least one when
there are two or more) are held out whole, chosen by a fixed seeded permutation of the sorted
file list, so validation never sees slices of a training volume.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from invdiff.intensity import robust_scale, to_prior_range
from invdiff.pipeline.orientation import display_orientation
from invdiff.training.config import DataConfig
from invdiff.training.data import ImageSets

NIFTI_SUFFIXES = (".nii", ".nii.gz")
FOREGROUND_LEVEL = 0.1
SPLIT_SEED = 0


def expand_inputs(paths: list[Path]) -> list[Path]:
    """Files named directly, plus the PNG/NIfTI files of named folders (sorted)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and _kind(f) is not None)
            if not found:
                raise ValueError(f"folder {p} has no .png, .nii or .nii.gz files")
            out.extend(found)
        elif not p.exists():
            raise FileNotFoundError(f"training input not found: {p}")
        elif _kind(p) is None:
            raise ValueError(f"{p}: expected .npz, .nii, .nii.gz, .png or a folder of them")
        else:
            out.append(p)
    return out


def load_slice_sets(paths: list[Path], config: DataConfig, hold_out: bool) -> ImageSets:
    """Slices of every file under ``paths``; with ``hold_out`` a whole-file validation split."""
    files = expand_inputs(paths)
    val_files: set[Path] = set()
    if hold_out and len(files) >= 2 and config.val_fraction > 0:
        n_val = max(1, round(config.val_fraction * len(files)))
        perm = torch.randperm(len(files), generator=torch.Generator().manual_seed(SPLIT_SEED))
        val_files = {files[int(i)] for i in perm[:n_val]}
    train = [load_file_slices(f, config) for f in files if f not in val_files]
    val = [load_file_slices(f, config) for f in files if f in val_files]
    empty = torch.empty(0, 1, config.image_size, config.image_size, dtype=torch.float16)
    return ImageSets(train=torch.cat([empty, *train]), val=torch.cat([empty, *val]))


def load_file_slices(path: Path, config: DataConfig) -> Tensor:
    """Model-sized float16 slices ``(N, 1, S, S)`` of one NIfTI volume or PNG image."""
    if _kind(path) == "png":
        image = _read_png(path)
        stacks = [(image[None], (1.0, 1.0))]
        scale = _scale_of(image, path)
    else:
        volume, zooms, affine = _read_nifti(path)
        scale = _scale_of(volume, path)
        stacks = []
        for axis in config.axes if volume.shape[2] > 1 else (2,):  # one slice: axis 2 only
            stack = volume.movedim(axis, 0)
            rest = tuple(zooms[a] for a in range(3) if a != axis)
            if config.reorient:
                orientation = display_orientation(affine, axis)
                stack = orientation.to_display(stack)
                rest = rest[::-1] if orientation.transpose else rest
            stacks.append((stack, rest))
    out = []
    for stack, (dy, dx) in stacks:
        foreground = (stack > FOREGROUND_LEVEL * scale).flatten(1).float().mean(1)
        keep = foreground >= config.min_foreground
        if keep.any():
            x = to_prior_range(stack[keep], scale).clamp(-1.0, 1.0)
            out.append(fit_square(x, config.image_size, (dy, dx)))
    if not out:
        return torch.empty(0, 1, config.image_size, config.image_size, dtype=torch.float16)
    return torch.cat(out).unsqueeze(1).to(torch.float16)


def fit_square(x: Tensor, size: int, spacing: tuple[float, float] = (1.0, 1.0)) -> Tensor:
    """Resize slices ``(N, H, W)`` in [-1, 1] to ``(N, size, size)``: square pixels, the longer
    physical side spanning ``size``, centred on a background (-1) canvas."""
    n, h, w = x.shape
    ext_h, ext_w = h * spacing[0], w * spacing[1]
    longest = max(ext_h, ext_w)
    new_h = max(1, min(size, round(size * ext_h / longest)))
    new_w = max(1, min(size, round(size * ext_w / longest)))
    y = F.interpolate(x[:, None].float(), size=(new_h, new_w), mode="bilinear",
                      align_corners=False, antialias=(new_h < h or new_w < w))[:, 0]
    top, left = (size - new_h) // 2, (size - new_w) // 2
    canvas = torch.full((n, size, size), -1.0, dtype=y.dtype)
    canvas[:, top : top + new_h, left : left + new_w] = y.clamp(-1.0, 1.0)
    return canvas


def _scale_of(image: Tensor, path: Path) -> float:
    """:func:`invdiff.intensity.robust_scale`, its errors naming the file."""
    try:
        return robust_scale(image)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(".png"):
        return "png"
    return None


def _read_nifti(path: Path) -> tuple[Tensor, tuple[float, float, float], np.ndarray | None]:
    """Magnitude volume, voxel sizes and affine of a 3D (or the first frame of a 4D) NIfTI.

    Read with :func:`invdiff.io.images.read_image`, so a training volume passes the checks an
    input of ``invdiff solve``/``simulate`` does: complex data and NaN/Inf voxels are errors
    (:class:`~invdiff.io.images.ImageError`, naming the file), not silently repaired.
    """
    import nibabel as nib

    from invdiff.io.images import read_image

    image = read_image(path, frame=0, frame_if_4d=True, allow_zero=True)
    data = np.abs(image.data).astype(np.float32)  # magnitude of real data
    if data.ndim == 2:  # a single slice, taken along axis 2 (as invdiff solve does)
        data = data[:, :, None]
    header = nib.load(str(path)).header
    zooms = tuple(float(z) for z in (*header.get_zooms()[:3], 1.0, 1.0)[:3])
    if not all(math.isfinite(z) and z > 0 for z in zooms):
        zooms = (1.0, 1.0, 1.0)
    volume = torch.from_numpy(np.ascontiguousarray(data))
    # no affine (qform and sform codes 0): display orientation as for .npy volumes
    affine = None if image.affine is None else np.asarray(image.affine, dtype=np.float64)
    return volume, zooms, affine  # type: ignore[return-value]


def _read_png(path: Path) -> Tensor:
    from invdiff.io.images import read_png  # as invdiff solve reads PNGs: colour is refused

    a = read_png(path)
    if a.ndim != 2:
        raise ValueError(f"{path}: expected a greyscale image, got array of shape {a.shape}")
    return torch.from_numpy(a.copy())
