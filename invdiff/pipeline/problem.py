"""Turning an input file into the per-slice problem a solver sees.

Two kinds of input (see ``docs/formats.md``):

* a measurement file (``.npz``) from ``invdiff simulate`` or written by the user: complex k-space
  per slice, the operator spec and the image grid it acts on, the noise level, the source geometry;
* a low-resolution magnitude image or volume (NIfTI, PNG, ``.npy``), taken as the image of the
  central k-space (the convention of :mod:`invdiff.io.measurement`: ``y = sqrt(HW/hw) F_hw m``),
  solved onto the prior's ``H x W`` grid with ``kcrop:hxw``; or, for an image-domain operator such
  as ``downsample:K``, taken as the measurement itself. ``noise_sigma`` is then the RMS noise of
  the image's pixels; in k-space it is ``sqrt(HW / hw)`` times that (``F_hw`` is orthonormal).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from invdiff.config import SolveConfig
from invdiff.intensity import robust_scale
from invdiff.io import (
    Image,
    Measurement,
    is_measurement_file,
    read_image,
    read_measurement,
    resampled_affine,
)
from invdiff.io.geometry import check_axis, to_slices, voxel_sizes
from invdiff.io.measurement import lowres_to_kspace
from invdiff.operators import from_spec
from invdiff.operators.base import LinearOperator
from invdiff.pipeline.orientation import SliceOrientation, display_orientation


class ProblemError(ValueError):
    """An input that does not fit the operator or the prior."""


@dataclass(frozen=True)
class SliceProblem:
    """Measurements of ``S`` slices and how to put the result back into a volume.

    Attributes:
        y: ``(S, *oshape)`` measurements in the input's intensity units (complex for k-space).
        operator: spec of the operator acting on ``image_shape`` slices.
        image_shape: ``(H, W)`` of the reconstructed slices, in the file's voxel order.
        noise_sigma: RMS noise per measured entry, input units.
        scale: robust intensity scale ``s`` (:mod:`invdiff.intensity`).
        ndim: 2 or 3, the dimensionality of the output.
        axis: slice axis of a 3D output (``None`` for 2D).
        affine: voxel-to-world affine of the output grid, or ``None``.
        spatial_unit: the unit of ``affine`` from the source's NIfTI header, or ``None``.
        xform_code: NIfTI code of the space ``affine`` maps to (4 MNI152, ...), ``None`` for
            scanner or unknown.
        orientation: stored slice -> display orientation of the prior's training data.
        kind: ``"measurement"`` or ``"image"``.
        built_operator: the operator built from ``operator`` while loading (see
            :meth:`build_operator`), or ``None``.
    """

    y: np.ndarray
    operator: str
    image_shape: tuple[int, int]
    noise_sigma: float
    scale: float
    ndim: int
    axis: int | None
    affine: np.ndarray | None
    orientation: SliceOrientation
    kind: str
    spatial_unit: str | None = None
    xform_code: int | None = None
    built_operator: LinearOperator | None = field(default=None, repr=False, compare=False)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of the reconstructed image or volume."""
        s = self.y.shape[0]
        if self.ndim == 2:
            return self.image_shape
        shape = list(self.image_shape)
        shape.insert(self.axis, s)  # type: ignore[arg-type]
        return tuple(shape)

    def build_operator(self) -> LinearOperator:
        """The operator of :attr:`operator`, built once per problem (a build can be costly, e.g.
        an ESPIRiT calibration): the loader's build (:attr:`built_operator`) is shared by the
        measurement check and the solve."""
        if self.built_operator is None:
            object.__setattr__(self, "built_operator", from_spec(self.operator, self.image_shape))
        return self.built_operator


def read_input(path: str | os.PathLike, config: SolveConfig) -> Image | Measurement:
    """Read and validate the input file alone: a measurement file or an image (``--frame``)."""
    if is_measurement_file(path):
        if config.frame is not None:
            raise ProblemError(f"{path}: --frame selects a volume of 4D image input (or of a "
                               "4D --reference); a measurement file holds one image or volume")
        return read_measurement(path)
    return read_image(path, frame=config.frame)


def load_problem(
    path: str | os.PathLike, config: SolveConfig, prior_hw: tuple[int, int],
    loaded: Image | Measurement | None = None,
) -> SliceProblem:
    """Read ``path`` (or take its already ``loaded`` content, from :func:`read_input`) and check
    it against the operator and the prior's image size ``prior_hw``."""
    if loaded is None:
        loaded = read_input(path, config)
    if isinstance(loaded, Measurement):
        problem = _from_measurement(Path(path), config, loaded)
    else:
        problem = _from_image(config, prior_hw, loaded)
    expected = problem.orientation.stored_shape(prior_hw)
    if problem.image_shape != expected:
        raise ProblemError(
            f"the prior models {prior_hw[0]}x{prior_hw[1]} images but the input's image grid is "
            f"{problem.image_shape[0]}x{problem.image_shape[1]}"
            + (" (transposed to the prior's orientation)" if problem.orientation.transpose else "")
            + (f"; simulate from a volume put on the prior's grid by `invdiff resample HR --size "
               f"{prior_hw[0]}`" if problem.kind == "measurement" and prior_hw[0] == prior_hw[1]
               else "")
        )
    return problem


def _from_measurement(path: Path, config: SolveConfig, m: Measurement) -> SliceProblem:
    op = from_spec(m.operator, m.image_shape)
    if config.operator is not None and config.operator != m.operator and (
        repr(from_spec(config.operator, m.image_shape)) != repr(op)  # kcrop:32 == kcrop:32x32
    ):
        raise ProblemError(
            f"operator {config.operator} (from --operator or --config) differs from the "
            f"measurement's operator {m.operator}; "
            "a measurement file carries its own operator (leave --operator out)"
        )
    if tuple(m.kspace.shape[1:]) != tuple(op.oshape):
        raise ProblemError(
            f"{path}: kspace slices have shape {tuple(m.kspace.shape[1:])} but operator "
            f"{m.operator} on {m.image_shape} gives {tuple(op.oshape)}"
        )
    ndim = 3 if m.source_shape is not None and len(m.source_shape) == 3 else 2
    axis = m.axis if ndim == 3 else None
    if ndim == 3 and (axis is None or m.source_shape[axis] != m.kspace.shape[0]):
        raise ProblemError(
            f"{path}: {m.kspace.shape[0]} slices do not match source shape {m.source_shape} "
            f"along axis {axis}"
        )
    if ndim == 2 and m.kspace.shape[0] != 1:
        what = f"source_shape {m.source_shape}" if m.source_shape else "no source_shape"
        raise ProblemError(f"{path}: {m.kspace.shape[0]} slices but {what}; several slices need "
                           "the 3D source_shape and axis of their volume")
    out_shape = _grid(m.image_shape, m.kspace.shape[0], ndim, axis)
    affine = None if m.source_affine is None else resampled_affine(
        m.source_affine, m.source_shape, out_shape)
    scale = m.scale if m.scale is not None else _estimated_scale(m.kspace, op)
    sigma = m.noise_sigma if config.noise_sigma is None else config.noise_sigma
    return SliceProblem(
        y=m.kspace, operator=m.operator, image_shape=m.image_shape, noise_sigma=sigma,
        scale=scale, ndim=ndim, axis=axis, affine=affine,
        orientation=display_orientation(m.source_affine, axis) if config.reorient
        else SliceOrientation(),
        kind="measurement", spatial_unit=m.source_unit, xform_code=m.source_space,
        built_operator=op,
    )


def _from_image(config: SolveConfig, prior_hw: tuple[int, int], image: Image) -> SliceProblem:
    ndim = image.data.ndim
    axis = check_axis(3, config.axis) if ndim == 3 else None
    orientation = display_orientation(image.affine, axis) if config.reorient \
        else SliceOrientation()
    big = orientation.stored_shape(prior_hw)
    slices = to_slices(image.data, axis)
    small = tuple(slices.shape[-2:])
    if small[0] > big[0] or small[1] > big[1]:
        raise ProblemError(
            f"input slices are {small[0]}x{small[1]}, larger than the prior's "
            f"{big[0]}x{big[1]} images in at least one direction; a low-resolution input "
            "must fit inside them (a high-resolution volume: `invdiff resample` it onto the "
            "prior's grid, then `invdiff simulate`)"
        )
    if small == tuple(big) and config.operator is None:
        raise ProblemError(
            f"input slices are {small[0]}x{small[1]}, already the prior's image size, so the "
            "default kcrop keeps all of k-space and the result would be the input; for a "
            "high-resolution image make a measurement with `invdiff simulate` first"
        )
    _check_pixel_aspect(image, axis, small, tuple(big))
    spec = config.operator or f"kcrop:{small[0]}x{small[1]}"
    op = from_spec(spec, big)
    if tuple(op.oshape) != small:
        raise ProblemError(
            f"operator {spec} on {big[0]}x{big[1]} images measures {tuple(op.oshape)} but the "
            f"input slices are {small[0]}x{small[1]}"
        )
    sigma = config.noise_sigma or 0.0
    if op.makes_complex():
        if spec.split(":")[0].strip() != "kcrop" or "|" in spec:
            raise ProblemError(
                f"an image input is the image of cropped k-space (kcrop) or an image-domain "
                f"measurement; for {spec} pass a measurement file (see docs/formats.md)"
            )
        y = lowres_to_kspace(slices, big).astype(np.complex64)
        # pixel noise of the LR image -> k-space noise: F is orthonormal, times sqrt(HW / hw)
        sigma *= math.sqrt(big[0] * big[1] / (small[0] * small[1]))
    else:
        y = slices.astype(np.complex64)
    out_shape = _grid(big, slices.shape[0], ndim, axis)
    affine = None if image.affine is None else resampled_affine(
        image.affine, image.data.shape, out_shape)
    return SliceProblem(
        y=y, operator=spec, image_shape=big, noise_sigma=sigma,
        scale=robust_scale(torch.from_numpy(image.data)), ndim=ndim, axis=axis, affine=affine,
        orientation=orientation, kind="image", spatial_unit=image.spatial_unit,
        xform_code=image.xform_code, built_operator=op,
    )


#: Output pixels more elongated than this are refused (a wrong ``--axis`` or a mislabelled
#: array); more than :data:`WARN_ASPECT` gets a warning.
MAX_ASPECT = 2.0
WARN_ASPECT = 1.05


def squared_norm(t: torch.Tensor) -> float:
    """``sum |t|^2`` in float64 (in float32, k-space scaled by ~1e19 or 1e-19 overflows or
    vanishes although solving it works: solvers work in the prior's range)."""
    return float(torch.sum(t.abs().double() ** 2))


class GeometryWarning(UserWarning):
    """The input can be solved, but its geometry will not suit the prior well."""


class MeasurementWarning(UserWarning):
    """The measurement is not what the operator makes from a real image."""


#: Relative distance of a noiseless measurement from the operator's range on real images above
#: which :func:`check_measurement_fit` warns (exact data sit at ~1e-7).
FIT_WARNING = 1e-3


def check_measurement_fit(problem: SliceProblem, phase: bool) -> float | None:
    """Warn when noiseless data are far from ``A x`` for every real image ``x``.

    ``|A A+ y - y| / |y|`` with the real-image pseudo-inverse (closed-form operators only): large
    for complex scanner k-space with a phase (``--phase`` handles it) or for data that the
    operator does not describe (another mask, another crop). Returns the distance, ``None`` when
    not checked (noisy data, ``phase``, no closed-form real pinv).
    """
    if phase or problem.noise_sigma > 0:
        return None
    op = problem.build_operator()
    if not getattr(op, "has_pinv_real", False):
        return None
    complex_out = op.makes_complex()
    num2 = den2 = 0.0
    for start in range(0, problem.y.shape[0], 8):  # a few slices at a time: bounded memory
        y = torch.from_numpy(np.ascontiguousarray(problem.y[start : start + 8]))
        y = y.to(torch.complex64) if complex_out else y.real.float()
        r = op(op.pinv_real(y)) - y
        num2 += squared_norm(r)
        den2 += squared_norm(y)
    distance = float(np.sqrt(num2 / den2)) if den2 > 0 else 0.0
    if distance > FIT_WARNING:
        import warnings

        warnings.warn(
            f"the measurement is {distance:.3g} (relative) away from anything {problem.operator} "
            "makes from a real image: complex k-space with a phase needs --phase; otherwise the "
            "operator does not describe the data (another mask or crop?)",
            MeasurementWarning, stacklevel=2)
    return distance


def _check_pixel_aspect(image: Image, axis: int | None, small: tuple[int, int],
                        big: tuple[int, int]) -> None:
    """Refuse or warn when the output's in-plane pixels are far from square.

    The low-resolution slice and the prior's image share one field of view, so an input of
    ``h x w`` pixels of ``dh x dw`` becomes ``H x W`` pixels of ``dh h / H x dw w / W``; the prior
    was trained on square pixels and sees anatomy stretched by their ratio. Without an affine
    the input pixels are taken as square.
    """
    in_plane = [i for i in range(image.data.ndim) if i != axis][-2:]
    if image.affine is None:
        sizes = np.ones(2)
    else:
        sizes = voxel_sizes(image.affine)[in_plane]
    out = sizes * np.asarray(small) / np.asarray(big)
    aspect = float(out.max() / out.min())
    unit = f" {image.spatial_unit}" if image.spatial_unit else ""
    size = (lambda v: "") if image.affine is None else (lambda v: f" ({v[0]:.3g}x{v[1]:.3g}{unit})")
    what = (f"input slices of {small[0]}x{small[1]} pixels{size(sizes)} become the prior's "
            f"{big[0]}x{big[1]} pixels{size(out)}")
    if aspect > MAX_ASPECT:
        hint = "wrong --axis?" if axis is not None else "are the input pixels not square?"
        raise ProblemError(f"{what}: {aspect:.2g}:1 non-square pixels would distort the anatomy "
                           f"the prior sees ({hint}); pad or crop the input to a square field "
                           "of view, or give it as NIfTI with its voxel sizes")
    if aspect > WARN_ASPECT:
        import warnings

        warnings.warn(f"{what}: the prior sees anatomy stretched {aspect:.2g}:1 (it was trained "
                      "on square pixels); pad the input to a square field of view for better "
                      "results", GeometryWarning, stacklevel=3)


def _grid(hw: tuple[int, int], s: int, ndim: int, axis: int | None) -> tuple[int, ...]:
    if ndim == 2:
        return tuple(hw)
    shape = list(hw)
    shape.insert(axis, s)  # type: ignore[arg-type]
    return tuple(shape)



def _estimated_scale(kspace: np.ndarray, op: LinearOperator) -> float:
    """Robust scale of the zero-filled images ``|A^+ y|`` (when the file carries none)."""
    y = torch.from_numpy(kspace.astype(np.complex64))
    if not op.makes_complex():
        y = y.real
    return robust_scale(op.pinv(y).abs())
