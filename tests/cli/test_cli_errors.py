"""Bad input: one line on stderr, exit code 2, a traceback only with --debug; Ctrl-C; safety."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from cli_assertions import assert_one_line_error

FAST = ("--steps", "2", "--quiet")




def _nifti(path, data, affine=None):
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), path)
    return path


def _ok_volume() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.random((8, 8, 2)) + 1).astype(np.float32)


@pytest.fixture
def meas(run, hr_nifti, tmp_path):
    path = tmp_path / "m.npz"
    assert run("simulate", hr_nifti, "--operator", "kcrop:8", "--out", path).exit_code == 0
    return path


def test_missing_file(run, tiny_prior, tmp_path):
    r = run("solve", tmp_path / "nope.nii.gz", "--prior", tiny_prior, "--out", tmp_path / "o.nii")
    assert_one_line_error(r, "does not exist")


def test_unreadable_nifti(run, tiny_prior, tmp_path):
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"\x1f\x8b garbage")
    r = run("solve", bad, "--prior", tiny_prior, "--out", tmp_path / "o.nii")
    assert_one_line_error(r, "not a readable NIfTI")


def test_non_image_nifti(run, tiny_prior, tmp_path):
    path = _nifti(tmp_path / "line.nii", np.ones(5, np.float32))
    r = run("solve", path, "--prior", tiny_prior, "--out", tmp_path / "o.nii")
    assert_one_line_error(r, "expected a 2D or 3D image")


def test_4d_needs_frame(run, tiny_prior, tmp_path):
    path = _nifti(tmp_path / "t.nii", np.ones((8, 8, 2, 3), np.float32))
    r = run("solve", path, "--prior", tiny_prior, "--out", tmp_path / "o.nii")
    assert_one_line_error(r, "4D input", "--frame")
    r = run("solve", path, "--prior", tiny_prior, "--frame", "1", "--out", tmp_path / "o.nii",
            *FAST)
    assert r.exit_code == 0, r.output


def test_nan_voxels(run, tiny_prior, tmp_path):
    data = _ok_volume()
    data[1, 2, 0] = np.nan
    r = run("solve", _nifti(tmp_path / "n.nii", data), "--prior", tiny_prior,
            "--out", tmp_path / "o.nii")
    assert_one_line_error(r, "NaN or Inf")


def test_all_zero(run, tiny_prior, tmp_path):
    path = _nifti(tmp_path / "z.nii", np.zeros((8, 8, 2), np.float32))
    r = run("solve", path, "--prior", tiny_prior, "--out", tmp_path / "o.nii")
    assert_one_line_error(r, "all zero")
    r = run("simulate", path, "--operator", "kcrop:4", "--out", tmp_path / "m.npz")
    assert_one_line_error(r, "all zero")


def test_operator_does_not_fit_input(run, tiny_prior, tmp_path):
    path = _nifti(tmp_path / "lr.nii", _ok_volume())
    r = run("solve", path, "--operator", "kcrop:4", "--prior", tiny_prior,
            "--out", tmp_path / "o.nii")
    assert_one_line_error(r, "kcrop:4", "8x8")
    r = run("simulate", path, "--operator", "kcrop:32", "--out", tmp_path / "m.npz")
    assert_one_line_error(r, "32")


def test_prior_size_mismatch(run, tiny_prior, tmp_path):
    data = np.random.default_rng(1).random((32, 32, 2)).astype(np.float32) + 1
    hr = _nifti(tmp_path / "hr32.nii", data)
    assert run("simulate", hr, "--operator", "kcrop:8", "--out", tmp_path / "m.npz").exit_code == 0
    r = run("solve", tmp_path / "m.npz", "--prior", tiny_prior, "--out", tmp_path / "o.nii")
    assert_one_line_error(r, "16x16", "32x32")
    big_lr = _nifti(tmp_path / "lr32.nii", data)
    r = run("solve", big_lr, "--prior", tiny_prior, "--out", tmp_path / "o.nii")
    assert_one_line_error(r, "larger than the prior")


def test_unknown_names_list_known_ones(run, meas, tiny_prior, tmp_path):
    out = tmp_path / "o.nii"
    r = run("solve", meas, "--prior", tiny_prior, "--solver", "magic", "--out", out)
    assert_one_line_error(r, "unknown solver 'magic'", "kspace-mix")
    r = run("solve", meas, "--prior", "no-such-prior", "--out", out)
    assert_one_line_error(r, "no-such-prior", "known priors")
    r = run("simulate", tmp_path / ".." / meas.parent.name / "m.npz", "--operator", "kcrop:4",
            "--out", tmp_path / "x.npz")
    assert_one_line_error(r, "unknown image format")
    lr = _nifti(tmp_path / "lr.nii", _ok_volume())
    r = run("solve", lr, "--operator", "warp:3", "--prior", tiny_prior, "--out", out)
    assert_one_line_error(r, "unknown operator 'warp'", "kcrop")
    r = run("operators", "check", "warp:3", "--shape", "8x8")
    assert_one_line_error(r, "unknown operator 'warp'")


def test_bad_configs(run, meas, tiny_prior, tmp_path):
    out = tmp_path / "o.nii"
    cfg = tmp_path / "c.toml"
    cfg.write_text("steps = [\n")
    assert_one_line_error(run("solve", meas, "--config", cfg, "--out", out), "malformed TOML")
    cfg.write_text("steps = 2\nlamda = 0.5\n")
    assert_one_line_error(run("solve", meas, "--config", cfg, "--out", out),
                           "unknown key 'lamda'")
    cfg.write_text(f'prior = "{tiny_prior}"\n[options]\nwobble = 1\n')
    assert_one_line_error(run("solve", meas, "--config", cfg, "--out", out),
                           "no option 'wobble'", "eta")
    assert_one_line_error(run("solve", meas, "--lambda", "1.5", "--out", out), "lambda")
    assert_one_line_error(run("solve", meas, "--config", tmp_path, "--out", out), "is a folder")


def test_debug_shows_the_traceback(run, tiny_prior, tmp_path):
    r = run("solve", tmp_path / "nope.nii", "--prior", tiny_prior, "--out", tmp_path / "o.nii",
            "--debug")
    assert r.exit_code != 0 and isinstance(r.exception, FileNotFoundError)


def test_outputs_are_safe(run, meas, tiny_prior, tmp_path):
    out = tmp_path / "o.npy"
    out.write_bytes(b"keep me")
    r = run("solve", meas, "--prior", tiny_prior, "--out", out, *FAST)
    assert_one_line_error(r, "exists", "--overwrite")
    assert out.read_bytes() == b"keep me"
    lr = tmp_path / "lr.npy"
    np.save(lr, _ok_volume())
    r = run("solve", lr, "--prior", tiny_prior, "--out", lr, "--overwrite", *FAST)
    assert_one_line_error(r, "is an input")
    r = run("solve", lr, "--prior", tiny_prior, "--out", tiny_prior, "--overwrite", *FAST)
    assert_one_line_error(r, "unknown image format")
    r = run("solve", meas, "--prior", tiny_prior, "--out", out, "--overwrite", *FAST)
    assert r.exit_code == 0 and np.load(out).shape == (16, 16, 3)


def test_unwritable_outputs_are_refused_before_solving(run, meas, tiny_prior, tmp_path,
                                                       monkeypatch, hr_nifti):
    import invdiff.pipeline.run as run_module

    def must_not_run(*_args, **_kwargs):
        raise AssertionError("solved before checking the output")

    monkeypatch.setattr(run_module, "solve_problem", must_not_run)
    (tmp_path / "taken.nii.gz").mkdir()
    r = run("solve", meas, "--prior", tiny_prior, "--out", tmp_path / "taken.nii.gz",
            "--overwrite", *FAST)
    assert_one_line_error(r, "taken.nii.gz is a folder")
    import invdiff.io.atomic as atomic

    monkeypatch.setattr(atomic.tempfile, "mkstemp",
                        lambda *a, **k: (_ for _ in ()).throw(PermissionError(13, "denied")))
    r = run("solve", meas, "--prior", tiny_prior, "--out", tmp_path / "o.nii.gz", *FAST)
    assert_one_line_error(r, "cannot write to output folder")
    r = run("simulate", hr_nifti, "--operator", "kcrop:8", "--out", tmp_path / "m2.npz")
    assert_one_line_error(r, "cannot write to output folder")


def test_upper_case_nifti_outputs(run, meas, tiny_prior, tmp_path):
    r = run("solve", meas, "--prior", tiny_prior, "--out", tmp_path / "R.NII.GZ", "--samples", "2",
            *FAST)
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "R.NII.GZ" in names and "R_std.NII.GZ" in names, names
    assert nib.load(tmp_path / "R_std.NII.GZ").shape == (16, 16, 3)


def test_ctrl_c_stops_cleanly(run, meas, tiny_prior, tmp_path, monkeypatch):
    """Ctrl-C in the second batch: exit 130, says where it stopped, leaves no file behind."""
    import invdiff.solvers.registry as registry

    real = registry.get_solver("kspace-mix")
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(registry, "get_solver", lambda name: interrupted)
    before = set(tmp_path.iterdir())
    r = run("solve", meas, "--prior", tiny_prior, "--batch", "1", "--out", tmp_path / "o.nii.gz",
            *FAST)
    assert r.exit_code == 130
    assert "stopped after 1 of 3 slices" in r.stderr
    assert set(tmp_path.iterdir()) == before  # no output, no temporary file


def test_interrupt_while_writing_leaves_no_output(run, meas, tiny_prior, tmp_path, monkeypatch):
    """Outputs are renamed into place together after the manifest is written, or not at all."""
    import invdiff.pipeline.run as run_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "write_manifest", interrupted)
    before = set(tmp_path.iterdir())
    r = run("solve", meas, "--prior", tiny_prior, "--samples", "2", "--out",
            tmp_path / "o.nii.gz", *FAST)
    assert r.exit_code == 130 and "no output was written" in r.stderr
    assert set(tmp_path.iterdir()) == before


@pytest.mark.slow
def test_sigterm_in_a_subprocess_cleans_up(meas, tiny_prior, tmp_path):
    """kill (SIGTERM) mid-run: exit 130, no output, no temporary file."""
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / "o.nii.gz"
    proc = subprocess.Popen(
        [sys.executable, "-m", "invdiff.cli.app", "solve", str(meas), "--prior", tiny_prior,
         "--steps", "100000", "--quiet", "--out", str(out)],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    before = set(tmp_path.iterdir())
    assert proc.stderr.readline().startswith("solving m.npz: 3 slices")  # solving has begun
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "no output was written" in err
    assert set(tmp_path.iterdir()) == before


def test_operator_of_a_measurement_file(run, meas, tiny_prior, tmp_path):
    """An equivalent spelling of the file's operator is accepted; a different operator is not."""
    r = run("solve", meas, "--operator", "kcrop:8x8", "--prior", tiny_prior,
            "--out", tmp_path / "a.npy", *FAST)
    assert r.exit_code == 0, r.output
    r = run("solve", meas, "--operator", "kcrop:4", "--prior", tiny_prior,
            "--out", tmp_path / "b.npy", *FAST)
    assert_one_line_error(r, "differs from the measurement's operator kcrop:8")


def test_reference_of_the_wrong_shape_fails_before_solving(run, meas, tiny_prior, tmp_path):
    ref = tmp_path / "ref.npy"
    np.save(ref, _ok_volume())
    r = run("solve", meas, "--prior", tiny_prior, "--reference", ref, "--out",
            tmp_path / "o.npy", "--steps", "2")
    assert_one_line_error(r, "(8, 8, 2)", "(16, 16, 3)")


@pytest.mark.parametrize("sigma", ["-1", "nan", "inf"])
def test_simulate_refuses_bad_noise_sigma(run, hr_nifti, tmp_path, sigma):
    # a negative sigma used to be written into the file, which solve then refused to read
    r = run("simulate", hr_nifti, "--operator", "kcrop:8", "--noise-sigma", sigma,
            "--out", tmp_path / "m.npz")
    assert_one_line_error(r, "noise sigma must be finite and >= 0")
    assert not (tmp_path / "m.npz").exists()


def test_frame_applies_only_to_4d_files(run, tiny_prior, tmp_path):
    # --frame picks a volume of the 4D input; a 3D reference or reconstruction beside it is not
    # refused for "--frame given but the input is 3D"
    rng = np.random.default_rng(1)
    hr = (rng.random((16, 16, 2)) + 1).astype(np.float32)
    ref = _nifti(tmp_path / "ref.nii", hr)
    four = _nifti(tmp_path / "four.nii", np.stack([hr, 2 * hr], axis=-1))
    r = run("evaluate", "--reference", ref, "--recon", four, "--frame", "0", "--json")
    assert r.exit_code == 0, r.output
    assert r.stdout.count('"psnr": "inf"') >= 1  # frame 0 of the 4D file is the reference
    # 2 mm voxels over the reference's field of view: the output lies on its 1 mm grid (the
    # centred-FFT convention keeps voxel N/2 in place: LR voxel 4 at 8 mm = HR voxel 8)
    lr_affine = np.diag([2.0, 2.0, 1.0, 1.0])
    lowres = _nifti(tmp_path / "lr.nii", np.stack([hr[4:12, 4:12]] * 2, axis=-1), lr_affine)
    r = run("solve", lowres, "--frame", "1", "--reference", ref, "--prior", tiny_prior,
            "--out", tmp_path / "o.nii", *FAST)
    assert r.exit_code == 0, r.output
    # a 3D input to solve is still refused --frame
    r = run("solve", ref, "--frame", "1", "--prior", tiny_prior, "--out", tmp_path / "p.nii")
    assert_one_line_error(r, "--frame given but the input is 3D")


@pytest.mark.parametrize("out", ["input", "other.nii.gz"])
def test_train_never_writes_over_its_data(run, tmp_path, out):
    data = _nifti(tmp_path / "vol.nii.gz", _ok_volume())
    before = data.read_bytes()
    target = data if out == "input" else tmp_path / out
    r = run("train", data, "--out", target, "--preset", "tiny", "--steps", "1", "--quiet")
    assert_one_line_error(r, f"--out {target}", "vdm.ckpt")
    assert data.read_bytes() == before and sorted(tmp_path.iterdir()) == [data]


def test_train_unknown_device_is_one_line(run, tmp_path):
    data = _nifti(tmp_path / "vol.nii.gz", _ok_volume())
    r = run("train", data, "--out", tmp_path / "v.ckpt", "--device", "gpu", "--quiet")
    assert_one_line_error(r, "device must be cpu, cuda or cuda:N, got 'gpu'")


def test_train_on_a_corrupt_nifti_is_one_line(run, tmp_path):
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not gzip")
    r = run("train", bad, "--out", tmp_path / "v.ckpt", "--preset", "tiny", "--quiet")
    assert_one_line_error(r, "not a readable NIfTI file", "bad.nii.gz")


def test_evaluate_with_an_empty_mask_file(run, tmp_path):
    ref = _nifti(tmp_path / "ref.nii", _ok_volume())
    mask = _nifti(tmp_path / "mask.nii", np.zeros((8, 8, 2), np.float32))
    r = run("evaluate", "--reference", ref, "--recon", ref, "--mask", mask)
    assert_one_line_error(r, "the mask selects no voxel")


def test_operator_from_a_config_file_is_named_as_such(run, meas, tiny_prior, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('operator = "kcrop:4"\n')
    r = run("solve", meas, "--config", config, "--prior", tiny_prior,
            "--out", tmp_path / "b.npy", *FAST)
    assert_one_line_error(r, "operator kcrop:4 (from --operator or --config) differs")


@pytest.mark.parametrize(("option", "message"), [
    ("eta=abc", "option eta must be float (default 1.0), got str 'abc'"),
    ("final_dc=1", "option final_dc must be bool (default True), got int 1"),
    ("grid=3", "option grid must be str (default 'uniform'), got int 3"),
])
def test_solver_option_of_the_wrong_type(run, meas, tiny_prior, tmp_path, option, message):
    # the solver used to fail mid-run without naming the option
    r = run("solve", meas, "--option", option, "--prior", tiny_prior,
            "--out", tmp_path / "o.npy", *FAST)
    assert_one_line_error(r, "solver kspace-mix: " + message)
    r = run("solve", meas, "--option", "eta=0", "--prior", tiny_prior,  # int for a float: fine
            "--out", tmp_path / "o.npy", *FAST)
    assert r.exit_code == 0, r.output


def test_frame_with_a_measurement_file_is_refused(run, meas, tiny_prior, tmp_path):
    # it was silently ignored
    r = run("solve", meas, "--frame", "1", "--prior", tiny_prior, "--out", tmp_path / "o.npy",
            *FAST)
    assert_one_line_error(r, "--frame selects a volume of 4D image input")


def test_full_size_image_input_is_refused(run, tiny_prior, tmp_path):
    # a high-resolution image passed to solve came back unchanged (kcrop:16x16 of 16x16)
    path = _nifti(tmp_path / "hr.nii", (np.random.default_rng(0).random((16, 16, 2)) + 1)
                  .astype(np.float32))
    r = run("solve", path, "--prior", tiny_prior, "--out", tmp_path / "o.nii", *FAST)
    assert_one_line_error(r, "already the prior's image size", "invdiff simulate")


@pytest.mark.parametrize("role", ["reference", "reconstruction", "mask"])
def test_missing_evaluate_files_are_named_by_role(run, tmp_path, role):
    ok = _nifti(tmp_path / "ok.nii", _ok_volume())
    files = {"reference": ok, "reconstruction": ok, "mask": ok, role: tmp_path / "gone.nii"}
    r = run("evaluate", "--reference", files["reference"], "--recon", files["reconstruction"],
            "--mask", files["mask"])
    assert_one_line_error(r, f"{role} {tmp_path / 'gone.nii'} does not exist")


def test_missing_reference_of_solve_is_named(run, meas, tiny_prior, tmp_path):
    r = run("solve", meas, "--reference", tmp_path / "gone.nii", "--prior", tiny_prior,
            "--out", tmp_path / "o.npy", *FAST)
    assert_one_line_error(r, "reference", "gone.nii does not exist")


def test_bad_input_is_reported_before_the_prior_is_loaded(run, tmp_path):
    # with an unusable prior (e.g. the default one not installed) the input's own fault used
    # to be hidden behind the prior's error
    data = _ok_volume()
    data[0, 0, 0] = np.inf
    r = run("solve", _nifti(tmp_path / "n.nii", data), "--prior", "no-such-prior",
            "--out", tmp_path / "o.nii")
    assert_one_line_error(r, "NaN or Inf")
    bad = tmp_path / "m.npz"
    np.savez(bad, format="invdiff.measurement", kspace=np.ones((1, 2, 2), np.complex64))
    r = run("solve", bad, "--prior", "no-such-prior", "--out", tmp_path / "o.nii")
    assert_one_line_error(r, "missing key(s)")


def test_seed_out_of_range_is_named(run, hr_nifti, tmp_path):
    # torch said only "Overflow when unpacking long long"
    r = run("simulate", hr_nifti, "--operator", "kcrop:8", "--seed", str(2**64),
            "--out", tmp_path / "m.npz")
    assert_one_line_error(r, "seed must be in [0, 2^32)", "got 18446744073709551616")
    r = run("solve", hr_nifti, "--seed", str(-(2**63) - 1), "--out", tmp_path / "o.nii")
    assert_one_line_error(r, "seed must be in")
    # 2^32 would draw what 0 draws: refused rather than recorded as a different seed
    r = run("simulate", hr_nifti, "--operator", "kcrop:8", "--seed", str(2**32),
            "--out", tmp_path / "m.npz")
    assert_one_line_error(r, "seed must be in [0, 2^32) (torch's generator uses 32 bits)")
    r = run("simulate", hr_nifti, "--operator", "kcrop:8", "--seed", "-1", "--out",
            tmp_path / "m.npz")
    assert_one_line_error(r, "got -1")


@pytest.mark.parametrize("extra, message", [
    (["--init", "missing.ckpt"], "--init: no such prior file"),
    (["--init", "default", "--preset", "tiny"],
     "holds a different model: image_size 128 (asked: 16)"),
    (["--augment-preset", "heavy"], "unknown augmentation preset 'heavy'"),
    (["--channels", "16,x"], "--channels expects comma-separated integers, got '16,x'"),
    (["--channels", "2,4"], "unet_channels must start at >= 4 (the time embedding's width)"),
    (["--preset", "tiny", "--channels", "8,16,32,64,128,256"],
     "image_size must be divisible by 32 for 6 U-Net levels (unet_channels (8, 16, 32, 64, 128, "
     "256)), got 16"),
    (["--dropout", "1.5"], "dropout must be in [0, 1), got 1.5"),
    (["--seed", str(2**32)], "seed must be in [0, 2^32) (torch's generator uses 32 bits), got"),
])
def test_train_bad_init_or_augmentation_is_one_line(run, tmp_path, extra, message):
    data = _nifti(tmp_path / "vol.nii.gz", _ok_volume())
    r = run("train", data, "--out", tmp_path / "v.ckpt", "--quiet", *extra)
    assert_one_line_error(r, message)
    assert sorted(tmp_path.iterdir()) == [data]


def test_train_refuses_to_write_over_its_init_file(run, tmp_path, tiny_prior):
    data = _nifti(tmp_path / "vol.nii.gz", _ok_volume())
    tiny_prior = Path(tiny_prior)
    before = tiny_prior.read_bytes()
    r = run("train", data, "--out", tiny_prior, "--init", tiny_prior, "--steps", "1", "--quiet")
    assert_one_line_error(r, f"--out {tiny_prior}")
    assert tiny_prior.read_bytes() == before


def test_far_from_square_output_pixels_are_refused(run, tiny_prior, tmp_path):
    lr = tmp_path / "thin.npy"
    np.save(lr, _ok_volume()[:2, :, 0])  # 2x8 pixels -> 16x16: 4:1 pixels
    r = run("solve", lr, "--prior", tiny_prior, "--out", tmp_path / "o.npy", *FAST)
    assert_one_line_error(r, "2x8 pixels", "4:1 non-square pixels", "not square?", "NIfTI")
    # a volume of 2 mm voxels sliced along the wrong axis: 8x2-voxel slices of 2x2 mm
    vol = _nifti(tmp_path / "v.nii.gz", _ok_volume(), np.diag([2.0, 2.0, 2.0, 1.0]))
    r = run("solve", vol, "--axis", "0", "--prior", tiny_prior, "--out", tmp_path / "a.npy",
            *FAST)
    assert_one_line_error(r, "8x2 pixels (2x2)", "(1x0.25)", "4:1", "wrong --axis?")
    # the same 8x2 slices are fine when their voxels are 2 x 8 mm (a square field of view)
    vol = _nifti(tmp_path / "w.nii.gz", _ok_volume(), np.diag([2.0, 2.0, 8.0, 1.0]))
    r = run("solve", vol, "--axis", "0", "--prior", tiny_prior, "--out", tmp_path / "b.npy",
            *FAST)
    assert r.exit_code == 0, r.output


def test_mildly_non_square_output_pixels_get_a_one_line_warning(tiny_prior, tmp_path):
    import subprocess
    import sys

    lr = tmp_path / "wide.npy"
    np.save(lr, (np.random.default_rng(0).random((6, 8)) + 1).astype(np.float32))
    out = subprocess.run(
        [sys.executable, "-m", "invdiff.cli.app", "solve", str(lr), "--prior", tiny_prior,
         "--out", str(tmp_path / "o.npy"), *FAST], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    warning = [ln for ln in out.stderr.splitlines() if ln.startswith("warning: ")]
    assert len(warning) == 1 and "stretched 1.3:1" in warning[0], out.stderr
    assert "GeometryWarning" not in out.stderr and "warnings.warn" not in out.stderr


def test_output_of_an_input_without_geometry_evaluates_against_a_nifti_reference(
        run, tiny_prior, tmp_path):
    """solve accepted the reference (no affine to compare); evaluate must agree, not refuse the
    output for an identity affine that solve made up."""
    hr = _ok_volume()
    ref = _nifti(tmp_path / "ref.nii.gz", np.concatenate([hr, hr], axis=0)[:16, :8].repeat(2, 1),
                 np.diag([1.5, 1.5, 3.0, 1.0]))
    lr = tmp_path / "lr.npy"
    np.save(lr, np.stack([hr[:, :, 0]] * 2, axis=-1))
    out = tmp_path / "o.nii.gz"
    r = run("solve", lr, "--prior", tiny_prior, "--out", out, "--reference", ref, *FAST)
    assert r.exit_code == 0, r.output
    r = run("evaluate", "--reference", ref, "--recon", out)
    assert r.exit_code == 0, r.output


def test_out_of_memory_is_one_line(run, meas, tiny_prior, tmp_path, monkeypatch):
    import invdiff.pipeline.run as run_module

    def exhausted(*_args, **_kwargs):
        raise MemoryError("Unable to allocate 6.10 GiB for an array with shape (100000, 3, 16)")

    monkeypatch.setattr(run_module, "solve_problem", exhausted)
    r = run("solve", meas, "--prior", tiny_prior, "--out", tmp_path / "o.npy", *FAST)
    assert r.exit_code == 1 and "Traceback" not in r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: out of memory (Unable to allocate")
    assert "--samples" in lines[0] and not (tmp_path / "o.npy").exists()


def test_a_perfect_match_with_the_reference_is_reported(run, meas, tiny_prior, tmp_path):
    first = tmp_path / "a.npy"
    zf = ("--solver", "zero-fill", "--prior", tiny_prior, "--quiet")
    assert run("solve", meas, *zf, "--out", first).exit_code == 0
    r = run("solve", meas, *zf, "--reference", first, "--out", tmp_path / "b.npy")
    assert r.exit_code == 0, r.output
    assert "PSNR inf dB" in r.output


@pytest.mark.parametrize("factor", [1e30, 1e-30])
def test_residual_of_extremely_scaled_k_space(run, meas, tiny_prior, tmp_path, factor):
    import json

    scaled = tmp_path / "s.npz"
    arrays = dict(np.load(meas))
    arrays["kspace"] = (arrays["kspace"] * factor).astype(np.complex64)
    arrays.pop("scale")  # estimated again from the scaled data
    np.savez(scaled, **arrays)
    out = tmp_path / "o.npy"
    r = run("solve", scaled, "--solver", "zero-fill", "--prior", tiny_prior, "--out", out,
            "--quiet")
    assert r.exit_code == 0, r.output
    residual = json.loads((tmp_path / "o.npy.manifest.json").read_text())["residual"]
    assert isinstance(residual, float) and 0 < residual < 1e-5


def test_a_broken_solver_plugin_is_one_line(run, meas, tmp_path, monkeypatch):
    from importlib.metadata import EntryPoint

    from invdiff.solvers import registry

    real = dict(registry._entry_points())
    broken = EntryPoint("broken", "no_such_module_xyz:solve", registry.GROUP)
    monkeypatch.setattr(registry, "_entry_points", lambda: {**real, "broken": broken})
    r = run("solve", meas, "--solver", "broken", "--out", tmp_path / "o.npy", "--quiet")
    assert_one_line_error(r, "solver plugin 'broken'", "failed to load", "ModuleNotFoundError")


@pytest.mark.parametrize("error, one_line", [
    (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 6 GB"), True),
    (RuntimeError("MPS backend out of memory"), True),
    (RuntimeError("an ordinary bug"), False),
])
def test_torch_out_of_memory_is_one_line_and_other_errors_are_not_hidden(
        run, meas, tiny_prior, tmp_path, monkeypatch, error, one_line):
    import invdiff.pipeline.run as run_module

    def fail(*_args, **_kwargs):
        raise error

    monkeypatch.setattr(run_module, "solve_problem", fail)
    r = run("solve", meas, "--prior", tiny_prior, "--out", tmp_path / "o.npy", *FAST)
    if one_line:
        assert r.exit_code == 1 and r.stderr.startswith("error: out of memory")
    else:
        assert r.exception is error  # a real bug keeps its traceback


def test_train_out_of_memory_names_trains_own_options(run, tmp_path, monkeypatch):
    import invdiff.training as training

    def exhausted(*_args, **_kwargs):
        raise RuntimeError(
            "DefaultCPUAllocator: can't allocate memory: you tried to allocate 18 GB")

    monkeypatch.setattr(training, "cli_train", exhausted)
    data = _nifti(tmp_path / "vol.nii.gz", _ok_volume())
    r = run("train", data, "--out", tmp_path / "v.ckpt", "--quiet")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.stderr.strip() == (
        "error: out of memory (DefaultCPUAllocator: can't allocate memory: you tried to allocate "
        "18 GB); use a smaller --batch-size or model (--preset, --channels)")
