"""simulate -> solve -> evaluate through the command line (CliRunner), geometry and manifests."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from invdiff.config import SolveConfig
from invdiff.io import read_measurement
from invdiff.pipeline.problem import MeasurementWarning, load_problem

FAST = ("--steps", "2", "--quiet")


def _world(affine, index):
    return (affine @ np.array([*index, 1.0]))[:3]


def test_simulate_solve_evaluate(run, hr_nifti, tiny_prior, tmp_path):
    meas, rec = tmp_path / "m.npz", tmp_path / "rec.nii.gz"
    r = run("simulate", hr_nifti, "--operator", "kcrop:8", "--out", meas)
    assert r.exit_code == 0, r.output
    r = run("solve", meas, "--prior", tiny_prior, "--samples", "2", "--out", rec,
            "--reference", hr_nifti, *FAST)
    assert r.exit_code == 0, r.output
    hr, out = nib.load(hr_nifti), nib.load(rec)
    assert out.shape == hr.shape
    np.testing.assert_allclose(out.affine, hr.affine, atol=1e-6)
    std = nib.load(tmp_path / "rec_std.nii.gz").get_fdata()
    assert std.shape == hr.shape and std.max() > 0
    manifest = json.loads((tmp_path / "rec.nii.gz.manifest.json").read_text())
    assert manifest["config"]["steps"] == 2 and manifest["config"]["samples"] == 2
    assert manifest["residual"] < 1e-4  # lambda = 1, noiseless: hard final data consistency
    assert len(manifest["input"]["sha256"]) == 64 and len(manifest["prior"]["sha256"]) == 64
    assert {"torch", "numpy", "invdiff", "git_commit"} <= manifest["environment"].keys()
    psnr = manifest["metrics"]["all_voxels"]["psnr"]
    r = run("evaluate", "--reference", hr_nifti, "--recon", rec, "--json")
    assert r.exit_code == 0, r.output
    metrics = json.loads(r.stdout)
    assert metrics["psnr"] == pytest.approx(psnr) and len(metrics["slices"]) == 3
    r = run("evaluate", "--reference", hr_nifti, "--recon", rec, "--per-slice")
    assert r.exit_code == 0, r.output
    assert "PSNR [dB]" in r.stdout and f"{psnr:.2f}" in r.stdout  # the unit was eaten as markup


def test_reports_are_one_line_each(run, hr_nifti, tiny_prior, tmp_path):
    """'wrote ...' lines are not wrapped at the console width, and metrics say what they cover."""
    deep = tmp_path / ("a-rather-long-folder-name-" * 3)
    deep.mkdir()
    meas, lr = deep / "measurement-of-the-volume.npz", deep / "lowres-image-of-the-volume.nii.gz"
    r = run("simulate", hr_nifti, "--operator", "kcrop:8", "--out", meas, "--lowres-out", lr)
    assert r.exit_code == 0, r.output
    line, note = r.stderr.strip().splitlines()  # 16x16 slices: the default prior's size note
    assert line.startswith(f"wrote {meas}:") and line.endswith(f"; and {lr}")
    assert note.startswith("note: the default prior models 128x128 slices")
    rec = deep / "reconstruction-of-the-volume.nii.gz"
    r = run("solve", meas, "--prior", tiny_prior, "--out", rec, "--reference", hr_nifti, *FAST)
    assert r.exit_code == 0, r.output
    lines = [x for x in r.stderr.strip().splitlines() if not x.startswith("solving")]
    assert len(lines) == 3 and lines[0].startswith(f"wrote {rec} (residual"), lines
    assert lines[1].startswith("all voxels: PSNR") and lines[2].startswith("foreground: PSNR")


def test_lowres_image_input_geometry(run, hr_nifti, tiny_prior, tmp_path):
    """LR NIfTI from simulate: solving it restores the HR grid's affine; centres coincide."""
    lr, rec = tmp_path / "lr.nii.gz", tmp_path / "rec.nii.gz"
    r = run("simulate", hr_nifti, "--operator", "kcrop:8x4", "--out", tmp_path / "m.npz",
            "--lowres-out", lr)
    assert r.exit_code == 0, r.output
    hr, low = nib.load(hr_nifti), nib.load(lr)
    assert low.shape == (8, 4, 3)
    np.testing.assert_allclose(_world(low.affine, (4, 2, 1)), _world(hr.affine, (8, 8, 1)))
    # same orientation, voxel size x2 and x4 in plane, same field of view
    np.testing.assert_allclose(low.affine[:3, 0], 2 * hr.affine[:3, 0])
    np.testing.assert_allclose(low.affine[:3, 1], 4 * hr.affine[:3, 1])
    np.testing.assert_allclose(low.affine[:3, 2], hr.affine[:3, 2])
    r = run("solve", lr, "--prior", tiny_prior, "--out", rec, *FAST)
    assert r.exit_code == 0, r.output
    out = nib.load(rec)
    assert out.shape == hr.shape
    np.testing.assert_allclose(out.affine, hr.affine, atol=1e-6)
    for corner in [(0, 0, 0), (15, 15, 2), (8, 8, 1)]:
        np.testing.assert_allclose(_world(out.affine, corner), _world(hr.affine, corner), atol=1e-6)


def test_lowres_convention_matches_simulate(run, tmp_path):
    """The k-space formed from a LR image equals the simulated measurement it came from.

    An odd crop of a real image keeps conjugate symmetry, so the LR image is real; the blob is
    positive, so its magnitude file loses nothing and the match is exact to float precision.
    """
    hr = tmp_path / "hr.npy"
    np.save(hr, np.pad(_smooth(), 0))
    r = run("simulate", hr, "--operator", "kcrop:7", "--out", tmp_path / "m.npz",
            "--lowres-out", tmp_path / "lr.npy")
    assert r.exit_code == 0, r.output
    m = read_measurement(tmp_path / "m.npz")
    assert np.load(tmp_path / "lr.npy").min() > 0
    problem = load_problem(tmp_path / "lr.npy", SolveConfig(), (16, 16))
    assert problem.operator == "kcrop:7x7"
    np.testing.assert_allclose(problem.y, m.kspace, rtol=0, atol=1e-5 * np.abs(m.kspace).max())
    assert problem.scale == pytest.approx(m.scale, rel=0.2)  # LR intensities are in HR units
    noisy = load_problem(tmp_path / "lr.npy", SolveConfig(noise_sigma=0.7), (16, 16))
    assert noisy.noise_sigma == pytest.approx(0.7 * 16 / 7)  # pixel noise -> k-space noise


def _smooth() -> np.ndarray:
    i, j = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
    return (50 * np.exp(-((i - 8) ** 2 + (j - 8) ** 2) / 30.0) + 20).astype(np.float64)


def test_manifest_rerun_is_bit_identical(run, hr_nifti, tiny_prior, tmp_path):
    meas = tmp_path / "m.npz"
    assert run("simulate", hr_nifti, "--operator", "kcrop:8", "--noise-sigma", "0.5",
               "--out", meas).exit_code == 0
    first, prior = tmp_path / "a.npy", tmp_path / "prior.ckpt"
    prior.write_bytes(Path(tiny_prior).read_bytes())
    r = run("solve", meas, "--prior", prior, "--samples", "2", "--batch", "2", "--seed",
            "3", "--out", first, *FAST)
    assert r.exit_code == 0, r.output
    again = tmp_path / "b.npy"
    r = run("solve", "--manifest", f"{first}.manifest.json", "--out", again, "--quiet")
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(np.load(first), np.load(again))
    np.testing.assert_array_equal(np.load(tmp_path / "a_std.npy"), np.load(tmp_path / "b_std.npy"))
    assert "other software" not in r.stderr  # same versions: no note
    # a manifest written by other software is still repeated, with a note saying what changed
    record = json.loads(Path(f"{first}.manifest.json").read_text())
    record["environment"]["torch"] = "1.0.0"
    old = tmp_path / "old.manifest.json"
    old.write_text(json.dumps(record))
    r = run("solve", "--manifest", old, "--out", tmp_path / "g.npy", "--quiet")
    assert r.exit_code == 0, r.output
    assert "other software (torch 1.0.0 -> " in r.stderr and "bit-identical" in r.stderr
    other = tmp_path / "c.npy"
    r = run("solve", "--manifest", f"{first}.manifest.json", "--seed", "4", "--out", other,
            "--quiet")
    assert r.exit_code == 0 and not np.array_equal(np.load(first), np.load(other))
    # another input given explicitly: the recorded settings applied to it, recorded anew
    meas2 = tmp_path / "m2.npz"
    assert run("simulate", hr_nifti, "--operator", "kcrop:8", "--noise-sigma", "0.5",
               "--seed", "1", "--out", meas2).exit_code == 0
    r = run("solve", meas2, "--manifest", f"{first}.manifest.json", "--out", tmp_path / "e.npy",
            "--quiet")
    assert r.exit_code == 0, r.output
    record = json.loads((tmp_path / "e.npy.manifest.json").read_text())
    assert record["input"]["path"] == str(meas2.resolve()) and record["config"]["seed"] == 3
    prior.write_bytes(b"changed")  # the recorded prior file changed: refused ...
    r = run("solve", "--manifest", f"{first}.manifest.json", "--out", tmp_path / "f.npy",
            "--quiet")
    assert r.exit_code == 2 and "prior file differs" in r.stderr, r.output
    r = run("solve", "--manifest", f"{first}.manifest.json", "--prior", tiny_prior,
            "--out", tmp_path / "f.npy", "--quiet")  # ... unless a prior is named explicitly
    assert r.exit_code == 0, r.output
    np.savez(meas, x=1)  # the recorded input changed: refused
    r = run("solve", "--manifest", f"{first}.manifest.json", "--out", tmp_path / "d.npy")
    assert r.exit_code == 2 and "differs from the one the manifest recorded" in r.stderr


def test_manifest_rerun_measures_against_the_recorded_reference(run, hr_nifti, tiny_prior,
                                                                  tmp_path):
    meas, first = tmp_path / "m.npz", tmp_path / "a.npy"
    assert run("simulate", hr_nifti, "--operator", "kcrop:8", "--out", meas).exit_code == 0
    r = run("solve", meas, "--prior", tiny_prior, "--reference", hr_nifti, "--out", first, *FAST)
    assert r.exit_code == 0, r.output
    recorded = json.loads((tmp_path / "a.npy.manifest.json").read_text())
    r = run("solve", "--manifest", f"{first}.manifest.json", "--out", tmp_path / "b.npy", *FAST)
    assert r.exit_code == 0, r.output
    again = json.loads((tmp_path / "b.npy.manifest.json").read_text())
    assert again["reference"] == recorded["reference"]
    assert again["metrics"] == recorded["metrics"] is not None
    ref = Path(hr_nifti)
    ref.rename(tmp_path / "moved.nii.gz")  # the recorded reference is gone: one clear line
    r = run("solve", "--manifest", f"{first}.manifest.json", "--out", tmp_path / "c.npy", *FAST)
    assert r.exit_code == 2 and f"reference {ref} does not exist" in r.stderr, r.output
    nib.save(nib.Nifti1Image(np.ones((16, 16, 3), np.float32), np.eye(4)), ref)  # changed
    r = run("solve", "--manifest", f"{first}.manifest.json", "--out", tmp_path / "c.npy", *FAST)
    assert r.exit_code == 2 and "reference file differs" in r.stderr, r.output
    r = run("solve", "--manifest", f"{first}.manifest.json", "--reference",
            tmp_path / "moved.nii.gz", "--out", tmp_path / "c.npy", *FAST)  # named explicitly
    assert r.exit_code == 0, r.output


def test_config_file_and_flag_override(run, hr_nifti, tiny_prior, tmp_path):
    meas = tmp_path / "m.npz"
    assert run("simulate", hr_nifti, "--operator", "kcrop:8", "--out", meas).exit_code == 0
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'prior = "{tiny_prior}"\nsteps = 3\nsamples = 1\nlambda = 0.5\n'
                   "[options]\neta = 0.0\n")
    r = run("solve", meas, "--config", cfg, "--steps", "2", "--out", tmp_path / "r.npy", "--quiet")
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "r.npy.manifest.json").read_text())
    assert manifest["config"]["steps"] == 2 and manifest["config"]["lambda"] == 0.5
    assert manifest["config"]["options"] == {"eta": 0.0}
    assert manifest["config_file"]["sha256"]


def test_png_2d_round_trip(run, tiny_prior, tmp_path):
    hr = tmp_path / "hr.png"
    from PIL import Image

    Image.fromarray((_smooth() * 3).astype(np.uint8)).save(hr)
    assert run("simulate", hr, "--operator", "kcrop:8", "--out", tmp_path / "m.npz",
               "--lowres-out", tmp_path / "lr.png").exit_code == 0
    r = run("solve", tmp_path / "lr.png", "--prior", tiny_prior, "--out", tmp_path / "r.png",
            *FAST)
    assert r.exit_code == 0, r.output
    assert np.asarray(Image.open(tmp_path / "r.png")).shape == (16, 16)


@pytest.mark.parametrize(("ramp", "bound"), [(0.0, 1e-4), (0.05, None)])
def test_phase_option_solves_complex_kspace(run, tiny_prior, tmp_path, ramp, bound):
    """k-space of a complex image: with a constant phase --phase is exactly data-consistent; with
    a smooth phase ramp it fits the data better than solving as if the image were real."""
    from invdiff.io import Measurement, write_measurement
    from invdiff.io.measurement import centred_fft2

    i, j = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
    image = _smooth() * np.exp(1j * (0.9 + ramp * (i - j)))
    y = centred_fft2(image)[None, 4:12, 4:12]
    write_measurement(tmp_path / "m.npz", Measurement(y.astype(np.complex64), "kcrop:8", (16, 16)))
    residual = {}
    for flag in ("--phase", "--no-phase"):
        out = tmp_path / f"r{flag}.npy"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = run("solve", tmp_path / "m.npz", "--prior", tiny_prior, flag, "--out", out, *FAST)
        assert r.exit_code == 0, r.output
        told = [w for w in caught if issubclass(w.category, MeasurementWarning)]
        # solved as a real image, complex data are flagged before the work; with --phase not
        assert bool(told) is (flag == "--no-phase")
        assert all("needs --phase" in str(w.message) for w in told)
        manifest = json.loads(Path(f"{out}.manifest.json").read_text())
        assert manifest["config"]["phase"] is (flag == "--phase")
        residual[flag] = manifest["residual"]
        assert np.load(out).shape == (16, 16)
    assert residual["--phase"] < 0.5 * residual["--no-phase"]
    if bound is not None:
        assert residual["--phase"] < bound


def test_phase_needs_kspace(run, tiny_prior, tmp_path):
    np.save(tmp_path / "lr.npy", _smooth()[::2, ::2])
    r = run("solve", tmp_path / "lr.npy", "--operator", "downsample:2", "--prior", tiny_prior,
            "--phase", "--out", tmp_path / "r.npy", *FAST)
    assert r.exit_code == 2 and "needs a k-space operator" in r.stderr


def test_progress_moves_within_a_batch(run, hr_nifti, tiny_prior, tmp_path):
    """One batch of 3 slices, 4 steps: the bar gets per-step fractions, not just 0 and 3."""
    from invdiff.pipeline.run import SolveRequest, run_solve

    reports: list[tuple[float, int]] = []
    config = SolveConfig(prior=tiny_prior, steps=4, batch=8, operator="kcrop:8")
    lr = tmp_path / "lr.npy"
    np.save(lr, np.random.default_rng(0).random((8, 8)).astype(np.float32) + 1)
    run_solve(SolveRequest(input=lr, out=tmp_path / "o.npy", config=config),
              lambda done, total: reports.append((done, total)))
    assert reports == [(0, 1), (0.25, 1), (0.5, 1), (0.75, 1), (1.0, 1), (1, 1)]
    meas = tmp_path / "m.npz"  # a volume in batches of 2: monotone, ends at 3 of 3
    assert run("simulate", hr_nifti, "--operator", "kcrop:8", "--out", meas).exit_code == 0
    reports.clear()
    run_solve(SolveRequest(input=meas, out=tmp_path / "v.npy",
                           config=SolveConfig(prior=tiny_prior, steps=2, batch=2)),
              lambda done, total: reports.append((done, total)))
    assert [d for d, _ in reports] == [0, 1, 2, 2, 2.5, 3, 3]


def test_single_slice_nifti_volume(run, tiny_prior, tmp_path):
    """(H, W, 1) is how scanners and viewers store one slice; it was refused as 'too small'."""
    lr = tmp_path / "one.nii.gz"
    nib.save(nib.Nifti1Image((np.random.default_rng(0).random((8, 8, 1)) + 1)
                             .astype(np.float32), np.diag([2.0, 2.0, 3.0, 1.0])), lr)
    r = run("solve", lr, "--prior", tiny_prior, "--out", tmp_path / "o.nii.gz", *FAST)
    assert r.exit_code == 0, r.output
    out = nib.load(tmp_path / "o.nii.gz")
    assert out.shape == (16, 16, 1)
    np.testing.assert_allclose(np.diag(out.affine)[:3], [1.0, 1.0, 3.0])


def test_overwrite_names_outputs_left_from_an_earlier_run(run, hr_nifti, tiny_prior, tmp_path):
    meas, out = tmp_path / "m.npz", tmp_path / "r.nii.gz"
    assert run("simulate", hr_nifti, "--operator", "kcrop:8", "--out", meas).exit_code == 0
    r = run("solve", meas, "--prior", tiny_prior, "--samples", "2", "--out", out, *FAST)
    assert r.exit_code == 0 and "left from an earlier run" not in r.stderr
    r = run("solve", meas, "--prior", tiny_prior, "--samples", "1", "--out", out, "--overwrite",
            *FAST)
    assert r.exit_code == 0, r.output
    assert f"note: {tmp_path / 'r_std.nii.gz'} is left from an earlier run" in r.stderr
    assert (tmp_path / "r_std.nii.gz").exists()  # named, never deleted


def test_volume_with_an_empty_slice(run, tiny_prior, tmp_path):
    """A zero slice (padding at a volume's edge) solves; in the prior's range its k-space is the
    DC spike ``-A(1)``, not zero, and the manifest stays valid JSON."""
    from tests.cli.conftest import AFFINE, blob_volume

    vol = blob_volume()
    vol[..., 0] = 0.0
    hr = tmp_path / "hr.nii.gz"
    nib.save(nib.Nifti1Image(vol, AFFINE), hr)
    meas, rec = tmp_path / "m.npz", tmp_path / "rec.nii.gz"
    assert run("simulate", hr, "--operator", "kcrop:8", "--out", meas).exit_code == 0
    r = run("solve", meas, "--prior", tiny_prior, "--out", rec, *FAST)
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "rec.nii.gz.manifest.json").read_text())
    assert manifest["residual"] < 1e-4
    assert manifest["batches"][0]["sample_residual"] < 1e-4


def test_batch_info_skips_undefined_residuals():
    import torch

    from invdiff.pipeline.solve import _batch_info

    info = {"nfe": 2, "residual": torch.tensor([[float("nan"), 0.5], [0.25, float("nan")]])}
    assert _batch_info(0, 2, info) == {"slices": [0, 2], "nfe": 2, "sample_residual": 0.375}
    info = {"residual": torch.full((1, 2), float("nan"))}
    assert _batch_info(0, 2, info)["sample_residual"] is None


def test_deterministic_solver_writes_no_std_map(run, hr_nifti, tiny_prior, tmp_path):
    """Under the default 4 samples a baseline runs once: no all-zero OUT_std, manifest says 1."""
    meas, out = tmp_path / "m.npz", tmp_path / "zf.nii.gz"
    assert run("simulate", hr_nifti, "--operator", "kcrop:8", "--out", meas).exit_code == 0
    r = run("solve", meas, "--prior", tiny_prior, "--solver", "zero-fill", "--out", out, "--quiet")
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "zf_std.nii.gz").exists()
    assert json.loads((tmp_path / "zf.nii.gz.manifest.json").read_text())["config"]["samples"] == 1
    r = run("solve", meas, "--prior", tiny_prior, "--out", tmp_path / "km.nii.gz", *FAST)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "km_std.nii.gz").exists()  # a posterior sampler keeps the default 4


@pytest.mark.parametrize("kind", ["image", "measurement"])
def test_solve_reads_its_input_once(run, hr_nifti, tiny_prior, tmp_path, monkeypatch, kind):
    """The input is validated before the prior loads and that same read is solved (no second
    read of a possibly big volume)."""
    import invdiff.pipeline.problem as problem
    import invdiff.pipeline.run as run_module

    if kind == "measurement":
        src = tmp_path / "m.npz"
        assert run("simulate", hr_nifti, "--operator", "kcrop:8", "--out", src).exit_code == 0
        name = "read_measurement"
    else:
        src = tmp_path / "lr.nii.gz"
        assert run("simulate", hr_nifti, "--operator", "kcrop:8", "--out", tmp_path / "m.npz",
                   "--lowres-out", src).exit_code == 0
        name = "read_image"
    calls = []
    real = getattr(problem, name)
    for module in (problem, run_module):  # wherever the pipeline may call it from
        monkeypatch.setattr(module, name, lambda *a, **k: calls.append(a) or real(*a, **k),
                            raising=False)
    r = run("solve", src, "--prior", tiny_prior, "--samples", "1", "--out",
            tmp_path / "rec.nii.gz", *FAST)
    assert r.exit_code == 0, r.output
    assert len(calls) == 1


def test_spatial_unit_is_carried_to_every_nifti_output(run, tiny_prior, tmp_path):
    """The affine's unit in the input header (here metres) reaches the measurement, the
    low-resolution image and the reconstructions from either input; unknown stays unknown."""
    from tests.cli.conftest import AFFINE, blob_volume

    img = nib.Nifti1Image(blob_volume(), AFFINE)
    img.header.set_xyzt_units(xyz="meter")
    hr = tmp_path / "hr.nii.gz"
    nib.save(img, hr)
    meas, lr = tmp_path / "m.npz", tmp_path / "lr.nii.gz"
    assert run("simulate", hr, "--operator", "kcrop:8", "--out", meas,
               "--lowres-out", lr).exit_code == 0
    assert read_measurement(meas).source_unit == "meter"
    assert nib.load(lr).header.get_xyzt_units()[0] == "meter"
    for name, source in (("a.nii.gz", meas), ("b.nii.gz", lr)):
        r = run("solve", source, "--prior", tiny_prior, "--out", tmp_path / name, *FAST)
        assert r.exit_code == 0, r.output
        for out in (name, name.replace(".nii", "_std.nii")):
            assert nib.load(tmp_path / out).header.get_xyzt_units()[0] == "meter", out
    plain = tmp_path / "plain.nii.gz"
    nib.save(nib.Nifti1Image(blob_volume(), AFFINE), plain)  # no unit in the header
    pm, po = tmp_path / "p.npz", tmp_path / "p.nii.gz"
    assert run("simulate", plain, "--operator", "kcrop:8", "--out", pm).exit_code == 0
    assert read_measurement(pm).source_unit is None
    r = run("solve", pm, "--prior", tiny_prior, "--out", po, *FAST)
    assert r.exit_code == 0 and nib.load(po).header.get_xyzt_units()[0] == "unknown"


def test_nifti_space_code_is_carried_to_every_nifti_output(run, tiny_prior, tmp_path):
    """An MNI152 volume (sform/qform code 4) gives a measurement, a low-resolution image and
    reconstructions (from either input) labelled MNI152, not scanner; a scanner-space source
    keeps code 1 and its measurement has no source_space key (older readers refuse it)."""
    from tests.cli.conftest import AFFINE, blob_volume

    img = nib.Nifti1Image(blob_volume(), AFFINE)
    img.set_sform(AFFINE, code=4)
    img.set_qform(AFFINE, code=4)
    hr = tmp_path / "hr.nii.gz"
    nib.save(img, hr)
    meas, lr = tmp_path / "m.npz", tmp_path / "lr.nii.gz"
    assert run("simulate", hr, "--operator", "kcrop:8", "--out", meas,
               "--lowres-out", lr).exit_code == 0
    assert read_measurement(meas).source_space == 4

    def codes(path):
        header = nib.load(path).header
        return int(header["sform_code"]), int(header["qform_code"])

    assert codes(lr) == (4, 4)
    for name, source in (("a.nii.gz", meas), ("b.nii.gz", lr)):
        r = run("solve", source, "--prior", tiny_prior, "--out", tmp_path / name, "--save-samples",
                *FAST)
        assert r.exit_code == 0, r.output
        for out in (name, name.replace(".nii", "_std.nii"), name.replace(".nii", "_samples.nii")):
            assert codes(tmp_path / out) == (4, 4), out
    plain = tmp_path / "plain.nii.gz"
    nib.save(nib.Nifti1Image(blob_volume(), AFFINE), plain)  # nibabel's default: sform code 2
    pm, po = tmp_path / "p.npz", tmp_path / "p.nii.gz"
    assert run("simulate", plain, "--operator", "kcrop:8", "--out", pm).exit_code == 0
    assert read_measurement(pm).source_space == 2
    scanner = tmp_path / "scanner.nii.gz"
    img = nib.Nifti1Image(blob_volume(), AFFINE)
    img.set_sform(AFFINE, code=1)
    nib.save(img, scanner)
    sm = tmp_path / "s.npz"
    assert run("simulate", scanner, "--operator", "kcrop:8", "--out", sm).exit_code == 0
    assert "source_space" not in np.load(sm).files
    assert run("solve", sm, "--prior", tiny_prior, "--out", po, *FAST).exit_code == 0
    assert codes(po) == (1, 1)


def test_manifest_records_and_checks_the_operator_files(run, hr_nifti, tiny_prior, tmp_path,
                                                        monkeypatch):
    """A mask named by the operator spec is part of the run: recorded with its SHA-256, and a
    re-run from the manifest refuses a changed mask instead of silently using it (before the
    prior is loaded)."""
    mask = tmp_path / "mask.npy"
    rows = np.zeros((16, 16), dtype=bool)
    rows[::2] = True
    rows[6:10] = True
    np.save(mask, rows)
    meas = tmp_path / "k.npz"
    assert run("simulate", hr_nifti, "--operator", f"kmask:file={mask}", "--out",
               meas).exit_code == 0
    first = tmp_path / "a.npy"
    r = run("solve", meas, "--solver", "zero-fill", "--prior", tiny_prior, "--out", first,
            "--quiet")
    assert r.exit_code == 0, r.output
    record = json.loads((tmp_path / "a.npy.manifest.json").read_text())
    assert list(record["input"]["operator_files"]) == [str(mask.resolve())]
    again = run("solve", "--manifest", f"{first}.manifest.json", "--out", tmp_path / "b.npy",
                "--quiet")
    assert again.exit_code == 0, again.output
    rows[3] = True
    np.save(mask, rows)

    def no_prior(*_, **__):
        raise AssertionError("the prior was loaded before the operator files were checked")

    monkeypatch.setattr("invdiff.priors.registry.resolve_prior", no_prior)
    r = run("solve", "--manifest", f"{first}.manifest.json", "--out", tmp_path / "c.npy",
            "--quiet")
    assert r.exit_code == 2 and f"operator file {mask.resolve()} has changed" in r.stderr


def test_a_mask_that_does_not_describe_the_data_is_flagged(run, hr_nifti, tiny_prior, tmp_path):
    """k-space measured on other rows than the operator's mask says: warned before solving; the
    exactly simulated measurement is not."""
    meas = tmp_path / "k.npz"
    assert run("simulate", hr_nifti, "--operator", "kmask:accel=2,seed=1", "--out",
               meas).exit_code == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ok = run("solve", meas, "--solver", "zero-fill", "--prior", tiny_prior, "--quiet",
                 "--out", tmp_path / "a.npy")
    assert ok.exit_code == 0 and not [w for w in caught if w.category is MeasurementWarning]
    arrays = dict(np.load(meas))
    arrays["kspace"] = np.roll(arrays["kspace"], 1, axis=-2)  # acquired on the other rows
    np.savez(tmp_path / "shifted.npz", **arrays)
    with pytest.warns(MeasurementWarning, match="operator does not describe the data"):
        run("solve", tmp_path / "shifted.npz", "--solver", "zero-fill", "--prior", tiny_prior,
            "--quiet", "--out", tmp_path / "b.npy")


def test_lambda_of_a_solver_without_one_is_not_recorded_as_used(run, hr_nifti, tiny_prior,
                                                                 tmp_path):
    meas = tmp_path / "m.npz"
    assert run("simulate", hr_nifti, "--operator", "kcrop:8", "--out", meas).exit_code == 0
    with pytest.warns(UserWarning, match="solver dps has no lambda: lambda 0.3 is not used"):
        r = run("solve", meas, "--solver", "dps", "--lambda", "0.3", "--prior", tiny_prior,
                "--steps", "2", "--samples", "1", "--quiet", "--out", tmp_path / "a.npy")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "a.npy.manifest.json").read_text())["config"]["lambda"] == 1.0
    with pytest.warns(UserWarning, match="solver bicubic has no lambda: lambda 0.3 is not used"):
        r = run("solve", meas, "--solver", "bicubic", "--lambda", "0.3", "--prior", tiny_prior,
                "--quiet", "--out", tmp_path / "b.npy")  # a baseline that forwarded **kw
    assert r.exit_code == 0, r.output
