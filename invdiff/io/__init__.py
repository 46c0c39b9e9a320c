"""Files in and out: images and volumes, measurement files, geometry, safe writes."""

from invdiff.io.atomic import (
    OutputExistsError,
    OutputIsInputError,
    atomic_outputs,
    atomic_path,
    check_outputs,
    write_atomic,
)
from invdiff.io.geometry import from_slices, resampled_affine, to_slices
from invdiff.io.images import Image, ImageError, image_kind, read_image, write_image
from invdiff.io.measurement import (
    Measurement,
    MeasurementError,
    is_measurement_file,
    kspace_to_lowres,
    lowres_to_kspace,
    read_measurement,
    write_measurement,
)

__all__ = [
    "Image",
    "ImageError",
    "Measurement",
    "MeasurementError",
    "OutputExistsError",
    "OutputIsInputError",
    "atomic_outputs",
    "atomic_path",
    "check_outputs",
    "from_slices",
    "image_kind",
    "is_measurement_file",
    "kspace_to_lowres",
    "lowres_to_kspace",
    "read_image",
    "read_measurement",
    "resampled_affine",
    "to_slices",
    "write_atomic",
    "write_image",
    "write_measurement",
]
