"""``invdiff simulate``: a measurement of a high-resolution image or volume, slice by slice."""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from invdiff.config import check_seed
from invdiff.intensity import robust_scale
from invdiff.io import (
    Image,
    Measurement,
    check_outputs,
    from_slices,
    image_kind,
    read_image,
    resampled_affine,
    to_slices,
    write_image,
    write_measurement,
)
from invdiff.io.measurement import kspace_to_lowres
from invdiff.operators import from_spec
from invdiff.operators.noise import GaussianNoise


def simulate(
    image: Image,
    operator: str,
    noise_sigma: float = 0.0,
    axis: int = 2,
    generator: torch.Generator | None = None,
) -> Measurement:
    """``y = A x + n`` for every slice ``x`` of ``image`` (``n ~ GaussianNoise(noise_sigma)``).

    The operator acts on slices in the file's voxel order (``to_slices``); the result records the
    operator spec, the noise level, the source's shape and affine, the slice axis, and the
    intensity scale ``s = robust_scale(image)`` (:mod:`invdiff.intensity`) of the whole volume.
    Computed in double precision, stored as complex64 (real operators' output becomes complex
    with zero imaginary part so that every measurement file has one dtype).

    Args:
        image: the high-resolution source (2D or 3D).
        operator: operator spec, e.g. ``"kcrop:32"``.
        noise_sigma: RMS noise magnitude per measured entry, in the image's intensity units.
        axis: slice axis of a 3D volume.
        generator: source of the noise draw (seed it for a reproducible measurement).
    """
    if not (math.isfinite(noise_sigma) and noise_sigma >= 0):
        raise ValueError(f"noise sigma must be finite and >= 0, got {noise_sigma}")
    slices = torch.from_numpy(np.ascontiguousarray(to_slices(image.data, axis), dtype=np.float64))
    op = from_spec(operator, tuple(slices.shape[-2:]))
    y = op(slices)
    if noise_sigma > 0:
        y = GaussianNoise(float(noise_sigma))(y, generator)
    y = y if y.is_complex() else y.to(torch.complex128)
    return Measurement(
        kspace=y.numpy().astype(np.complex64),
        operator=operator,
        image_shape=tuple(slices.shape[-2:]),  # type: ignore[arg-type]
        noise_sigma=float(noise_sigma),
        scale=robust_scale(torch.from_numpy(image.data)),
        source_shape=tuple(image.data.shape),
        source_affine=image.affine,
        axis=None if image.data.ndim == 2 else axis % 3,
        source_unit=image.spatial_unit,
        source_space=image.xform_code if image.affine is not None else None,
    )


def lowres_image(measurement: Measurement) -> np.ndarray:
    """The magnitude low-resolution image(s) ``|sqrt(hw/HW) F_hw^{-1} y|`` of a kcrop measurement.

    Shape ``(S, h, w)``; see :mod:`invdiff.io.measurement` for the convention.
    """
    name = measurement.operator.split("|")[0].partition(":")[0].strip()
    if name != "kcrop" or "|" in measurement.operator:
        raise ValueError(
            f"low-resolution images are defined for kcrop, not {measurement.operator!r}"
        )
    return np.abs(kspace_to_lowres(measurement.kspace.astype(np.complex128),
                                   measurement.image_shape))


def simulate_files(
    hr_input: str | os.PathLike,
    operator: str,
    out: str | os.PathLike,
    *,
    noise_sigma: float = 0.0,
    axis: int = 2,
    frame: int | None = None,
    seed: int = 0,
    lowres_out: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Measurement:
    """Read ``hr_input``, simulate (:func:`simulate`), write the measurement file ``out``.

    With ``lowres_out`` the low-resolution magnitude image (:func:`lowres_image`) is written too,
    as a NIfTI with the affine of the coarser grid (:func:`invdiff.io.resampled_affine`), or as
    ``.npy``/PNG. Outputs are checked first: never an input, never an existing file without
    ``overwrite``.
    """
    outputs = [out] + ([lowres_out] if lowres_out is not None else [])
    if not str(out).endswith(".npz"):
        raise ValueError(f"measurement files end in .npz, got {out}")
    check_seed(seed)
    check_outputs(outputs, [hr_input], overwrite)
    image = read_image(hr_input, frame=frame)
    generator = torch.Generator().manual_seed(seed)
    m = simulate(image, operator, noise_sigma, axis, generator)
    lowres = None
    if lowres_out is not None:
        slices = lowres_image(m)
        lowres = from_slices(slices, image.data.ndim, m.axis)
        if image.data.ndim == 3 and image_kind(lowres_out) == "png":
            raise ValueError(f"{lowres_out}: PNG holds 2D images; use .nii.gz or .npy")
    write_measurement(out, m)
    if lowres is not None:
        affine = None if image.affine is None else resampled_affine(
            image.affine, image.data.shape, lowres.shape)
        write_image(lowres_out, lowres, affine, image.spatial_unit, xform_code=image.xform_code)
    return m
