"""Data: npz stacks, NIfTI slicing, PNG folders, the seeded resumable batch order."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from cli_assertions import assert_one_line_error
from PIL import Image

from invdiff.training import BatchStream, DataConfig, load_image_sets
from invdiff.training.slices import _read_png, fit_square, load_file_slices


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def _ball_volume(shape=(20, 24, 12), radius=6.0) -> np.ndarray:
    idx = np.indices(shape).astype(np.float32)
    c = (np.array(shape, dtype=np.float32) - 1) / 2
    r = np.sqrt(sum((idx[i] - c[i]) ** 2 for i in range(3)))
    return np.where(r < radius, 100.0 + idx[0], 0.0).astype(np.float32)


def _nifti(path, vol, zooms=(1.0, 1.0, 1.0)):
    img = nib.Nifti1Image(vol, np.diag([*zooms, 1.0]))
    nib.save(img, str(path))
    return str(path)


# -- npz -------------------------------------------------------------------------------------------
def test_npz_train_and_val_keys(tmp_path):
    rng = np.random.default_rng(0)
    p = _npz(tmp_path / "d.npz", train=rng.uniform(-1, 1, (5, 8, 8)).astype(np.float16),
             val=rng.uniform(-1, 1, (2, 8, 8)).astype(np.float32))
    sets = load_image_sets(DataConfig(paths=(p,), image_size=8))
    assert sets.train.shape == (5, 1, 8, 8) and sets.val.shape == (2, 1, 8, 8)
    assert sets.train.dtype == torch.float16
    no_val = _npz(tmp_path / "n.npz", train=np.zeros((3, 8, 8), np.float16))
    assert len(load_image_sets(DataConfig(paths=(no_val,), image_size=8)).val) == 0


@pytest.mark.parametrize(
    ("array", "error", "match"),
    [
        (np.zeros((3, 8, 6), np.float16), ValueError, "expected \\(N, 8, 8\\)"),
        (np.full((3, 8, 8), 2.0, np.float32), ValueError, "expected \\[-1, 1\\]"),
        (np.zeros((3, 8, 8), np.uint8), TypeError, "float"),
        # refused, not nan_to_num'd or reduced to the magnitude (as invdiff solve refuses them)
        (np.array([[[np.nan]], [[0.0]], [[np.inf]]]).repeat(8, 1).repeat(8, 2).astype(np.float16),
         ValueError, r"bad.npz\['train'\]: 128 value\(s\) are NaN or Inf"),
        (np.full((3, 8, 8), 0.5 + 0.1j, np.complex64), TypeError,
         r"bad.npz\['train'\]: complex data complex64"),
    ],
)
def test_npz_bad_arrays_are_named(tmp_path, array, error, match):
    p = _npz(tmp_path / "bad.npz", train=array)
    with pytest.raises(error, match=match):
        load_image_sets(DataConfig(paths=(p,), image_size=8))


def test_npz_missing_key(tmp_path):
    p = _npz(tmp_path / "d.npz", images=np.zeros((3, 8, 8), np.float16))
    with pytest.raises(KeyError, match="no array 'train'"):
        load_image_sets(DataConfig(paths=(p,), image_size=8))


# -- NIfTI and PNG ---------------------------------------------------------------------------------
def test_nifti_slices_skip_empty_and_normalise(tmp_path):
    vol = _ball_volume()
    p = _nifti(tmp_path / "v.nii.gz", vol)
    cfg = DataConfig(paths=(p,), image_size=16, axes=(0, 1, 2), min_foreground=0.05)
    x = load_file_slices(tmp_path / "v.nii.gz", cfg)
    # slices with >= 5 % of pixels above 10 % of the robust scale, per axis
    scale = np.quantile(vol, 0.995)
    fg = [(np.moveaxis(vol, a, 0) > 0.1 * scale).reshape(vol.shape[a], -1) for a in range(3)]
    expected = sum(int((f.mean(1) >= 0.05).sum()) for f in fg)
    assert x.shape == (expected, 1, 16, 16) and 0 < expected < sum(vol.shape)
    assert x.min() == -1 and x.max() == 1 and x.dtype == torch.float16
    axial = load_file_slices(tmp_path / "v.nii.gz", DataConfig(paths=(p,), image_size=16))
    assert len(axial) < len(x)


def test_nifti_slices_are_display_oriented_whatever_the_voxel_order(tmp_path):
    """One anatomy stored in three voxel orders (with matching affines, anisotropic voxels) gives
    the same training slices: display orientation ``flipud(C.T)`` of the RAS slice ``C``."""
    vol = _ball_volume()  # RAS voxel order, shape (20, 24, 12), voxels 1 x 2 x 1 mm
    vol[2:9, 10:14] += 50.0  # break the symmetries so that a wrong flip or transpose shows
    files = {
        "ras": (vol, np.diag([1.0, 2.0, 1.0, 1.0])),
        # stored[i, j, k] = vol[19 - i, j, k]: x runs right to left (LAS)
        "las": (vol[::-1], np.array([[-1.0, 0, 0, 19], [0, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])),
        # stored[i, j, k] = vol[j, 23 - i, k]: already display order flipud(C.T) per slice
        "display": (np.flip(vol.transpose(1, 0, 2), axis=0),
                    np.array([[0, 1.0, 0, 0], [-2, 0, 0, 46], [0, 0, 1, 0], [0, 0, 0, 1]])),
    }
    for name, (data, affine) in files.items():
        nib.save(nib.Nifti1Image(np.ascontiguousarray(data), affine), str(tmp_path / f"{name}.nii"))
    cfg = DataConfig(paths=("unused",), image_size=16, axes=(2,))
    raw = dataclasses.replace(cfg, reorient=False)
    want = load_file_slices(tmp_path / "display.nii", raw)
    assert len(want) > 0
    for name in files:
        assert torch.equal(load_file_slices(tmp_path / f"{name}.nii", cfg), want), name
    assert not torch.equal(load_file_slices(tmp_path / "las.nii", raw), want)
    assert not torch.equal(load_file_slices(tmp_path / "ras.nii", raw), want)


def test_a_2d_nifti_is_one_slice_along_axis_2(tmp_path):
    vol = _ball_volume()
    vol[2:9, 10:14] += 50.0
    _nifti(tmp_path / "one.nii", np.ascontiguousarray(vol[:, :, 6]), zooms=(1.0, 2.0, 1.0))
    _nifti(tmp_path / "vol.nii", vol, zooms=(1.0, 2.0, 1.0))
    cfg = DataConfig(paths=("unused",), image_size=16, axes=(0, 1, 2), min_foreground=0.0)
    one = load_file_slices(tmp_path / "one.nii", cfg)
    axial = load_file_slices(tmp_path / "vol.nii", dataclasses.replace(cfg, axes=(2,)))
    assert one.shape == (1, 1, 16, 16) and torch.equal(one[0], axial[6])
    _nifti(tmp_path / "line.nii", np.ones(5, np.float32))
    with pytest.raises(ValueError, match=r"line.nii: expected a 2D or 3D image, got shape \(5,\)"):
        load_file_slices(tmp_path / "line.nii", cfg)


def test_a_4d_nifti_trains_on_its_first_frame(tmp_path):
    vol = _ball_volume()
    _nifti(tmp_path / "3d.nii", vol)
    _nifti(tmp_path / "4d.nii", np.stack([vol, 2 * vol[::-1]], axis=-1))
    cfg = DataConfig(paths=("unused",), image_size=16)
    assert torch.equal(load_file_slices(tmp_path / "4d.nii", cfg),
                       load_file_slices(tmp_path / "3d.nii", cfg))


@pytest.mark.parametrize(("bad", "message"), [
    ("nan", r"v.nii.gz: 3 voxel\(s\) are NaN or Inf$"),
    ("inf", r"v.nii.gz: 3 voxel\(s\) are NaN or Inf$"),
    ("complex", r"v.nii.gz: complex data complex64; a magnitude image is expected"),
])
def test_nonfinite_or_complex_nifti_is_refused_naming_the_file(tmp_path, bad, message):
    """As invdiff solve and simulate refuse such inputs (invdiff.io.images.read_image), training
    does too, rather than zeroing NaN/Inf or taking the magnitude of complex data; through the
    data loader (a folder of volumes) as well as one file."""
    vol = _ball_volume()
    if bad == "complex":
        phase = np.exp(1j * np.linspace(0, 3, vol.size)).reshape(vol.shape)
        vol = (vol * phase).astype(np.complex64)
    else:
        vol[3, 4, 5:8] = np.nan if bad == "nan" else np.inf
    (tmp_path / "vols").mkdir()
    _nifti(tmp_path / "vols" / "ok.nii.gz", _ball_volume())
    path = _nifti(tmp_path / "vols" / "v.nii.gz", vol)
    cfg = DataConfig(paths=(str(tmp_path / "vols"),), image_size=16)
    with pytest.raises(ValueError, match=message):
        load_file_slices(Path(path), cfg)
    with pytest.raises(ValueError, match=message):
        load_image_sets(cfg)


def test_shipped_slab_slices_match_the_shipped_training_format():
    """Training slices of the shipped NIfTI slab look like the shipped display-oriented
    validation slices of the same subject (correlation), and voxel order does not."""
    root = Path(__file__).resolve().parents[2] / "invdiff" / "data"
    val = np.load(root / "brain128.npz")["val"].astype(np.float64)
    val = (val - val.mean(axis=(1, 2), keepdims=True)) / val.std(axis=(1, 2), keepdims=True)
    cfg = DataConfig(paths=("unused",), image_size=128)

    def best(x: torch.Tensor) -> float:
        x = x[:, 0].double().numpy()
        x = (x - x.mean(axis=(1, 2), keepdims=True)) / x.std(axis=(1, 2), keepdims=True)
        return float(np.mean(val[None] * x[:, None], axis=(2, 3)).max(axis=1).min())

    slab = root / "validation_slab.nii.gz"
    shown = load_file_slices(slab, cfg)
    raw = load_file_slices(slab, dataclasses.replace(cfg, reorient=False))
    assert best(shown) > 0.99 > 0.8 > best(raw)


def test_fit_square_keeps_physical_aspect():
    x = torch.ones(1, 10, 20)  # 10 rows of 2 mm = 20 mm, 20 columns of 1 mm = 20 mm: a square
    y = fit_square(x, 16, spacing=(2.0, 1.0))
    assert y.shape == (1, 16, 16) and torch.allclose(y, torch.ones_like(y), atol=1e-6)
    z = fit_square(x, 16)  # 1 mm pixels: 10 x 20 mm -> 8 rows of tissue centred, background around
    assert torch.allclose(z[0, 4:12], torch.ones(8, 16), atol=1e-6)
    assert (z[0, :4] == -1).all() and (z[0, 12:] == -1).all()


def test_png_folder_with_whole_file_hold_out(tmp_path):
    folder = tmp_path / "pngs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        a = np.zeros((20, 20), np.uint8)
        a[4:16, 4:16] = rng.integers(100, 255, (12, 12))
        Image.fromarray(a).save(folder / f"s{i}.png")
    Image.fromarray((np.ones((20, 20)) * 40000).astype(np.uint16)).save(folder / "s16.png")
    sets = load_image_sets(DataConfig(paths=(str(folder),), image_size=8, val_fraction=0.2))
    assert len(sets.train) == 4 and len(sets.val) == 1
    assert sets.train.min() >= -1 and sets.train.max() <= 1


def test_mixed_inputs_and_bad_paths(tmp_path):
    p = _nifti(tmp_path / "v.nii", _ball_volume(), zooms=(1.0, 1.0, 2.0))
    q = _npz(tmp_path / "d.npz", train=np.zeros((3, 16, 16), np.float16))
    v = _npz(tmp_path / "v.npz", val=np.zeros((2, 16, 16), np.float16))
    sets = load_image_sets(DataConfig(paths=(p, q), image_size=16, val_paths=(v,)))
    assert len(sets.train) > 3 and len(sets.val) == 2
    with pytest.raises(KeyError, match="no array 'val'"):  # an explicit val file needs the key
        load_image_sets(DataConfig(paths=(p,), image_size=16, val_paths=(q,)))
    with pytest.raises(FileNotFoundError, match="not found"):
        load_image_sets(DataConfig(paths=(str(tmp_path / "nope.nii"),), image_size=16))
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match="expected .npz"):
        load_image_sets(DataConfig(paths=(str(tmp_path / "x.txt"),), image_size=16))


# -- batch order -----------------------------------------------------------------------------------
def test_batch_stream_epochs_are_permutations_and_resumable():
    s = BatchStream(n=10, batch_size=3, seed=7)
    first = torch.cat([s.next_indices()[0] for _ in range(3)])
    assert len(set(first.tolist())) == 9  # one epoch: 3 batches, no repeats, tail dropped
    state = s.state_dict()
    rest = [s.next_indices()[0] for _ in range(4)]
    t = BatchStream(n=10, batch_size=3, seed=7)
    t.load_state_dict(state)
    assert all(torch.equal(a, t.next_indices()[0]) for a in rest)
    assert s.epoch == 2  # 7 batches of 3 per epoch
    other = BatchStream(n=10, batch_size=3, seed=8)
    assert not torch.equal(other.next_indices()[0], BatchStream(10, 3, 7).next_indices()[0])


def test_batch_stream_shards_the_global_batch():
    ranks = [BatchStream(n=12, batch_size=4, seed=1, rank=r, world_size=2) for r in range(2)]
    for _ in range(5):
        (g0, l0), (g1, l1) = (r.next_indices() for r in ranks)
        assert torch.equal(g0, g1) and torch.equal(torch.cat([l0, l1]), g0)
    with pytest.raises(ValueError, match="not divisible"):
        BatchStream(n=12, batch_size=3, seed=1, world_size=2)
    with pytest.raises(ValueError, match="fewer than one batch"):
        BatchStream(n=2, batch_size=3, seed=1)
    with pytest.raises(ValueError, match="training images"):
        BatchStream(n=12, batch_size=4, seed=1).load_state_dict({"epoch": 0, "pos": 0, "n": 11})


@pytest.mark.parametrize("kind", ["nifti", "npz"])
def test_train_command_refuses_nan_data_in_one_line(tmp_path, kind):
    from typer.testing import CliRunner

    from invdiff.cli.app import app

    if kind == "nifti":
        vol = _ball_volume()
        vol[3, 4, 5] = np.nan
        data = Path(_nifti(tmp_path / "v.nii.gz", vol))
    else:
        stack = np.zeros((4, 16, 16), np.float32)
        stack[1, 2, 3] = np.nan
        data = Path(_npz(tmp_path / "v.npz", train=stack))
    r = CliRunner().invoke(app, ["train", str(data), "--out", str(tmp_path / "vdm.ckpt"),
                                 "--preset", "tiny", "--steps", "1", "--batch-size", "2",
                                 "--device", "cpu", "--quiet"])
    line = assert_one_line_error(r, "are NaN or Inf")
    assert line.startswith(f"error: {data}"), line
    assert sorted(tmp_path.iterdir()) == [data]


def test_colour_png_is_refused_and_grey_rgb_is_read(tmp_path):
    grey = np.zeros((40, 40, 3), np.uint8)
    grey[10:30, 10:30] = 120
    Image.fromarray(grey).save(tmp_path / "grey_rgb.png")
    colour = grey.copy()
    colour[15, 15] = (255, 0, 0)  # an annotation in red
    Image.fromarray(colour).save(tmp_path / "colour.png")

    assert _read_png(tmp_path / "grey_rgb.png").shape == (40, 40)
    with pytest.raises(ValueError, match="colour PNG; expected a grayscale magnitude image"):
        _read_png(tmp_path / "colour.png")
