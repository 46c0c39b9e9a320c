"""Reading and writing magnitude images and volumes: NIfTI, PNG, ``.npy``.

An :class:`Image` is a real array of 2 or 3 dimensions plus, for NIfTI, its voxel-to-world
affine. Reading validates what the rest of the toolkit relies on and fails with one clear line
otherwise: the file exists and parses, holds a real numeric image, 2D or 3D (4D only with an
explicit ``frame``), every voxel finite, not all zero.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from invdiff.io.atomic import write_atomic

NIFTI_SUFFIXES = (".nii", ".nii.gz")
PNG_SUFFIXES = (".png",)
NPY_SUFFIXES = (".npy",)


#: NIfTI xform codes of a declared space (1 scanner, 2 aligned, 3 Talairach, 4 MNI152, 5 template).
SPACE_CODES = range(1, 6)


class UndeclaredGeometryWarning(UserWarning):
    """A NIfTI file declares no geometry (qform and sform codes 0) but unequal voxel sizes."""


class ImageError(ValueError):
    """An input image that cannot be used (unreadable, wrong kind, non-finite, empty)."""


@dataclass(frozen=True)
class Image:
    """A real 2D ``(H, W)`` or 3D ``(X, Y, Z)`` image.

    Attributes:
        data: float array, 2 or 3 dimensions.
        affine: 4x4 voxel-to-world matrix (NIfTI), or ``None`` (PNG, ``.npy``, and NIfTI files
            whose qform and sform codes are both 0, which declare no geometry).
        kind: ``"nifti"``, ``"png"`` or ``"npy"``, the format it was read from.
        spatial_unit: the NIfTI header's unit of the affine (``"mm"``, ``"meter"``,
            ``"micron"``), ``None`` when unknown or not NIfTI.
        xform_code: the NIfTI code of the space the affine maps to (sform code, else qform
            code: 1 scanner, 2 aligned, 3 Talairach, 4 MNI152, ...), ``None`` when not NIfTI or
            without an affine.
    """

    data: np.ndarray
    affine: np.ndarray | None = None
    kind: str = "npy"
    spatial_unit: str | None = None
    xform_code: int | None = None


#: NIfTI ``xyzt_units`` spatial codes and their names (as nibabel spells them)
_UNIT_CODES = {1: "meter", 2: "mm", 3: "micron"}
SPATIAL_UNITS = tuple(_UNIT_CODES.values())


def check_spatial_unit(unit: str | None) -> None:
    """Raise ``ValueError`` unless ``unit`` is ``None`` or one of :data:`SPATIAL_UNITS`."""
    if unit is not None and unit not in SPATIAL_UNITS:
        raise ValueError(f"spatial unit must be one of {list(SPATIAL_UNITS)} or None, "
                         f"got {unit!r}")


def image_kind(path: str | os.PathLike) -> str:
    """The format of ``path`` from its extension: ``nifti``, ``png`` or ``npy``."""
    name = Path(path).name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(PNG_SUFFIXES):
        return "png"
    if name.endswith(NPY_SUFFIXES):
        return "npy"
    raise ImageError(
        f"{path}: unknown image format; expected one of .nii, .nii.gz, .png, .npy"
    )


def read_image(
    path: str | os.PathLike,
    frame: int | None = None,
    allow_zero: bool = False,
    frame_if_4d: bool = False,
) -> Image:
    """Read and validate a magnitude image.

    Args:
        path: a ``.nii``/``.nii.gz``, ``.png`` or ``.npy`` file.
        frame: for 4D input ``(X, Y, Z, T)``, the index along the last axis to use. 4D input
            without it is an error; trailing singleton axes are dropped first.
        allow_zero: accept an all-zero image (a reconstruction to evaluate may be one).
        frame_if_4d: ignore ``frame`` for a 2D/3D file instead of refusing it (for a reference
            or reconstruction that goes with a 4D input but was saved as one volume).

    Complex input is an error rather than silently taking its magnitude: complex data belongs in
    a measurement file (see docs/formats.md).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input {path} does not exist")
    kind = image_kind(path)
    affine, unit, code = None, None, None
    if kind == "nifti":
        data, affine, unit, code = _read_nifti(path)
    elif kind == "png":
        data = read_png(path)
    else:
        data = _read_npy(path)
    data = np.asarray(data)
    if frame_if_4d and _squeezed_ndim(data) < 4:
        frame = None
    data = _select_frame(data, frame, path)
    return Image(data=_validated(data, path, allow_zero), affine=affine, kind=kind,
                 spatial_unit=unit, xform_code=code)


def _read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray | None, str | None, int | None]:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises many types for corrupt files
        msg = f"{path}: not a readable NIfTI file ({type(exc).__name__}: {exc})"
        raise ImageError(msg) from exc
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise ImageError(f"{path}: not a NIfTI image (nibabel read it as {type(img).__name__})")
    header = img.header
    if int(header["qform_code"]) == 0 and int(header["sform_code"]) == 0:
        # NIfTI "method 1": no orientation or position is declared (what write_image writes for
        # an image without an affine); treated like a .npy array rather than with nibabel's guess
        zooms = tuple(float(z) for z in header.get_zooms()[:min(3, data.ndim)])
        if zooms and max(zooms) > 1.01 * min(zooms) and min(zooms) > 0:
            warnings.warn(
                f"{path}: declares no geometry (qform and sform codes 0), so its voxel sizes "
                f"{'x'.join(f'{z:g}' for z in zooms)} (pixdim) are ignored and voxels are treated "
                "as cubes; if those sizes are real, give the file an sform (e.g. nibabel: "
                "img.set_sform(img.affine, code=1))", UndeclaredGeometryWarning, stacklevel=3)
        return data, None, _spatial_unit(header), None
    return data, np.asarray(img.affine, dtype=np.float64), _spatial_unit(header), space_code(header)


def space_code(header) -> int | None:
    """The NIfTI code of the space a header's affine maps to: the sform code, else the qform
    code (nibabel's affine takes the sform first); ``None`` when both are 0."""
    return int(header["sform_code"]) or int(header["qform_code"]) or None


def _spatial_unit(header) -> str | None:
    """The unit of the affine from ``xyzt_units`` (NIfTI codes 1, 2, 3); ``None`` otherwise.

    Decoded here because nibabel's ``get_xyzt_units`` raises on codes it does not know, and an
    odd unit byte must not make a readable image unreadable.
    """
    return _UNIT_CODES.get(int(np.asarray(header["xyzt_units"])) % 8)


def read_png(path: Path) -> np.ndarray:
    """A PNG's grey values as float32 ``(H, W)``; colour (channels that differ) is refused with
    :class:`ImageError`, RGB(A) whose channels are equal is read as grey."""
    from PIL import Image as PILImage

    try:
        with PILImage.open(path) as im:
            if im.mode in ("RGB", "RGBA", "P", "PA"):  # P: palette indices are not intensities
                rgb = np.asarray(im.convert("RGB"))
                if not (np.array_equal(rgb[..., 0], rgb[..., 1])
                        and np.array_equal(rgb[..., 0], rgb[..., 2])):
                    raise ImageError(f"{path}: colour PNG; expected a grayscale magnitude image")
                return rgb[..., 0].astype(np.float32)
            if im.mode in ("LA",):
                im = im.convert("L")
            return np.asarray(im).astype(np.float32)
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(f"{path}: not a readable PNG ({type(exc).__name__}: {exc})") from exc


def _read_npy(path: Path) -> np.ndarray:
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as exc:
        msg = f"{path}: not a readable .npy array ({type(exc).__name__}: {exc})"
        raise ImageError(msg) from exc
    return data


def _squeezed_ndim(data: np.ndarray) -> int:
    ndim = data.ndim
    while ndim > 3 and data.shape[ndim - 1] == 1:
        ndim -= 1
    return ndim


def _select_frame(data: np.ndarray, frame: int | None, path: Path) -> np.ndarray:
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 4:
        if frame is None:
            raise ImageError(
                f"{path}: 4D input of shape {data.shape}; choose a volume with --frame "
                f"(0..{data.shape[3] - 1})"
            )
        if not 0 <= frame < data.shape[3]:
            raise ImageError(f"{path}: --frame {frame} outside 0..{data.shape[3] - 1}")
        data = data[..., frame]
    elif frame is not None:
        raise ImageError(f"{path}: --frame given but the input is {data.ndim}D {data.shape}")
    if data.ndim not in (2, 3):
        raise ImageError(f"{path}: expected a 2D or 3D image, got shape {data.shape}")
    return data


def _validated(data: np.ndarray, path: Path, allow_zero: bool = False) -> np.ndarray:
    if data.dtype.kind == "c":
        raise ImageError(
            f"{path}: complex data {data.dtype}; a magnitude image is expected "
            "(k-space goes in a measurement file, see docs/formats.md)"
        )
    if data.dtype.kind not in "biuf":
        raise ImageError(f"{path}: non-numeric data of dtype {data.dtype}")
    data = data.astype(np.float32 if data.dtype.itemsize <= 4 else np.float64)
    finite = np.isfinite(data)
    if not finite.all():
        n_bad = int((~finite).sum())
        raise ImageError(f"{path}: {n_bad} voxel(s) are NaN or Inf")
    if not allow_zero and not np.any(data):
        raise ImageError(f"{path}: the image is all zero")
    if sorted(data.shape)[-2] < 2 or data.ndim == 2 and min(data.shape) < 2:
        # a 3D volume may be one slice thick, (H, W, 1): a single-slice NIfTI
        raise ImageError(f"{path}: image of shape {data.shape} is too small")
    return data


def write_image(
    path: str | os.PathLike,
    data: np.ndarray,
    affine: np.ndarray | None = None,
    spatial_unit: str | None = None,
    xform_code: int | None = None,
) -> None:
    """Write ``data`` atomically to ``path`` in the format its extension names.

    NIfTI is written as float32 with ``affine`` as both qform and sform (code ``xform_code``,
    e.g. a source's 4 = MNI152; 1 = scanner when ``None`` or not a NIfTI space code 1-5; when
    ``affine`` is ``None``, identity voxel sizes with codes 0: no geometry declared, and
    :func:`read_image` reads it back as ``None``), and ``spatial_unit`` (one of
    :data:`SPATIAL_UNITS`; ``None``: unknown) as the header's unit.
    ``.npy`` keeps the dtype. PNG (2D only) is 16-bit grayscale, linearly scaled so that the
    image's maximum is 65535 and negative values clip to 0: PNG is for viewing, not for numbers.
    """
    kind = image_kind(path)
    data = np.asarray(data)
    check_spatial_unit(spatial_unit)
    if kind == "nifti":
        import nibabel as nib

        aff = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
        img = nib.Nifti1Image(data.astype(np.float32), aff)
        # 0: no geometry declared (read back as None); else the source's space, default scanner
        code = 0 if affine is None else (xform_code if xform_code in SPACE_CODES else 1)
        img.set_qform(aff, code=code)
        img.set_sform(aff, code=code)
        if spatial_unit is not None:
            img.header.set_xyzt_units(xyz=spatial_unit)
        write_atomic(path, lambda tmp: nib.save(img, str(tmp)))
    elif kind == "png":
        if data.ndim != 2:
            raise ImageError(f"{path}: PNG output needs a 2D image, got shape {data.shape}")
        write_atomic(path, lambda tmp: _write_png(tmp, data))
    else:
        write_atomic(path, lambda tmp: np.save(tmp, data, allow_pickle=False))


def _write_png(path: Path, data: np.ndarray) -> None:
    from PIL import Image as PILImage

    top = float(np.max(data))
    scaled = np.clip(data / top, 0.0, 1.0) if top > 0 else np.zeros_like(data)
    PILImage.fromarray(np.round(scaled * 65535).astype(np.uint16)).save(path, format="PNG")
