"""The measurement file (``.npz``, format version 1) and the low-resolution image convention.

A measurement file is self-describing: it holds the complex k-space and everything needed to solve
it without other files (see ``docs/formats.md`` for the full table of keys):

``format``        ``"invdiff.measurement"``
``version``       ``1``
``kspace``        complex array ``(S, *oshape)``: one measurement per slice
``operator``      the operator spec string (``kcrop:32``) acting on ``(H, W)`` images
``image_shape``   ``(H, W)``, the image grid the operator acts on
``noise_sigma``   RMS noise magnitude per entry of ``kspace`` (as ``operators.noise.GaussianNoise``)
``scale``         the intensity scale ``s`` of :mod:`invdiff.intensity` (NaN when unknown)
``source_shape``  shape of the source image/volume (2 or 3 ints)
``source_affine`` 4x4 voxel-to-world affine of the source (NaN-filled when it had none)
``axis``          slice axis of a 3D source (-1 for 2D)
``source_unit``   unit of ``source_affine`` from the source's NIfTI header (``mm``, ``meter``,
                  ``micron``; empty or absent when unknown)
``source_space``  NIfTI code of the space ``source_affine`` maps to (2 aligned, 3 Talairach,
                  4 MNI152, 5 template; absent: 1, scanner)

Low-resolution image convention. With the centred orthonormal DFT ``F_n`` on an ``h x w`` grid, the
low-resolution image of a ``kcrop:hxw`` measurement ``y = C F_HW x`` of an ``H x W`` image ``x`` is

    m = sqrt(h w / (H W)) * F_hw^{-1} y,        equivalently   y = sqrt(H W / (h w)) * F_hw m.

The factor keeps intensities: a constant image ``x = c`` has ``F_HW x`` a DC spike of height
``c sqrt(HW)``, whose ``h x w`` inverse DFT is ``c sqrt(HW / hw)``; the factor brings it back to
``c``, so a low-resolution file is in the same units as the high-resolution result. A magnitude
file keeps only ``|m|``; for real, non-negative objects the phase of ``m`` is small except near
edges.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from invdiff.io.atomic import write_atomic
from invdiff.io.images import SPACE_CODES, SPATIAL_UNITS, check_spatial_unit

FORMAT = "invdiff.measurement"
VERSION = 1
_KEYS = {
    "format", "version", "kspace", "operator", "image_shape", "noise_sigma", "scale",
    "source_shape", "source_affine", "axis", "source_unit", "source_space",
}


class MeasurementError(ValueError):
    """A measurement file that does not follow the documented format."""


@dataclass(frozen=True)
class Measurement:
    """A k-space measurement of a 2D image or of a 3D volume slice by slice.

    Attributes:
        kspace: complex ``(S, *oshape)``.
        operator: operator spec acting on images of ``image_shape``.
        image_shape: ``(H, W)``.
        noise_sigma: RMS noise magnitude per entry of ``kspace`` (``sigma / sqrt(2)`` per real and
            imaginary part, as :class:`invdiff.operators.noise.GaussianNoise`).
        scale: intensity scale of the source (``None`` when unknown).
        source_shape: shape of the source (2D ``(H, W)`` or 3D).
        source_affine: 4x4 affine of the source, or ``None``.
        axis: slice axis of a 3D source, ``None`` for 2D.
        source_unit: unit of ``source_affine`` (``"mm"``, ``"meter"``, ``"micron"``) or ``None``.
        source_space: NIfTI code of the space of ``source_affine`` (1 scanner, 2 aligned,
            3 Talairach, 4 MNI152, 5 template); read as 1 from files with an affine and no
            ``source_space``, ``None`` without an affine.
    """

    kspace: np.ndarray
    operator: str
    image_shape: tuple[int, int]
    noise_sigma: float = 0.0
    scale: float | None = None
    source_shape: tuple[int, ...] | None = None
    source_affine: np.ndarray | None = None
    axis: int | None = None
    source_unit: str | None = None
    source_space: int | None = None


def write_measurement(path: str | os.PathLike, m: Measurement) -> None:
    """Write ``m`` atomically as a version-1 ``.npz`` (no pickles)."""
    if not str(path).endswith(".npz"):
        raise MeasurementError(f"measurement files end in .npz, got {path}")
    check_spatial_unit(m.source_unit or None)
    if m.source_space is not None and m.source_space not in SPACE_CODES:
        raise MeasurementError(f"source_space must be a NIfTI xform code 1-5, got {m.source_space}")
    has_affine = m.source_affine is not None and not np.isnan(m.source_affine).all()
    if m.source_space not in (None, 1) and not has_affine:
        raise MeasurementError(f"source_space {m.source_space} needs source_affine (the affine it "
                               "labels)")
    arrays = {
        "format": np.array(FORMAT),
        "version": np.array(VERSION),
        "kspace": np.asarray(m.kspace),
        "operator": np.array(m.operator),
        "image_shape": np.array(m.image_shape, dtype=np.int64),
        "noise_sigma": np.array(float(m.noise_sigma)),
        "scale": np.array(np.nan if m.scale is None else float(m.scale)),
        "source_shape": np.array(m.source_shape or (), dtype=np.int64),
        "source_affine": np.full((4, 4), np.nan) if m.source_affine is None
        else np.asarray(m.source_affine, dtype=np.float64),
        "axis": np.array(-1 if m.axis is None else int(m.axis)),
    }
    if m.source_unit:  # only when known, so files without one stay readable by older readers
        arrays["source_unit"] = np.array(m.source_unit)
    if m.source_space not in (None, 1):  # as source_unit: only when it says more than scanner
        arrays["source_space"] = np.array(int(m.source_space))
    write_atomic(path, lambda tmp: np.savez(tmp, **arrays))


def read_measurement(path: str | os.PathLike) -> Measurement:
    """Read and validate a measurement file; errors name the key and the expected value."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input {path} does not exist")
    with path.open("rb") as f:
        if f.read(2) != b"PK":  # numpy would try it as a pickle and say so
            raise MeasurementError(f"{path}: not an .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:
        msg = f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})"
        raise MeasurementError(msg) from exc
    if str(arrays.get("format", "")) != FORMAT:
        raise MeasurementError(f"{path}: not an invdiff measurement file (format != {FORMAT!r})")
    missing = {"kspace", "operator", "image_shape"} - arrays.keys()
    if missing:
        raise MeasurementError(f"{path}: missing key(s) {sorted(missing)}")
    unknown = arrays.keys() - _KEYS
    if unknown:
        raise MeasurementError(f"{path}: unknown key(s) {sorted(unknown)}; known: {sorted(_KEYS)}")
    version = _integer(arrays, "version", VERSION, path)
    if version != VERSION:
        raise MeasurementError(f"{path}: format version {version}; this invdiff reads {VERSION}")
    kspace = arrays["kspace"]
    if kspace.dtype.kind != "c" or kspace.ndim < 3:
        raise MeasurementError(
            f"{path}: kspace must be complex (S, *oshape), got {kspace.dtype} {kspace.shape}"
        )
    if not np.isfinite(kspace).all():
        n_bad = int((~np.isfinite(kspace)).sum())
        raise MeasurementError(f"{path}: kspace has {n_bad} NaN/Inf values")
    if not np.any(kspace):
        raise MeasurementError(f"{path}: kspace is all zero")
    image_shape = _integers(arrays, "image_shape", path)
    if len(image_shape) != 2 or min(image_shape) < 1:
        raise MeasurementError(f"{path}: image_shape must be (H, W), got {image_shape}")
    sigma = _number(arrays, "noise_sigma", 0.0, path)
    if not (math.isfinite(sigma) and sigma >= 0):
        raise MeasurementError(f"{path}: noise_sigma must be finite and >= 0, got {sigma}")
    scale = _number(arrays, "scale", math.nan, path)
    if not math.isnan(scale) and not (math.isfinite(scale) and scale > 0):
        raise MeasurementError(f"{path}: scale must be finite and > 0 (NaN when unknown), "
                               f"got {scale}")
    has_source = "source_shape" in arrays
    source_shape = (_integers(arrays, "source_shape", path) if has_source else ()) or None
    if source_shape is not None and (len(source_shape) not in (2, 3) or min(source_shape) < 1):
        raise MeasurementError(f"{path}: source_shape must be 2 or 3 positive sizes, "
                               f"got {source_shape}")
    affine = _source_affine(arrays, path)
    if affine is not None and source_shape is None:
        raise MeasurementError(f"{path}: source_affine needs source_shape (the grid it belongs "
                               "to)")
    axis = _integer(arrays, "axis", -1, path)
    if source_shape is not None and len(source_shape) == 3 and not 0 <= axis < 3:
        raise MeasurementError(f"{path}: axis must be 0, 1 or 2 for a 3D source_shape, got {axis}")
    unit = _text(arrays, "source_unit", path) if "source_unit" in arrays else ""
    if unit not in ("", *SPATIAL_UNITS):
        raise MeasurementError(f"{path}: source_unit must be one of {list(SPATIAL_UNITS)} or "
                               f"empty, got {unit!r}")
    space = _integer(arrays, "source_space", 1, path)
    if space not in SPACE_CODES:
        raise MeasurementError(f"{path}: source_space must be a NIfTI xform code 1-5 (1 scanner, "
                               f"4 MNI152, ...), got {space}")
    if "source_space" in arrays and affine is None:
        raise MeasurementError(f"{path}: source_space needs source_affine (the affine it labels)")
    return Measurement(
        kspace=kspace,
        operator=_text(arrays, "operator", path),
        image_shape=image_shape,  # type: ignore[arg-type]
        noise_sigma=sigma,
        scale=scale if math.isfinite(scale) else None,
        source_shape=source_shape,
        source_affine=affine,
        axis=None if axis < 0 else axis,
        source_unit=unit or None,
        source_space=space if affine is not None else None,
    )


def _source_affine(arrays: dict[str, np.ndarray], path: Path) -> np.ndarray | None:
    """``source_affine``: ``None`` when absent or all NaN (no affine), else a checked 4x4 affine."""
    affine = arrays.get("source_affine")
    if affine is None:
        return None
    if affine.shape != (4, 4) or affine.dtype.kind not in "fiu":
        raise MeasurementError(f"{path}: source_affine must be a 4x4 real array (all NaN when "
                               f"unknown), got {affine.dtype} {affine.shape}")
    affine = affine.astype(np.float64)
    if np.isnan(affine).all():
        return None
    if not np.isfinite(affine).all():
        raise MeasurementError(f"{path}: source_affine has NaN/Inf entries (all NaN means "
                               "unknown)")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12 or not np.allclose(affine[3], [0, 0, 0, 1]):
        raise MeasurementError(f"{path}: source_affine is not a voxel-to-world affine (singular "
                               "3x3 part or last row not 0 0 0 1)")
    return affine


def _scalar(arrays: dict[str, np.ndarray], key: str, kinds: str, what: str, path: Path) -> Any:
    value = arrays[key]
    if value.ndim != 0 or value.dtype.kind not in kinds:
        raise MeasurementError(f"{path}: {key} must be {what}, got {value.dtype} {value.shape}")
    return value.item()


def _text(arrays: dict[str, np.ndarray], key: str, path: Path) -> str:
    return str(_scalar(arrays, key, "U", "a string", path))


def _number(arrays: dict[str, np.ndarray], key: str, default: float, path: Path) -> float:
    if key not in arrays:
        return default
    return float(_scalar(arrays, key, "iuf", "a real number", path))


def _integer(arrays: dict[str, np.ndarray], key: str, default: int, path: Path) -> int:
    if key not in arrays:
        return default
    value = _scalar(arrays, key, "iuf", "an integer", path)
    if value != int(value):
        raise MeasurementError(f"{path}: {key} must be an integer, got {value}")
    return int(value)


def _integers(arrays: dict[str, np.ndarray], key: str, path: Path) -> tuple[int, ...]:
    """A 1D array of whole numbers (``image_shape = [128, 128]``; ``128.5`` is refused)."""
    value = arrays[key]
    if value.ndim != 1 or value.dtype.kind not in "iuf" or not np.all(value == np.round(value)):
        raise MeasurementError(
            f"{path}: {key} must be a list of integers, got {value.dtype} {value.tolist()}"
        )
    return tuple(int(v) for v in value)


def is_measurement_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a measurement file (by its ``.npz`` extension)."""
    return str(path).lower().endswith(".npz")


def centred_fft2(x: np.ndarray, inverse: bool = False) -> np.ndarray:
    """Centred orthonormal 2D DFT over the last two axes (``fftshift . fft2 . ifftshift``)."""
    axes = (-2, -1)
    f = np.fft.ifft2 if inverse else np.fft.fft2
    return np.fft.fftshift(f(np.fft.ifftshift(x, axes=axes), axes=axes, norm="ortho"), axes=axes)


def lowres_to_kspace(m: np.ndarray, image_shape: tuple[int, int]) -> np.ndarray:
    """``y = sqrt(HW / hw) F_hw m`` for low-resolution images ``m`` of shape ``(..., h, w)``."""
    h, w = m.shape[-2:]
    big_h, big_w = image_shape
    if h > big_h or w > big_w:
        raise ValueError(
            f"low-resolution image {h}x{w} is larger than the image grid {big_h}x{big_w}"
        )
    return centred_fft2(m.astype(np.complex128)) * math.sqrt(big_h * big_w / (h * w))


def kspace_to_lowres(y: np.ndarray, image_shape: tuple[int, int]) -> np.ndarray:
    """``m = sqrt(hw / HW) F_hw^{-1} y`` (complex), the inverse of :func:`lowres_to_kspace`."""
    h, w = y.shape[-2:]
    big_h, big_w = image_shape
    return centred_fft2(y, inverse=True) * math.sqrt(h * w / (big_h * big_w))
