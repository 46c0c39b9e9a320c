"""Image and measurement files, safe writes, and resampled-grid geometry."""

from __future__ import annotations

import dataclasses
import os
import stat
import warnings

import nibabel as nib
import numpy as np
import pytest

from invdiff.io import (
    ImageError,
    Measurement,
    MeasurementError,
    OutputExistsError,
    OutputIsInputError,
    atomic_outputs,
    atomic_path,
    check_outputs,
    from_slices,
    kspace_to_lowres,
    lowres_to_kspace,
    read_image,
    read_measurement,
    resampled_affine,
    to_slices,
    write_image,
    write_measurement,
)
from invdiff.io.measurement import centred_fft2


def _affine() -> np.ndarray:
    return np.array(
        [[0.0, -1.2, 0.1, 30.0], [0.9, 0.0, 0.0, -20.0], [0.0, 0.2, 2.5, 5.0], [0, 0, 0, 1]]
    )


@pytest.mark.parametrize("name", ["v.nii.gz", "v.nii", "v.npy"])
def test_volume_round_trip(tmp_path, name):
    data = np.random.default_rng(0).random((6, 5, 3)).astype(np.float32) + 0.1
    write_image(tmp_path / name, data, _affine())
    img = read_image(tmp_path / name)
    np.testing.assert_array_equal(img.data, data)
    if name.startswith("v.nii"):
        np.testing.assert_allclose(img.affine, _affine(), atol=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left


def test_png_round_trip_is_scaled_16_bit(tmp_path):
    data = np.arange(20, dtype=np.float32).reshape(4, 5) + 1
    write_image(tmp_path / "a.png", data)
    back = read_image(tmp_path / "a.png").data
    np.testing.assert_allclose(back / 65535 * data.max(), data, atol=data.max() / 65535)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (np.zeros((4, 4, 3)), "all zero"),
        (np.full((4, 4), np.nan), "NaN or Inf"),
        (np.ones((4, 4, 3, 2)), "choose a volume with --frame"),
        (np.ones((4, 4), dtype=np.complex64), "complex"),
        (np.ones(5), "2D or 3D"),
        (np.ones((4, 1)), "too small"),
        (np.ones((4, 1, 1)), "too small"),
    ],
)
def test_bad_images_are_refused(tmp_path, data, message):
    np.save(tmp_path / "x.npy", data)
    with pytest.raises(ImageError, match=message):
        read_image(tmp_path / "x.npy")


def test_4d_frame_and_trailing_singleton(tmp_path):
    data = np.random.default_rng(1).random((4, 4, 3, 2)) + 1
    np.save(tmp_path / "x.npy", data)
    np.testing.assert_array_equal(read_image(tmp_path / "x.npy", frame=1).data, data[..., 1])
    np.save(tmp_path / "y.npy", data[..., :1])
    assert read_image(tmp_path / "y.npy").data.shape == (4, 4, 3)


def test_non_nifti_bytes_are_refused(tmp_path):
    (tmp_path / "bad.nii.gz").write_bytes(b"not an image")
    with pytest.raises(ImageError, match="not a readable NIfTI"):
        read_image(tmp_path / "bad.nii.gz")


def test_missing_input():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_image("/nonexistent/x.nii.gz")


def test_check_outputs(tmp_path):
    src = tmp_path / "in.npy"
    src.write_bytes(b"x")
    with pytest.raises(OutputIsInputError):
        check_outputs([tmp_path / "." / "in.npy"], [src], overwrite=True)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        check_outputs([src], [], overwrite=False)
    check_outputs([src], [], overwrite=True)


def test_outputs_that_cannot_be_written_are_refused_before_any_work(tmp_path, monkeypatch):
    (tmp_path / "taken.nii.gz").mkdir()
    with pytest.raises(IsADirectoryError, match="taken.nii.gz is a folder"):
        check_outputs([tmp_path / "taken.nii.gz"], [], overwrite=True)
    import invdiff.io.atomic as atomic

    def refuse(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)  # what a read-only folder does
    with pytest.raises(PermissionError, match=f"cannot write to output folder {tmp_path}"):
        check_outputs([tmp_path / "out.nii.gz"], [], overwrite=False)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes to read-only folders")
def test_read_only_folder_is_refused(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match="cannot write to output folder"):
            check_outputs([folder / "out.nii.gz"], [], overwrite=False)
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("name", ["UP.NII.GZ", "UP.NII", "UP.NPY"])
def test_upper_case_suffixes_are_written_in_their_format(tmp_path, name):
    data = np.arange(20, dtype=np.float32).reshape(4, 5)
    write_image(tmp_path / name, data)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left
    np.testing.assert_array_equal(read_image(tmp_path / name).data, data)
    if name.lower().endswith(".gz"):
        assert (tmp_path / name).read_bytes()[:2] == b"\x1f\x8b"  # gzip, as the name says


def test_nifti_without_geometry_round_trips_as_none(tmp_path):
    """An image without an affine is written with qform/sform codes 0 and read back as None (a
    made-up identity would be compared with real grids); so is anyone's code-0 NIfTI."""
    write_image(tmp_path / "g.nii.gz", np.ones((4, 5, 2), np.float32))
    header = nib.load(tmp_path / "g.nii.gz").header
    assert int(header["qform_code"]) == 0 and int(header["sform_code"]) == 0
    assert read_image(tmp_path / "g.nii.gz").affine is None
    write_image(tmp_path / "a.nii.gz", np.ones((4, 5, 2), np.float32), _affine())
    assert read_image(tmp_path / "a.nii.gz").affine is not None


def test_nifti_without_geometry_but_unequal_voxel_sizes_says_they_are_ignored(tmp_path):
    """Codes 0 with pixdim 1x1x3: the sizes are ignored (cubes), and the reader says so once;
    equal sizes (what write_image writes without an affine) stay quiet."""
    from invdiff.io.images import UndeclaredGeometryWarning

    img = nib.Nifti1Image(np.ones((4, 5, 2), np.float32), np.diag([1.0, 1.0, 3.0, 1.0]))
    img.set_sform(None, code=0)
    img.set_qform(None, code=0)
    nib.save(img, tmp_path / "z.nii.gz")
    with pytest.warns(UndeclaredGeometryWarning, match=r"voxel sizes 1x1x3 \(pixdim\) are ignored"):
        assert read_image(tmp_path / "z.nii.gz").affine is None
    write_image(tmp_path / "g.nii.gz", np.ones((4, 5, 2), np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_image(tmp_path / "g.nii.gz")


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.npy"
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_outputs_get_the_permissions_of_a_new_file(tmp_path, umask):
    # mkstemp alone makes 0600 files that other users (and their viewers) cannot read
    old = os.umask(umask)
    try:
        write_image(tmp_path / "v.nii.gz", np.ones((4, 5), np.float32))
        write_measurement(tmp_path / "m.npz", Measurement(
            kspace=np.ones((1, 2, 2), np.complex64), operator="kcrop:2", image_shape=(4, 4)))
        with atomic_outputs([tmp_path / "a.npy"]) as (tmp,):
            np.save(tmp, np.ones(2))
    finally:
        os.umask(old)
    for name in ("v.nii.gz", "m.npz", "a.npy"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name


def test_measurement_round_trip(tmp_path):
    k = (np.random.default_rng(2).standard_normal((3, 4, 4)) * (1 + 1j)).astype(np.complex64)
    m = Measurement(k, "kcrop:4", (8, 8), 0.5, 3.0, (8, 8, 3), _affine(), 2, "micron")
    write_measurement(tmp_path / "m.npz", m)
    back = read_measurement(tmp_path / "m.npz")
    np.testing.assert_array_equal(back.kspace, k)
    assert (back.operator, back.image_shape, back.noise_sigma, back.scale, back.axis,
            back.source_unit) == ("kcrop:4", (8, 8), 0.5, 3.0, 2, "micron")
    np.testing.assert_array_equal(back.source_affine, _affine())
    bare = Measurement(k, "kcrop:4", (8, 8))
    write_measurement(tmp_path / "b.npz", bare)
    back = read_measurement(tmp_path / "b.npz")
    assert back.scale is None and back.source_affine is None and back.axis is None
    assert back.source_unit is None
    assert "source_unit" not in np.load(tmp_path / "b.npz").files  # older readers refuse it
    assert back.source_space is None and "source_space" not in np.load(tmp_path / "b.npz").files
    for space, stored in ((4, True), (1, False)):  # scanner (1) is the default: not written
        write_measurement(tmp_path / "s.npz", dataclasses.replace(m, source_space=space))
        assert read_measurement(tmp_path / "s.npz").source_space == space
        assert ("source_space" in np.load(tmp_path / "s.npz").files) == stored
    with pytest.raises(MeasurementError, match="source_space must be a NIfTI xform code"):
        write_measurement(tmp_path / "bad.npz", dataclasses.replace(m, source_space=9))
    for affine in (None, np.full((4, 4), np.nan)):  # no affine, or the NaN-filled "none"
        with pytest.raises(MeasurementError, match="source_space 4 needs source_affine"):
            write_measurement(tmp_path / "bad.npz", dataclasses.replace(
                m, source_affine=affine, source_space=4))
    assert not (tmp_path / "bad.npz").exists()


def test_measurement_with_unknown_key_is_refused(tmp_path):
    np.savez(tmp_path / "m.npz", format="invdiff.measurement", version=1, operator="kcrop:2",
             image_shape=[4, 4], kspace=np.ones((1, 2, 2), np.complex64), extra=1)
    with pytest.raises(MeasurementError, match="unknown key"):
        read_measurement(tmp_path / "m.npz")


@pytest.mark.parametrize(("big", "small"), [((16, 16), (4, 4)), ((15, 12), (6, 5))])
def test_lowres_convention_keeps_intensity(big, small):
    """A constant image keeps its value; lowres_to_kspace inverts kspace_to_lowres exactly."""
    x = np.full(big, 3.0)
    k = centred_fft2(x)
    h0, w0 = big[0] // 2 - small[0] // 2, big[1] // 2 - small[1] // 2
    y = k[h0:h0 + small[0], w0:w0 + small[1]]
    lowres = kspace_to_lowres(y, big)
    np.testing.assert_allclose(lowres, 3.0, atol=1e-12)
    np.testing.assert_allclose(lowres_to_kspace(lowres, big), y, atol=1e-12)


def test_resampled_affine_keeps_centre_orientation_and_fov():
    a = _affine()
    old, new = (128, 96, 7), (32, 24, 7)
    b = resampled_affine(a, old, new)
    centre = lambda aff, shape: aff @ np.array([shape[0] // 2, shape[1] // 2, 3, 1.0])  # noqa: E731
    np.testing.assert_allclose(centre(a, old), centre(b, new), atol=1e-12)
    np.testing.assert_allclose(b[:3, :2], a[:3, :2] * 4, atol=1e-12)  # voxel size x4
    np.testing.assert_allclose(b[:3, 2], a[:3, 2])  # slice axis untouched
    np.testing.assert_allclose(resampled_affine(b, new, old), a, atol=1e-12)  # exact inverse


def test_resampled_affine_matches_the_fft_resampling():
    """A blob resampled by k-space crop sits at the same world position on the new grid."""
    n, m = 64, 16
    i = np.arange(n)
    xx, yy = np.meshgrid(i, i, indexing="ij")
    blob = np.exp(-((xx - 37.0) ** 2 + (yy - 21.0) ** 2) / (2 * 6.0**2))
    y = centred_fft2(blob)[n // 2 - m // 2:n // 2 + m // 2, n // 2 - m // 2:n // 2 + m // 2]
    low = np.abs(kspace_to_lowres(y, (n, n)))
    j = np.arange(m)
    centroid = [float((low.sum(1 - d) * j).sum() / low.sum()) for d in (0, 1)]
    a = np.diag([1.0, 1.0, 1.0, 1.0])
    b = resampled_affine(a, (n, n, 1), (m, m, 1))
    world = b @ np.array([*centroid, 0, 1])
    np.testing.assert_allclose(world[:2], [37.0, 21.0], atol=0.05)


def test_slices_round_trip():
    v = np.arange(60).reshape(3, 4, 5)
    for axis in (0, 1, 2):
        s = to_slices(v, axis)
        assert s.shape[0] == v.shape[axis]
        np.testing.assert_array_equal(from_slices(s, 3, axis), v)
        np.testing.assert_array_equal(from_slices(np.stack([s, s]), 3, axis)[1], v)
    np.testing.assert_array_equal(from_slices(to_slices(v[0], None), 2, None), v[0])


@pytest.mark.parametrize(("code", "unit"), [(0, None), (2, "mm"), (1 + 8, "meter"), (3, "micron"),
                                            (4, None), (7, None), (58, "mm"), (72, None)])
def test_nifti_spatial_unit_codes_never_make_an_image_unreadable(tmp_path, code, unit):
    """Codes nibabel cannot name (4, 7, 72: its get_xyzt_units raises) read as unknown."""
    img = nib.Nifti1Image(np.ones((4, 4, 2), np.float32), np.eye(4))
    img.header["xyzt_units"] = code
    nib.save(img, tmp_path / "u.nii")
    assert read_image(tmp_path / "u.nii").spatial_unit == unit


def test_unknown_spatial_units_are_refused_on_writing(tmp_path):
    with pytest.raises(ValueError, match="spatial unit must be one of"):
        write_image(tmp_path / "a.nii", np.ones((4, 4), np.float32), spatial_unit="inch")
    m = Measurement(np.ones((1, 2, 2), np.complex64), "kcrop:2", (4, 4), source_unit="inch")
    with pytest.raises(ValueError, match="spatial unit must be one of"):
        write_measurement(tmp_path / "m.npz", m)
    assert not (tmp_path / "a.nii").exists() and not (tmp_path / "m.npz").exists()


def test_nifti_header_is_image(tmp_path):
    img = nib.Nifti1Image(np.ones((4, 4, 2), np.float32), np.eye(4))
    nib.save(img, tmp_path / "ok.nii")
    assert read_image(tmp_path / "ok.nii").data.shape == (4, 4, 2)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("image_shape", np.array([16.5, 16]), "image_shape must be a list of integers"),
    ("operator", np.array(["kcrop:4", "fft"]), "operator must be a string"),
    ("noise_sigma", np.array([0.1, 0.2]), "noise_sigma must be a real number"),
    ("axis", np.array(1.5), "axis must be an integer"),
    ("version", np.array("1"), "version must be an integer"),
    ("source_unit", np.array("inch"), "source_unit must be one of"),
    ("source_space", np.array(7), "source_space must be a NIfTI xform code 1-5"),
    ("source_space", np.array(4), "source_space needs source_affine"),
])
def test_measurement_fields_of_the_wrong_kind(tmp_path, key, value, message):
    # 16.5 was truncated to 16 and an operator array became the spec "['kcrop:4' 'fft']"
    arrays = {"format": "invdiff.measurement", "version": 1, "operator": "kcrop:4",
              "kspace": np.ones((1, 4, 4), np.complex64), "image_shape": [16, 16], key: value}
    np.savez(tmp_path / "m.npz", **arrays)
    with pytest.raises(MeasurementError, match=message):
        read_measurement(tmp_path / "m.npz")


def test_measurement_space_code_with_a_nan_filled_affine_is_refused(tmp_path):
    """All-NaN source_affine means "no affine", so a source_space beside it labels nothing."""
    np.savez(tmp_path / "m.npz", format="invdiff.measurement", version=1, operator="kcrop:4",
             kspace=np.ones((1, 4, 4), np.complex64), image_shape=[16, 16],
             source_shape=[16, 16], source_affine=np.full((4, 4), np.nan), source_space=4)
    with pytest.raises(MeasurementError, match="source_space needs source_affine"):
        read_measurement(tmp_path / "m.npz")


_SLAB = {"source_shape": [16, 16, 1], "axis": 2}


@pytest.mark.parametrize(("fields", "message"), [
    ({"scale": np.inf}, "scale must be finite and > 0"),
    ({"scale": -2.0}, "scale must be finite and > 0"),
    ({"source_affine": np.eye(3)}, "source_affine must be a 4x4 real array"),
    ({"source_affine": np.zeros((4, 4))}, "not a voxel-to-world affine"),
    ({"source_affine": np.diag([np.nan, 1.0, 1.0, 1.0])}, "source_affine has NaN/Inf entries"),
    ({"source_shape": [16, 16, 1, 1], "axis": 2}, "source_shape must be 2 or 3 positive sizes"),
    ({"source_affine": np.eye(4)}, "source_affine needs source_shape"),
    ({"source_shape": [16, 16, 1], "axis": 5}, "axis must be 0, 1 or 2 for a 3D source_shape"),
    ({**_SLAB, "axis": -1}, "axis must be 0, 1 or 2"),
])
def test_inconsistent_measurement_fields_are_refused(tmp_path, fields, message):
    arrays = {"format": "invdiff.measurement", "version": 1, "operator": "kcrop:4",
              "kspace": np.ones((1, 4, 4), np.complex64), "image_shape": [16, 16], **fields}
    np.savez(tmp_path / "m.npz", **arrays)
    with pytest.raises(MeasurementError, match=message):
        read_measurement(tmp_path / "m.npz")


def test_garbage_measurement_file_is_named_without_numpy_pickle_hints(tmp_path):
    (tmp_path / "m.npz").write_bytes(b"definitely not a zip archive")
    with pytest.raises(MeasurementError, match="not an .npz file") as err:
        read_measurement(tmp_path / "m.npz")
    assert "pickle" not in str(err.value)


def test_unknown_scale_and_affine_markers_still_read(tmp_path):
    arrays = {"format": "invdiff.measurement", "version": 1, "operator": "kcrop:4",
              "kspace": np.ones((1, 4, 4), np.complex64), "image_shape": [16, 16],
              "scale": np.nan, "source_affine": np.full((4, 4), np.nan), **_SLAB}
    np.savez(tmp_path / "m.npz", **arrays)
    m = read_measurement(tmp_path / "m.npz")
    assert m.scale is None and m.source_affine is None and m.axis == 2


def test_palette_png_is_read_as_grey_values(tmp_path):
    from PIL import Image as PILImage

    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    palette = np.zeros(768, np.uint8)
    order = np.arange(256)[::-1]  # palette index k holds grey 255 - k, so indices != intensities
    palette[0::3] = palette[1::3] = palette[2::3] = order
    im = PILImage.fromarray((255 - grey).astype(np.uint8), mode="P")
    im.putpalette(palette.tolist())
    im.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_image(tmp_path / "p.png").data, grey)


def test_an_interruption_between_renames_leaves_no_stale_record(tmp_path, monkeypatch):
    """--overwrite over an earlier run: a crash after the first rename must not leave the old
    manifest describing the new image."""
    image, record = tmp_path / "a.npy", tmp_path / "a.npy.manifest.json"
    image.write_bytes(b"old image")
    record.write_bytes(b"old record")
    real_replace = os.replace
    calls = []

    def replace_then_die(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt), atomic_outputs([image, record],
                                                          last_is_record=True) as (t1, t2):
        t1.write_bytes(b"new image")
        t2.write_bytes(b"new record")
    assert image.read_bytes() == b"new image"
    assert not record.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]  # no temporary left
