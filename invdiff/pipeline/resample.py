"""Putting an image or volume on a prior's grid: a square field of view of ``N x N`` pixels.

A prior models ``N x N`` slices (128x128 for the default prior) of a square field of view with
square pixels. Scanner volumes are not: e.g. 197x233 voxels of 1 mm, or 0.9 x 1.2 mm voxels.
:func:`resample_image` pads every slice about its centre to a square field of view *in world
units* with the background (the median of the slices' outermost rows and columns: about 0 for
magnitude images), then resamples it to ``N x N``, and gives the affine that keeps every voxel
at its world position (:mod:`invdiff.io.geometry`). The slice axis is not touched. NIfTI files
that declare no geometry (qform and sform codes 0), PNG and ``.npy`` are taken as square voxels.

Methods:

* ``fourier`` (default): centred k-space crop or zero-pad (``y = crop(F_n x)``, back with
  ``F_N^{-1}``, intensities kept by ``sqrt(N^2 / n^2)``, the convention of
  :mod:`invdiff.io.measurement`). Shrinking gives the image a ``N x N`` acquisition of the same
  field of view would give (Gibbs ringing included); ``kcrop:n`` of the result is exactly the
  central ``n x n`` k-space of the source (up to the real part taken and the clip below).
* ``linear``, ``cubic``: ``skimage.transform.resize`` (order 1 or 3), Gaussian anti-aliasing when
  shrinking; the shipped training slices were made like ``linear`` (``scripts/build_dataset.py``).

Values below ``min(background, source minimum)`` that the resampling creates (ringing of
magnitude images) are clipped to it; the result is float32 in the source's intensity units.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from invdiff.io import Image, check_outputs, image_kind, read_image, write_image
from invdiff.io.geometry import (
    check_axis,
    from_slices,
    resampled_affine,
    shifted_affine,
    to_slices,
    voxel_sizes,
)
from invdiff.io.measurement import centred_fft2

METHODS = ("fourier", "linear", "cubic")


@dataclass(frozen=True)
class Resampled:
    """The resampled image, its geometry and what was done.

    Attributes:
        image: the result (``affine`` ``None`` when the source had none).
        padded_shape: in-plane ``(h, w)`` of the source slices after padding to a square field
            of view.
        pixel_size: in-plane pixel size of the result, in the source's units (voxel units for
            sources without an affine).
        axis: the slice axis of a 3D source, ``None`` for 2D.
    """

    image: Image
    padded_shape: tuple[int, int]
    pixel_size: tuple[float, float]
    axis: int | None


def square_fov_padding(
    shape: tuple[int, int], spacing: tuple[float, float]
) -> list[tuple[int, int]]:
    """``(before, after)`` zero-padding per in-plane axis that makes ``shape * spacing`` square.

    The longer side is kept; the other gets ``round(extra / spacing)`` voxels, split about the
    centre (the odd one after), so the two sides differ by at most half a voxel.
    """
    fov = [n * d for n, d in zip(shape, spacing, strict=True)]
    side = max(fov)
    pads = []
    for d, f in zip(spacing, fov, strict=True):
        extra = max(int(round((side - f) / d)), 0)
        pads.append((extra // 2, extra - extra // 2))
    return pads


def resample_slices(
    slices: np.ndarray, size: tuple[int, int], method: str, floor: float | None = None
) -> np.ndarray:
    """Resample ``(S, h, w)`` real slices to ``(S, *size)`` by ``method`` (see module doc);
    values below ``floor`` (default ``min(0, slices.min())``) are clipped to it."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    data = np.asarray(slices, dtype=np.float64)
    h, w = data.shape[-2:]
    if method == "fourier":
        import sigpy

        kspace = sigpy.resize(centred_fft2(data.astype(np.complex128)), (data.shape[0], *size))
        out = centred_fft2(kspace, inverse=True).real * np.sqrt(size[0] * size[1] / (h * w))
    else:
        from skimage.transform import resize

        order = 1 if method == "linear" else 3
        out = np.stack([resize(s, size, order=order, preserve_range=True, mode="edge",
                               anti_aliasing=size[0] < h or size[1] < w) for s in data])
    return np.maximum(out, min(0.0, float(data.min())) if floor is None else floor)


def _border(stack: np.ndarray) -> np.ndarray:
    """The outermost rows and columns of every slice of an ``(S, H, W)`` stack."""
    return np.concatenate([stack[:, 0].ravel(), stack[:, -1].ravel(),
                           stack[:, :, 0].ravel(), stack[:, :, -1].ravel()])


def parse_slices(text: str) -> tuple[int, int]:
    """``"START:STOP"`` (0-based, ``STOP`` excluded, as Python slices) -> ``(START, STOP)``."""
    start, colon, stop = text.partition(":")
    try:
        if not colon:
            raise ValueError
        return int(start), int(stop)
    except ValueError:
        raise ValueError(f"--slices must be START:STOP (0-based, STOP excluded, e.g. 80:88), "
                         f"got {text!r}") from None


def resample_image(
    image: Image, size: int, axis: int = 2, method: str = "fourier",
    slices: tuple[int, int] | None = None,
) -> Resampled:
    """Pad the slices of ``image`` to a square field of view and resample them to
    ``size x size`` (module doc); a 3D volume is sliced along ``axis``, whose length is kept,
    or only ``slices = (start, stop)`` of it are (the affine moves the origin with them)."""
    _check_options(size, method, axis)
    data = image.data
    ndim = data.ndim
    ax = check_axis(3, axis) if ndim == 3 else None
    start = 0
    if slices is not None:
        if ax is None:
            raise ValueError("--slices selects slices of a 3D volume; this image is 2D")
        start, stop = slices
        count = data.shape[ax]
        if not 0 <= start < stop <= count:
            raise ValueError(f"--slices {start}:{stop} is not a non-empty range within the "
                             f"volume's {count} slices along axis {ax} (0:{count} is all)")
        data = np.take(data, np.arange(start, stop), axis=ax)
    in_plane = [i for i in range(ndim) if i != ax]
    if image.affine is None:
        spacing = (1.0, 1.0)
    else:
        sizes = voxel_sizes(image.affine)
        spacing = (float(sizes[in_plane[0]]), float(sizes[in_plane[1]]))
        if min(spacing) <= 0:
            raise ValueError(f"the affine gives in-plane voxel sizes {spacing}; they must be > 0")
    stack = to_slices(data, ax)
    if min(stack.shape[-2:]) < 2:
        raise ValueError(f"slices along axis {ax} are {stack.shape[-2]}x{stack.shape[-1]} "
                         "voxels; resampling needs at least 2x2 in-plane (check --axis)")
    pads = square_fov_padding(tuple(stack.shape[-2:]), spacing)
    background = float(np.median(_border(stack)))  # ~0 for magnitude images
    padded = np.pad(stack, [(0, 0), *pads], constant_values=background)
    floor = min(0.0, float(stack.min()) - background)  # one floor for every chunk
    result = np.concatenate([  # about the background: ringing clipped at min(it, source min)
        resample_slices(padded[i : i + CHUNK] - background, (size, size), method, floor)
        + background
        for i in range(0, padded.shape[0], CHUNK)
    ])
    out = from_slices(result, ndim, ax).astype(np.float32)
    padded_shape = (padded.shape[-2], padded.shape[-1])
    pixel = (padded_shape[0] * spacing[0] / size, padded_shape[1] * spacing[1] / size)
    affine = None
    if image.affine is not None:
        offset = [0] * ndim
        if ax is not None:
            offset[ax] = -start  # new slice i is source slice start + i
        for i, (before, _) in zip(in_plane, pads, strict=True):
            offset[i] = before
        full_padded = list(data.shape)
        for i, n in zip(in_plane, padded_shape, strict=True):
            full_padded[i] = n
        affine = resampled_affine(shifted_affine(image.affine, offset), full_padded, out.shape,
                                  "fourier" if method == "fourier" else "edges")
    return Resampled(
        image=Image(data=out, affine=affine, kind=image.kind, spatial_unit=image.spatial_unit,
                    xform_code=image.xform_code),
        padded_shape=padded_shape, pixel_size=pixel, axis=ax,
    )


#: The largest ``size`` accepted (priors model far smaller images; a typo should not fill memory).
MAX_SIZE = 2048
#: Slices resampled at once (bounds the complex working arrays of large volumes).
CHUNK = 16


def _check_options(size: int, method: str, axis: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or not 2 <= size <= MAX_SIZE:
        raise ValueError(f"size must be an integer from 2 to {MAX_SIZE}, got {size!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not -3 <= axis < 3:
        raise ValueError(f"slice axis must be 0, 1 or 2, got {axis}")


def resample_files(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    size: int = 128,
    axis: int = 2,
    frame: int | None = None,
    method: str = "fourier",
    slices: str | None = None,
    overwrite: bool = False,
) -> Resampled:
    """Read ``source``, :func:`resample_image` it, write ``out`` (NIfTI, ``.npy`` or PNG).

    The output is checked first: never the input, never an existing file without ``overwrite``.
    """
    _check_options(size, method, axis)  # before reading a large volume
    span = None if slices is None else parse_slices(slices)
    image_kind(out)
    check_outputs([out], [source], overwrite)
    image = read_image(source, frame=frame)
    if image.data.ndim == 3 and image_kind(out) == "png":
        raise ValueError(f"{out}: PNG holds 2D images; use .nii.gz or .npy")
    result = resample_image(image, size, axis, method, span)
    write_image(out, result.image.data, result.image.affine, result.image.spatial_unit,
                result.image.xform_code)
    return result
