"""Metrics compare voxels by index: evaluate and solve --reference refuse images on other grids.

Also: a 4D reference beside a measurement-file input (``--frame`` picks its volume).
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from cli_assertions import assert_one_line_error

from tests.cli.conftest import AFFINE, blob_volume

FAST = ("--steps", "2", "--samples", "1", "--quiet")
HR_AFFINE = np.diag([1.5, 1.5, 3.0, 1.0])


def _nifti(path, data, affine, unit=None, sform=True, qform=True):
    img = nib.Nifti1Image(np.asarray(data, np.float32), affine)
    img.set_sform(affine if sform else None, code=1 if sform else 0)
    img.set_qform(affine if qform else None, code=1 if qform else 0)
    if unit is not None:
        img.header.set_xyzt_units(xyz=unit)
    nib.save(img, path)
    return path




def _shifted(dx):
    a = HR_AFFINE.copy()
    a[0, 3] += dx
    return a


@pytest.mark.parametrize(("affine", "distance", "what"), [
    (np.diag([-1.5, -1.5, 3.0, 1.0]), "63.6 mm", "different orientation"),  # mirrored x and y
    (np.diag([2.0, 2.0, 3.0, 1.0]), "10.6 mm", "voxel size 2x2x3 vs 1.5x1.5x3 mm"),
    (_shifted(3.0), "3 mm", "shifted origin"),
    (_shifted(0.01), "0.01 mm", "shifted origin"),  # a hundredth of a mm is not rounding
])
def test_evaluate_refuses_a_copy_on_another_grid(run, tmp_path, affine, distance, what):
    data = blob_volume()
    ref = _nifti(tmp_path / "hr.nii.gz", data, HR_AFFINE)
    rec = _nifti(tmp_path / "recon.nii.gz", data, affine)  # the same voxels, elsewhere
    r = run("evaluate", "--reference", ref, "--recon", rec, "--json")
    assert_one_line_error(r, f"reconstruction {rec} and reference {ref} are on different grids",
                    f"voxel centres up to {distance} apart: {what}", "--ignore-geometry")
    r = run("evaluate", "--reference", ref, "--recon", rec, "--json", "--ignore-geometry")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["psnr"] == "inf"


def test_evaluate_refuses_a_mask_on_another_grid(run, tmp_path):
    data = blob_volume()
    ref = _nifti(tmp_path / "hr.nii.gz", data, HR_AFFINE)
    mask = _nifti(tmp_path / "mask.nii.gz", data > 50, np.diag([-1.5, -1.5, 3.0, 1.0]))
    r = run("evaluate", "--reference", ref, "--recon", ref, "--mask", mask)
    assert_one_line_error(r, f"mask {mask} and reference {ref} are on different grids")
    r = run("evaluate", "--reference", ref, "--recon", ref, "--mask", mask, "--ignore-geometry")
    assert r.exit_code == 0, r.output


def test_evaluate_accepts_the_same_grid_stored_differently(run, tmp_path):
    """float32 rounding, qform vs sform and the spatial unit do not make a grid different."""
    data = blob_volume()
    oblique = np.array([[1.1 * np.cos(0.3), -1.1 * np.sin(0.3), 0, -123.456789],
                        [1.1 * np.sin(0.3), 1.1 * np.cos(0.3), 0, 87.654321],
                        [0, 0, 2.7, -33.333333], [0, 0, 0, 1]])
    ref = _nifti(tmp_path / "ref.nii", data, oblique, sform=True, qform=False)
    for name, kwargs in [("q.nii", dict(sform=False, qform=True)), ("s.nii.gz", {})]:
        rec = _nifti(tmp_path / name, data, oblique, **kwargs)
        r = run("evaluate", "--reference", ref, "--recon", rec, "--json")
        assert r.exit_code == 0, r.output
    metres = oblique.copy()
    metres[:3] /= 1000
    rec = _nifti(tmp_path / "metres.nii", data, metres, unit="meter")
    r = run("evaluate", "--reference", ref, "--recon", rec, "--json")
    assert r.exit_code == 0, r.output
    rec = _nifti(tmp_path / "micron.nii", data, oblique, unit="micron")  # same numbers, 1000x
    assert_one_line_error(run("evaluate", "--reference", ref, "--recon", rec), "different grids")


def test_files_without_an_affine_are_compared_by_shape(run, tmp_path):
    data = blob_volume()
    ref = _nifti(tmp_path / "hr.nii.gz", data, np.diag([-1.5, 1.5, 3.0, 1.0]))
    rec = tmp_path / "recon.npy"
    np.save(rec, data)
    for a, b in ((ref, rec), (rec, ref)):
        r = run("evaluate", "--reference", a, "--recon", b, "--json")
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["psnr"] == "inf"


def test_documented_workflow_passes_the_check(run, tiny_prior, tmp_path):
    """simulate -> solve meas.npz --reference -> evaluate, and solve on the low-resolution image;
    with an oblique, off-centre affine so that the output's affine goes through arithmetic."""
    affine = AFFINE.copy()
    affine[:3, 3] = (-117.3, 93.1, 41.7)
    hr = _nifti(tmp_path / "hr.nii.gz", blob_volume(), affine)
    meas, lr = tmp_path / "meas.npz", tmp_path / "lr.nii.gz"
    r = run("simulate", hr, "--operator", "kcrop:8x6", "--out", meas, "--lowres-out", lr)
    assert r.exit_code == 0, r.output
    for source, out in ((meas, "recon.nii.gz"), (lr, "from-lr.nii.gz")):
        r = run("solve", source, "--prior", tiny_prior, "--reference", hr,
                "--out", tmp_path / out, *FAST)
        assert r.exit_code == 0, r.output
        manifest = json.loads((tmp_path / f"{out}.manifest.json").read_text())
        assert manifest["reference"]["ignore_geometry"] is False
        r = run("evaluate", "--reference", hr, "--recon", tmp_path / out, "--json")
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["psnr"] == pytest.approx(
            manifest["metrics"]["all_voxels"]["psnr"])


def test_solve_refuses_a_reference_on_another_grid_before_solving(run, tiny_prior, hr_nifti,
                                                                  tmp_path):
    meas = tmp_path / "meas.npz"
    assert run("simulate", hr_nifti, "--operator", "kcrop:8", "--out", meas).exit_code == 0
    mirrored = AFFINE @ np.diag([-1.0, 1.0, 1.0, 1.0])
    ref = _nifti(tmp_path / "mirrored.nii.gz", nib.load(hr_nifti).get_fdata(), mirrored)
    out = tmp_path / "recon.nii.gz"
    r = run("solve", meas, "--prior", tiny_prior, "--reference", ref, "--out", out, *FAST)
    assert_one_line_error(r, f"the reconstruction of {meas} and reference {ref} are on different "
                       "grids", "--ignore-geometry")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hr.nii.gz", "meas.npz",
                                                          "mirrored.nii.gz"]
    r = run("solve", meas, "--prior", tiny_prior, "--reference", ref, "--out", out,
            "--ignore-geometry", *FAST)
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "recon.nii.gz.manifest.json").read_text())
    assert manifest["reference"]["ignore_geometry"] is True and manifest["metrics"]
    # a re-run from the manifest repeats the choice instead of failing on it
    r = run("solve", "--manifest", tmp_path / "recon.nii.gz.manifest.json",
            "--out", tmp_path / "again.nii.gz", "--quiet")
    assert r.exit_code == 0, r.output
    again = json.loads((tmp_path / "again.nii.gz.manifest.json").read_text())
    assert again["metrics"] == manifest["metrics"]


def test_frame_picks_the_volume_of_a_4d_reference_for_a_measurement(run, tiny_prior, tmp_path):
    hr = blob_volume()
    hr4d = _nifti(tmp_path / "hr4d.nii.gz", np.stack([hr, 3 * hr[::-1]], axis=-1), AFFINE)
    meas = tmp_path / "meas.npz"
    r = run("simulate", hr4d, "--frame", "1", "--operator", "kcrop:8", "--out", meas)
    assert r.exit_code == 0, r.output
    r = run("solve", meas, "--prior", tiny_prior, "--reference", hr4d,
            "--out", tmp_path / "x.nii.gz", *FAST)
    assert_one_line_error(r, "choose a volume with --frame")
    psnr = {}
    for frame in ("0", "1"):
        out = tmp_path / f"f{frame}.nii.gz"
        r = run("solve", meas, "--prior", tiny_prior, "--reference", hr4d, "--frame", frame,
                "--out", out, *FAST)
        assert r.exit_code == 0, r.output
        manifest = json.loads((tmp_path / f"f{frame}.nii.gz.manifest.json").read_text())
        assert manifest["config"]["frame"] == int(frame)
        psnr[frame] = manifest["metrics"]["all_voxels"]["psnr"]
    assert psnr["1"] > psnr["0"] + 10  # measured against the volume the data came from
    r = run("evaluate", "--reference", hr4d, "--recon", tmp_path / "f1.nii.gz", "--frame", "1",
            "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["psnr"] == pytest.approx(psnr["1"])
    # the manifest records the frame: a re-run measures against the same volume
    r = run("solve", "--manifest", tmp_path / "f1.nii.gz.manifest.json",
            "--out", tmp_path / "again.nii.gz", "--quiet")
    assert r.exit_code == 0, r.output
    again = json.loads((tmp_path / "again.nii.gz.manifest.json").read_text())
    assert again["metrics"]["all_voxels"]["psnr"] == psnr["1"]
    # --frame with a measurement picks the reference's volume: pointless for a 3D reference,
    # and without a reference it has nothing to pick
    ref3d = _nifti(tmp_path / "hr3d.nii.gz", hr, AFFINE)
    r = run("solve", meas, "--prior", tiny_prior, "--reference", ref3d, "--frame", "1",
            "--out", tmp_path / "y.nii.gz", *FAST)
    assert_one_line_error(r, str(ref3d), "--frame given but the input is 3D")
    r = run("solve", meas, "--prior", tiny_prior, "--frame", "1", "--out", tmp_path / "z.nii.gz",
            *FAST)
    assert_one_line_error(r, "or of a 4D --reference")
    # the recorded set-up applied to another measurement (docs/formats.md): the recorded frame
    # belonged to the recorded reference, which the new input does not inherit
    r = run("solve", meas, "--manifest", tmp_path / "f1.nii.gz.manifest.json",
            "--out", tmp_path / "other.nii.gz", "--quiet")
    assert r.exit_code == 0, r.output
    other = json.loads((tmp_path / "other.nii.gz.manifest.json").read_text())
    assert other["config"].get("frame") is None and other["metrics"] is None


def test_tolerance_ignores_the_thickness_of_a_single_slice():
    """A 2D/single-slice NIfTI may store slice thickness 0: the tolerance comes from the in-plane
    voxels (0.1% of 1 mm), not from that zero."""
    from invdiff.pipeline.evaluate import check_same_grid

    a = np.diag([1.0, 1.0, 0.0, 1.0])
    b = a.copy()
    b[0, 3] = 5e-4  # half the tolerance
    check_same_grid((a, "mm", "a"), (b, "mm", "b"), (4, 4, 1))
    b[0, 3] = 2e-3
    with pytest.raises(ValueError, match="different grids"):
        check_same_grid((a, "mm", "a"), (b, "mm", "b"), (4, 4, 1))
