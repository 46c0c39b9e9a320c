import csv

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from invdiff.cli.app import app
from invdiff.demo import validation_volume
from invdiff.priors.checkpoint import save_prior
from invdiff.priors.vdm import VDM, VDMConfig


@pytest.fixture(scope="module")
def prior_128(tmp_path_factory):
    """An untrained 128x128 VDM small enough to run the demo in seconds."""
    torch.manual_seed(0)
    cfg = VDMConfig(image_size=128, unet_channels=(4, 8), num_res_blocks=1, attn_resolutions=(),
                    schedule_features=8)
    path = tmp_path_factory.mktemp("prior") / "tiny128.ckpt"
    save_prior(path, VDM(cfg))
    return path


def test_validation_volume_is_the_central_slab_with_its_affine():
    vol = validation_volume((2, 6))
    full = validation_volume((0, 8))
    assert vol.data.shape == (128, 128, 4)
    np.testing.assert_array_equal(vol.data, full.data[:, :, 2:6])
    # voxel (0, 0, 0) of the sub-slab is voxel (0, 0, 2) of the full slab in world coordinates
    np.testing.assert_allclose(vol.affine @ [0, 0, 0, 1], full.affine @ [0, 0, 2, 1])


def test_demo_writes_figures_and_metrics_and_refuses_a_full_folder(tmp_path, prior_128):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--prior", str(prior_128), "--steps", "2", "--samples", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in ("comparison_32.png", "comparison_64.png", "lambda_sweep_32.png",
                 "uncertainty_64.png", "metrics.csv", "kcrop32/measurement.npz"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    methods = {r["method"] for r in rows}
    assert {"zero-fill", "bilinear", "bicubic", "kspace-mix (mean of 2)"} <= methods
    zf = {r["factor"]: float(r["psnr"]) for r in rows if r["method"] == "zero-fill"}
    assert zf["2x (64->128)"] > zf["4x (32->128)"] > 15  # more k-space, better zero-fill
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "not empty" in again.output


def test_lambda_sweep_draws_one_sample_per_lambda(monkeypatch):
    """The sweep figure shows one sample per lambda (seed Fig. 4), whatever the solve default."""
    import invdiff.demo as demo
    from invdiff.config import SolveConfig

    seen = []

    def fake_run(problem, prior, solver, config, n, name):
        seen.append((name, config.samples))
        return demo.MethodRun(name, n, np.zeros((1, 2, 2)), None, None, 0.0, 0)

    monkeypatch.setattr(demo, "run_method", fake_run)
    cfg = demo.DemoConfig(out="unused", sweep=(0.0, 0.5))
    out = demo.lambda_sweep(None, None, SolveConfig(samples=4), cfg, 32)
    assert set(out) == {0.0, 0.5}
    assert seen == [("unguided", 1), ("lambda=0.5", 1)]


def test_one_sample_row_is_timed_as_one_samples_share(monkeypatch):
    """(1 sample) is the first of the run's samples; its time per slice is the run's / K."""
    import invdiff.demo as demo
    from invdiff.config import SolveConfig

    samples = np.arange(4 * 2 * 2 * 2, dtype=float).reshape(4, 2, 2, 2)
    monkeypatch.setattr(demo, "run_method", lambda *a: demo.MethodRun(
        a[-1], 32, samples.mean(0), samples.std(0), samples, 8.0, 50))
    one, post = demo.posterior_runs(None, None, SolveConfig(samples=4), 32)
    assert one.seconds_per_slice == 2.0 and post.seconds_per_slice == 8.0
    assert np.array_equal(one.mean, samples[0]) and one.method.endswith("(1 sample)")


@pytest.mark.parametrize("extra, message", [
    (["--samples", "1"], "samples must be >= 2"),
    (["--lambda", "0"], "lambda must be in (0, 1], got 0.0"),
    (["--lambda", "1.5"], "lambda must be in (0, 1], got 1.5"),
])
def test_demo_settings_are_checked_before_anything_is_written(tmp_path, extra, message):
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out), *extra])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == f"error: {message}" or message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_validation_volume_reads_another_reference(tmp_path):
    """benchmarks/results.py --reference: the slices and affine of any axial volume."""
    from invdiff.io import write_image

    shipped = validation_volume((2, 5))
    path = tmp_path / "ref.nii.gz"
    full = validation_volume((0, 8))
    write_image(path, full.data, full.affine, "mm")
    other = validation_volume((2, 5), path)
    np.testing.assert_allclose(other.data, shipped.data)
    np.testing.assert_allclose(other.affine, shipped.affine)
    with pytest.raises(ValueError, match="not within the axial slices"):
        validation_volume((6, 9), path)


def test_results_benchmark_draws_the_mean_rows_with_the_posterior_solver(tmp_path, prior_128):
    """benchmarks/results.py --posterior diffpir --option zeta=1: the sample and mean rows are
    diffpir's, labelled with the option; malformed, unknown and out-of-range options are one-line
    usage errors."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[2] / "benchmarks" / "results.py"
    out = tmp_path / "res"
    cmd = [sys.executable, str(script), "--prior", str(prior_128), "--steps", "2", "--samples",
           "2", "--slices", "0", "2", "--factors", "32", "--methods", "zero-fill,diffpir",
           "--posterior", "diffpir", "--option", "zeta=1", "--device", "cpu", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with open(out / "metrics.csv") as f:
        methods = [row["method"] for row in csv.DictReader(f)]
    # the option labels the rows, and diffpir with its default options still gets its own row
    assert methods == ["zero-fill", "diffpir:zeta=1 (1 sample)", "diffpir:zeta=1 (mean of 2)",
                       "diffpir"]
    for option, message in (("zeta", "--option expects KEY=VALUE"),
                            ("zata=1", "solver diffpir has no option 'zata'"),
                            ("zeta=2", "zeta must be in [0, 1]")):
        bad = subprocess.run([*cmd[:-2], "--out", str(tmp_path / "bad"), "--option", option],
                             capture_output=True, text=True, timeout=300)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
        assert "Traceback" not in bad.stderr
