"""`invdiff resample`: square field of view, N x N slices, world positions kept."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from cli_assertions import assert_one_line_error

from invdiff.io import Image, read_image
from invdiff.operators import from_spec
from invdiff.pipeline.resample import (
    METHODS,
    resample_image,
    resample_slices,
    square_fov_padding,
)


def _blob(shape, centre, width=3.0) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    r2 = sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True))
    return 100.0 * np.exp(-r2 / (2 * width**2))


def _world_centroid(data: np.ndarray, affine: np.ndarray, k: int) -> np.ndarray:
    """World position of the centroid of slice ``k`` of a 3D volume (last axis)."""
    w = np.clip(data[..., k], 0, None) ** 2  # squared: the ringing tails weigh little
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in w.shape], indexing="ij")
    voxel = np.array([(g * w).sum() / w.sum() for g in grids] + [k, 1.0])
    return (affine @ voxel)[:3]


def test_padding_makes_the_field_of_view_square_in_world_units():
    assert square_fov_padding((197, 233), (1.0, 1.0)) == [(18, 18), (0, 0)]
    assert square_fov_padding((100, 200), (2.0, 1.0)) == [(0, 0), (0, 0)]  # 200 mm both
    assert square_fov_padding((100, 150), (2.0, 1.0)) == [(0, 0), (25, 25)]
    assert square_fov_padding((91, 109), (2.0, 2.0)) == [(9, 9), (0, 0)]
    assert square_fov_padding((90, 109), (2.0, 2.0)) == [(9, 10), (0, 0)]  # odd one after


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("size", [(24, 24), (64, 64)])
def test_a_constant_image_stays_constant(method, size):
    out = resample_slices(np.full((2, 40, 40), 7.5), size, method)
    assert out.shape == (2, *size)
    np.testing.assert_allclose(out, 7.5, rtol=1e-6)


def test_fourier_shrinking_keeps_the_central_kspace_the_operator_measures():
    """kcrop:16 of the 32x32 result is kcrop:16 of the 45x45 source (same field of view; the
    orthonormal FFT of the smaller grid carries the factor 32/45)."""
    rng = np.random.default_rng(0)
    src = 50 + rng.random((1, 45, 45))  # positive: nothing to clip
    out = resample_slices(src, (32, 32), "fourier")
    y_out = from_spec("kcrop:16", (32, 32))(torch.from_numpy(out)[None])
    y_src = from_spec("kcrop:16", (45, 45))(torch.from_numpy(src)[None])
    torch.testing.assert_close(y_out, y_src * (32 / 45), rtol=1e-9, atol=1e-9)


def test_ringing_below_zero_is_clipped_but_negative_sources_are_not():
    edge = np.zeros((1, 64, 64))
    edge[:, 16:48, 16:48] = 100.0  # a sharp square rings when shrunk in k-space
    assert resample_slices(edge, (24, 24), "fourier").min() == 0.0
    shifted = resample_slices(edge - 5.0, (24, 24), "fourier")
    assert shifted.min() >= -5.0 - 1e-9 and shifted.min() == -5.0


@pytest.mark.parametrize("method", METHODS)
def test_world_positions_are_kept_with_anisotropic_voxels(method):
    """A blob lies at the same world position before and after, on a square-pixel result."""
    affine = np.array([[0.0, -1.5, 0.0, 20.0], [0.9, 0.0, 0.0, -11.0],
                       [0.0, 0.0, 3.0, 4.5], [0, 0, 0, 1.0]])
    shape = (70, 40, 3)  # in-plane field of view 63 x 60 (units of the affine)
    data = np.stack([_blob(shape[:2], (31.0, 22.5), width=4.0)] * 3, axis=-1)
    result = resample_image(Image(data, affine, "nifti", "mm"), 48, axis=2, method=method)
    out = result.image
    assert out.data.shape == (48, 48, 3) and out.data.dtype == np.float32
    sizes = np.linalg.norm(out.affine[:3, :3], axis=0)
    assert abs(sizes[0] - sizes[1]) < 0.02 * sizes[0] and sizes[2] == pytest.approx(3.0)
    assert result.pixel_size == pytest.approx(tuple(sizes[:2]))
    before = _world_centroid(data, affine, 1)
    after = _world_centroid(out.data, out.affine, 1)
    np.testing.assert_allclose(after, before, atol=0.05 * sizes[0])


def test_the_slice_axis_is_kept(tmp_path):
    data = np.stack([_blob((30, 50), (14.0, 25.0)) + k for k in range(5)], axis=0)
    r = resample_image(Image(data, np.eye(4)), 32, axis=0)
    assert r.image.data.shape == (5, 32, 32) and r.axis == 0
    assert r.padded_shape == (50, 50)
    assert [float(s.mean() > r.image.data[0].mean()) for s in r.image.data[1:]] == [1.0] * 4


def test_cli_writes_a_volume_that_simulate_and_solve_accept(run, tmp_path, tiny_prior):
    """197x233-like grids are refused by solve with a hint; resampled, the chain works."""
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    vol = np.stack([_blob((20, 26), (9.5, 13.0), width=5.0) + 5] * 2, axis=-1)
    src = tmp_path / "hr.nii.gz"
    nib.save(nib.Nifti1Image(vol.astype(np.float32), affine), src)

    r = run("simulate", src, "--operator", "kcrop:8", "--out", tmp_path / "raw.npz")
    assert r.exit_code == 0, r.output
    assert "note: the default prior models 128x128 slices" in r.stderr
    assert "invdiff resample" in r.stderr
    r = run("solve", tmp_path / "raw.npz", "--prior", tiny_prior, "--out", tmp_path / "x.nii.gz")
    assert_one_line_error(r, "16x16", "invdiff resample HR --size 16")

    r = run("resample", src, "--out", tmp_path / "hr16.nii.gz", "--size", "16")
    assert r.exit_code == 0, r.output
    assert "2 slice(s) of 16x16 (fourier), padded to 26x26" in r.output
    hr16 = read_image(tmp_path / "hr16.nii.gz")
    assert hr16.data.shape == (16, 16, 2) and hr16.spatial_unit is None
    np.testing.assert_allclose(np.diag(hr16.affine)[:3], [26 / 16, 26 / 16, 2.0])
    r = run("simulate", tmp_path / "hr16.nii.gz", "--operator", "kcrop:8",
            "--out", tmp_path / "meas.npz")
    assert r.exit_code == 0, r.output  # (16x16: the default prior's note, not this prior's)
    r = run("solve", tmp_path / "meas.npz", "--prior", tiny_prior, "--steps", "2",
            "--samples", "1", "--reference", tmp_path / "hr16.nii.gz",
            "--out", tmp_path / "rec.nii.gz", "--quiet")
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "rec.nii.gz.manifest.json").read_text())
    assert manifest["output_shape"] == [16, 16, 2]


def test_cli_bad_input_is_one_line_and_writes_nothing(run, tmp_path, hr_nifti):
    out = tmp_path / "o.nii.gz"
    assert_one_line_error(run("resample", hr_nifti, "--out", out, "--method", "sinc"),
                          "method must be one of fourier, linear, cubic")
    assert_one_line_error(run("resample", hr_nifti, "--out", out, "--size", "1"),
                          "size must be an integer from 2 to 2048")
    assert_one_line_error(run("resample", hr_nifti, "--out", tmp_path / "o.txt"),
                          "unknown image format")
    assert_one_line_error(run("resample", hr_nifti, "--out", tmp_path / "o.png"),
                          "PNG holds 2D images")
    assert_one_line_error(run("resample", hr_nifti, "--out", hr_nifti), "is an input")
    assert_one_line_error(run("resample", tmp_path / "none.nii.gz", "--out", out),
                          "does not exist")
    assert not out.exists() and not (tmp_path / "o.png").exists()
    out.write_bytes(b"keep")
    assert_one_line_error(run("resample", hr_nifti, "--out", out), "exists", "--overwrite")
    assert out.read_bytes() == b"keep"
    assert run("resample", hr_nifti, "--out", out, "--overwrite", "--size", "8").exit_code == 0
    assert read_image(out).data.shape == (8, 8, 3)


@pytest.mark.parametrize("axis", [0, 2])
def test_slices_keep_their_world_positions(run, tmp_path, axis):
    """--slices 2:4 gives source slices 2 and 3, at their world positions."""
    affine = np.array([[0.0, -1.5, 0.0, 20.0], [1.5, 0.0, 0.0, -11.0],
                       [0.0, 0.0, 1.5, 4.5], [0, 0, 0, 1.0]])  # square: nothing padded
    shape = [20, 20, 20]
    vol = np.zeros(shape, np.float32)
    index = [slice(None)] * 3
    for k in range(shape[axis]):
        index[axis] = k
        vol[tuple(index)] = 10.0 + k
    src = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(vol, affine), src)
    out = tmp_path / "s.nii.gz"
    r = run("resample", src, "--out", out, "--size", "8", "--axis", axis, "--slices", "2:4")
    assert r.exit_code == 0, r.output
    got = read_image(out)
    assert got.data.shape[axis] == 2
    np.testing.assert_allclose(np.take(got.data, 0, axis=axis), 12.0, rtol=1e-5)
    np.testing.assert_allclose(np.take(got.data, 1, axis=axis), 13.0, rtol=1e-5)
    # in-plane, fourier keeps voxel n // 2 = 10 at m // 2 = 4; along the slice axis new slice
    # 0 is source slice 2
    centre_new = np.array([4.0, 4.0, 4.0, 1.0])
    centre_new[axis] = 0
    centre_old = np.array([10.0, 10.0, 10.0, 1.0])
    centre_old[axis] = 2
    np.testing.assert_allclose(got.affine @ centre_new, affine @ centre_old, atol=1e-9)


def test_bad_slices_are_one_line_errors(run, tmp_path, hr_nifti):
    out = tmp_path / "o.nii.gz"
    assert_one_line_error(run("resample", hr_nifti, "--out", out, "--slices", "2"),
                          "--slices must be START:STOP")
    assert_one_line_error(run("resample", hr_nifti, "--out", out, "--slices", "2:2"),
                          "within the volume's 3 slices along axis 2 (0:3 is all)")
    assert_one_line_error(run("resample", hr_nifti, "--out", out, "--slices", "1:9"),
                          "not a non-empty range")
    png = tmp_path / "a.npy"
    np.save(png, np.ones((6, 6), np.float32))
    assert_one_line_error(run("resample", png, "--out", out, "--slices", "0:1"),
                          "selects slices of a 3D volume")
    assert not out.exists()


def test_review_findings_are_one_line_errors(run, tmp_path, hr_nifti):
    out = tmp_path / "o.npy"
    image2d = tmp_path / "a.npy"
    np.save(image2d, np.ones((6, 6), np.float32))
    assert_one_line_error(run("resample", image2d, "--out", out, "--axis", "5"),
                          "slice axis must be 0, 1 or 2")
    assert_one_line_error(run("resample", hr_nifti, "--out", out, "--size", "9000"),
                          "from 2 to 2048")
    thin = tmp_path / "thin.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((20, 24, 1), np.float32), np.eye(4)), thin)
    assert_one_line_error(run("resample", thin, "--out", out, "--axis", "0"),
                          "24x1 voxels", "check --axis")
    assert not out.exists()


@pytest.mark.parametrize("method", METHODS)
def test_a_negative_background_is_padded_with_itself(method):
    """CT-like or offset images: padding uses the border's median, not 0 (no bright frame)."""
    data = np.full((40, 20), -1000.0)
    data[10:30, 5:15] = 40.0
    out = resample_image(Image(data), 32, method=method).image.data
    assert out[:, :4].max() < -980  # the padded band (ringing of the edge; zeros would be ~0)
    assert out.min() >= -1000.0


def test_simulate_on_the_default_prior_grid_prints_no_note(run, tmp_path):
    image = tmp_path / "x.npy"
    np.save(image, _blob((128, 128), (60.0, 64.0), width=20.0).astype(np.float32) + 1)
    r = run("simulate", image, "--operator", "kcrop:32", "--out", tmp_path / "m.npz")
    assert r.exit_code == 0, r.output
    assert "note:" not in r.stderr


def test_the_clipping_floor_is_the_whole_sources_not_a_chunks():
    """Slices are resampled 16 at a time; equal slices come out equal in every chunk."""
    square = np.zeros((20, 40, 40))
    square[:, 10:30, 10:30] = 100.0
    square[0, 0, 0] = -50.0  # the source minimum, in the first chunk only
    out = resample_image(Image(square), 24, axis=0, method="fourier").image.data
    np.testing.assert_array_equal(out[1], out[19])
    assert out.min() >= -50.0


def test_simulate_note_names_the_slice_axis(run, tmp_path):
    vol = np.stack([_blob((16, 16), (8.0, 8.0)) + 1] * 4, axis=0).astype(np.float32)
    src = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(vol, np.eye(4)), src)
    r = run("simulate", src, "--operator", "kcrop:4", "--axis", "0", "--out", tmp_path / "m.npz")
    assert r.exit_code == 0, r.output
    assert "--size 128 --axis 0 --out" in r.stderr


def test_the_sources_nifti_space_code_is_kept(run, tmp_path):
    """An MNI-space volume (sform code 4) stays labelled MNI152, not 'scanner'."""
    img = nib.Nifti1Image(np.stack([_blob((20, 20), (10.0, 10.0)) + 1] * 2, -1).astype(
        np.float32), np.diag([1.0, 1.0, 2.0, 1.0]))
    img.set_sform(img.affine, code=4)
    img.set_qform(img.affine, code=4)
    nib.save(img, tmp_path / "mni.nii.gz")
    r = run("resample", tmp_path / "mni.nii.gz", "--out", tmp_path / "o.nii.gz", "--size", "8")
    assert r.exit_code == 0, r.output
    header = nib.load(tmp_path / "o.nii.gz").header
    assert int(header["sform_code"]) == int(header["qform_code"]) == 4
    assert read_image(tmp_path / "o.nii.gz").xform_code == 4
