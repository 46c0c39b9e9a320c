"""End to end through the installed console script: simulate -> solve -> evaluate on real MRI.

Uses the shipped validation slab (8 axial 128x128 slices of a held-out subject) and an untrained
tiny VDM at 128x128, so the numbers say nothing about quality; the test checks that the files,
geometry, manifest and metrics fit together across separate processes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

SLAB = Path(__file__).resolve().parents[2] / "invdiff" / "data" / "validation_slab.nii.gz"


def _invdiff(*args, cwd: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("invdiff", path=str(Path(sys.executable).parent)) or "invdiff"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "120"}
    return subprocess.run([exe, *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def prior128(tmp_path_factory) -> Path:
    from invdiff.priors.checkpoint import save_prior
    from invdiff.priors.config import VDMConfig
    from invdiff.priors.vdm import VDM

    path = tmp_path_factory.mktemp("prior128") / "tiny128.ckpt"
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = VDM(VDMConfig.preset("tiny", image_size=128),
                    generator=torch.Generator().manual_seed(0))
    save_prior(path, model)
    return path


@pytest.mark.slow
def test_simulate_solve_evaluate_real_volume(tmp_path, prior128):
    assert SLAB.is_file()
    r = _invdiff("simulate", SLAB, "--operator", "kcrop:32", "--noise-sigma", "0.5",
                 "--out", "meas.npz", "--lowres-out", "lowres.nii.gz", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = _invdiff("solve", "meas.npz", "--prior", prior128, "--steps", "2", "--batch", "4",
                 "--reference", SLAB, "--out", "recon.nii.gz", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "slices" in r.stderr and "wrote recon.nii.gz" in r.stderr  # progress bar, summary
    hr, rec = nib.load(SLAB), nib.load(tmp_path / "recon.nii.gz")
    assert rec.shape == hr.shape == (128, 128, 8)
    np.testing.assert_allclose(rec.affine, hr.affine, atol=1e-5)
    low = nib.load(tmp_path / "lowres.nii.gz")
    assert low.shape == (32, 32, 8)
    np.testing.assert_allclose(low.header.get_zooms()[:2], np.array(hr.header.get_zooms()[:2]) * 4,
                               rtol=1e-5)
    manifest = json.loads((tmp_path / "recon.nii.gz.manifest.json").read_text())
    assert manifest["input"]["slices"] == 8 and manifest["input"]["noise_sigma"] == 0.5
    r = _invdiff("evaluate", "--reference", SLAB, "--recon", "recon.nii.gz", "--json",
                 cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    metrics = json.loads(r.stdout)
    assert metrics["psnr"] == pytest.approx(manifest["metrics"]["all_voxels"]["psnr"])
    assert np.isfinite(metrics["psnr"]) and len(metrics["slices"]) == 8
    r = _invdiff("solve", "meas.npz", "--prior", prior128, "--out", "recon.nii.gz", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: output")


@pytest.mark.slow
def test_train_command_writes_a_usable_prior(run, tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, train=rng.uniform(-1, 1, (8, 16, 16)).astype(np.float16),
             val=rng.uniform(-1, 1, (4, 16, 16)).astype(np.float16))
    r = run("train", data, "--out", tmp_path / "p.ckpt", "--preset", "tiny", "--steps", "1",
            "--batch-size", "4", "--val-every", "100", "--ckpt-every", "100", "--device", "cpu",
            "--quiet")
    assert r.exit_code == 0, r.output
    from invdiff.priors.registry import resolve_prior

    assert resolve_prior(str(tmp_path / "p.ckpt")).image_shape == (1, 16, 16)
    r = run("train", tmp_path / "missing.npz", "--out", tmp_path / "q.ckpt", "--quiet")
    assert r.exit_code == 2 and "missing.npz" in r.stderr


def test_train_passes_orientation_choice_through(run, tmp_path, monkeypatch):
    import invdiff.training

    seen = {}

    def fake_cli_train(data, out, **kwargs):
        seen.update(kwargs)
        return out

    monkeypatch.setattr(invdiff.training, "cli_train", fake_cli_train)
    for flag, expected in (("--reorient", True), ("--no-reorient", False)):
        r = run("train", tmp_path / "d.npz", "--out", tmp_path / "p.ckpt", flag, "--quiet")
        assert r.exit_code == 0, r.output
        assert seen["reorient"] is expected
