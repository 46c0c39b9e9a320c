"""Volume geometry: slicing along an axis and the voxel-to-world affine of a resampled grid.

Resampling convention (centred orthonormal FFT, as in :mod:`invdiff.operators`): on an axis of
``n`` samples the FFT's spatial origin is index ``n // 2`` (``ifftshift`` moves it to 0). Cropping
or zero-padding centred k-space from ``n`` to ``m`` samples therefore keeps the field of view
(``n * d == m * d'``) and keeps index ``n // 2`` of the old grid and index ``m // 2`` of the new
grid at the same world position. The index map is

    i_old = n // 2 + (i_new - m // 2) * n / m,

so the new affine is ``A_old @ T`` with ``T = [[diag(n/m), n//2 - (m//2) n/m], [0, 1]]``: the voxel
size changes by ``n/m``, orientation (direction cosines) is unchanged, and the map composed with its
inverse gives back ``A_old`` exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def resampled_affine(
    affine: np.ndarray, old_shape: Sequence[int], new_shape: Sequence[int],
    convention: str = "fourier",
) -> np.ndarray:
    """Affine of a grid resampled from ``old_shape`` to ``new_shape``.

    Args:
        affine: 4x4 voxel-to-world matrix of the old grid.
        old_shape, new_shape: the first three grid sizes (2D shapes get a third axis of 1).
        convention: ``"fourier"``, centred k-space crop/pad (the module's convention: index
            ``n // 2`` stays put), or ``"edges"``, interpolation that keeps the outer edges of the
            first and last voxels in place (``scikit-image``'s ``resize``:
            ``i_old = (i_new + 1/2) n/m - 1/2``).
    """
    old = _three(old_shape)
    new = _three(new_shape)
    scale = np.array([o / n for o, n in zip(old, new, strict=True)], dtype=np.float64)
    if convention == "fourier":
        shift = np.array([o // 2 - (n // 2) * s for o, n, s in zip(old, new, scale, strict=True)])
    elif convention == "edges":
        shift = 0.5 * (scale - 1.0)
    else:
        raise ValueError(f"convention must be 'fourier' or 'edges', got {convention!r}")
    t = np.eye(4)
    t[:3, :3] = np.diag(scale)
    t[:3, 3] = shift
    return np.asarray(affine, dtype=np.float64) @ t


def shifted_affine(affine: np.ndarray, offset: Sequence[int]) -> np.ndarray:
    """Affine of a grid whose voxel ``i`` is the old grid's voxel ``i - offset`` (e.g. after
    padding ``offset`` voxels at the start of each axis)."""
    t = np.eye(4)
    off = [float(v) for v in offset]
    if not 1 <= len(off) <= 3:
        raise ValueError(f"expected 1 to 3 offsets, got {len(off)}")
    t[:3, 3] = -np.asarray(off + [0.0] * (3 - len(off)))
    return np.asarray(affine, dtype=np.float64) @ t


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """Voxel sizes along the three grid axes: the lengths of the affine's first three columns."""
    return np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)


def _three(shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(v) for v in shape)
    if len(shape) == 2:
        return (*shape, 1)
    if len(shape) != 3:
        raise ValueError(f"expected a 2D or 3D grid shape, got {shape}")
    return shape  # type: ignore[return-value]


def check_axis(ndim: int, axis: int) -> int:
    """Validate a slice axis for a 3D volume; negative values count from the end."""
    if ndim != 3:
        raise ValueError(f"a slice axis applies to 3D volumes, got {ndim}D")
    if not -3 <= axis < 3:
        raise ValueError(f"slice axis must be 0, 1 or 2 for a 3D volume, got {axis}")
    return axis % 3


def to_slices(data: np.ndarray, axis: int | None) -> np.ndarray:
    """``(S, H, W)`` slices of a 3D volume along ``axis``; a 2D image becomes ``(1, H, W)``.

    The in-plane axes keep their order (``H`` is the lower-numbered remaining axis), so
    :func:`from_slices` is the exact inverse.
    """
    if data.ndim == 2:
        return data[None]
    return np.moveaxis(data, check_axis(data.ndim, 2 if axis is None else axis), 0)


def from_slices(slices: np.ndarray, ndim: int, axis: int | None) -> np.ndarray:
    """Inverse of :func:`to_slices` for a result of shape ``(..., S, H, W)`` (leading axes kept)."""
    if ndim == 2:
        return slices[..., 0, :, :]
    return np.moveaxis(slices, -3, slices.ndim - 3 + check_axis(3, 2 if axis is None else axis))
