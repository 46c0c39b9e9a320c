"""Help texts, listings, the operator check command, and slice orientation."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from invdiff.pipeline.orientation import ReorientedPrior, SliceOrientation, display_orientation

COMMANDS = [
    ["simulate"], ["solve"], ["evaluate"], ["priors", "list"], ["operators", "list"],
    ["operators", "check"], ["solvers", "list"], ["train"], ["demo"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_shows_a_worked_example(run, command):
    r = run(*command, "--help")
    assert r.exit_code == 0
    assert "Example" in r.stdout and f"invdiff {' '.join(command)}" in r.stdout


def test_listings(run):
    r = run("operators", "list")
    assert r.exit_code == 0 and "kcrop" in r.stdout and "fft" in r.stdout
    r = run("solvers", "list")
    assert r.exit_code == 0 and "kspace-mix" in r.stdout and "zero-fill" in r.stdout
    r = run("priors", "list")
    assert r.exit_code == 0 and "default" in r.stdout


def test_listing_summary_keeps_the_whole_first_paragraph():
    from invdiff.cli.listing import summary

    doc = """DPS: ancestral steps (Chung et al. 2023,
    Algorithm 1), see :func:`~invdiff.solvers.steps.step`.

    Details that are not part of the summary.
    """
    assert summary(doc) == (
        "DPS: ancestral steps (Chung et al. 2023, Algorithm 1), see invdiff.solvers.steps.step."
    )
    assert summary(None) == ""


def test_operators_check(run):
    r = run("operators", "check", "kcrop:16x9", "--shape", "37x31")
    assert r.exit_code == 0, r.output
    assert "PASS" in r.stdout
    cuda_line = "CPU/CUDA agreement" if torch.cuda.is_available() else "not checked (no CUDA"
    assert cuda_line in r.stdout  # the CUDA check is never silently absent
    r = run("operators", "check", "kcrop:8", "--shape", "3y4")
    assert r.exit_code == 2
    r = run("operators", "check", "kcrop:8", "--shape", "16", "--batch", "0")  # was a traceback
    assert r.exit_code == 2 and r.stderr.strip() == "error: --batch must be >= 1, got 0"


def test_operators_check_reports_an_operator_that_raises_as_a_failure(run, monkeypatch):
    from invdiff.operators import fourier

    def broken(self, x):
        raise RuntimeError("plugin bug")

    monkeypatch.setattr(fourier.KCrop, "_apply", broken)
    r = run("operators", "check", "kcrop:8", "--shape", "16")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "FAIL the operator raised RuntimeError: plugin bug" in r.stdout


def _display(volume_ras: np.ndarray, k: int, axis: int) -> np.ndarray:
    """The training data's convention (scripts/build_dataset.py)."""
    return np.flipud(np.take(volume_ras, k, axis=axis).T)


@pytest.mark.parametrize("axcodes", [("R", "A", "S"), ("L", "P", "S"), ("A", "S", "L"),
                                     ("S", "R", "P"), ("P", "I", "R")])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_display_orientation_matches_training_slices(axcodes, axis):
    """Slicing a stored volume + the orientation == slicing its RAS version as training does."""
    rng = np.random.default_rng(0)
    ras = rng.random((5, 6, 7))
    ornt = nib.orientations.ornt_transform(
        nib.orientations.axcodes2ornt(("R", "A", "S")), nib.orientations.axcodes2ornt(axcodes))
    stored = nib.orientations.apply_orientation(ras, ornt)
    affine = nib.orientations.inv_ornt_aff(ornt, ras.shape)  # stored voxel -> RAS voxel
    assert nib.aff2axcodes(affine) == axcodes
    to_ras = nib.io_orientation(affine)  # stored axis -> (RAS axis, sign)
    ras_axis = int(to_ras[axis, 0])
    o = display_orientation(affine, axis)
    for k in range(stored.shape[axis]):
        got = o.to_display(torch.from_numpy(np.take(stored, k, axis=axis).copy())).numpy()
        k_ras = k if to_ras[axis, 1] > 0 else stored.shape[axis] - 1 - k
        np.testing.assert_array_equal(got, _display(ras, k_ras, ras_axis))


class _Linear:
    """A prior stand-in whose eps depends on position, to expose a wrong permutation."""

    image_shape = (1, 4, 6)
    data_range = (-1.0, 1.0)
    device = torch.device("cpu")

    def gamma(self, t):
        return t

    def eps(self, x, t):
        w = torch.arange(24, dtype=x.dtype).reshape(4, 6)
        return x * w


def test_reoriented_prior_is_the_pushforward():
    o = SliceOrientation(transpose=True, flip_rows=True, flip_cols=False)
    x = torch.randn(2, 1, 6, 4)
    p = ReorientedPrior.__new__(ReorientedPrior)
    ReorientedPrior.__init__(p, _Linear(), o)  # type: ignore[arg-type]
    assert p.image_shape == (1, 6, 4)
    expected = o.from_display(_Linear().eps(o.to_display(x), 0.0))
    torch.testing.assert_close(p.eps(x, torch.tensor(0.5)), expected)
    torch.testing.assert_close(o.from_display(o.to_display(x)), x)


def test_shipped_slab_is_presented_like_the_training_data():
    """The validation slab's slices, reoriented for the prior, match the shipped display-oriented
    validation slices of the same subject (and the raw voxel order does not)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "invdiff" / "data"
    img = nib.load(root / "validation_slab.nii.gz")
    val = np.load(root / "brain128.npz")["val"].astype(np.float64)
    val = (val - val.mean(axis=(1, 2), keepdims=True)) / val.std(axis=(1, 2), keepdims=True)
    stored = np.asarray(img.dataobj, dtype=np.float64)[:, :, 4]

    def best(x: np.ndarray) -> float:
        x = (x - x.mean()) / x.std()
        return float(np.max(np.mean(val * x, axis=(1, 2))))

    shown = display_orientation(img.affine, 2).to_display(torch.from_numpy(stored)).numpy()
    assert best(shown) > 0.97 > 0.8 > best(stored)


def test_no_reorient_keeps_voxel_order(tmp_path):
    from invdiff.config import SolveConfig
    from invdiff.pipeline.problem import load_problem

    path = tmp_path / "lr.nii"
    nib.save(nib.Nifti1Image(np.ones((8, 6, 2), np.float32), np.eye(4)), path)
    shown = load_problem(path, SolveConfig(), (16, 16)).orientation
    raw = load_problem(path, SolveConfig(reorient=False), (16, 16)).orientation
    assert shown == SliceOrientation(transpose=True, flip_rows=True) and raw.is_identity


@pytest.mark.parametrize(("argv", "fragment"), [
    (["operators", "check", "kcrop:4"], "Missing option '--shape'"),
    (["solve", "m.npz", "--steps", "x"], "'--steps'"),
    (["bogus"], "No such command 'bogus'"),
])
def test_usage_errors_are_one_line(monkeypatch, capsys, argv, fragment):
    """The console script prints click's usage errors as one 'error:' line, status 2."""
    from invdiff.cli.app import main

    monkeypatch.setattr("sys.argv", ["invdiff", *argv])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and fragment in line and line.endswith("--help')"), line


def test_console_script_exit_status(monkeypatch, capsys):
    from invdiff.cli.app import main

    monkeypatch.setattr("sys.argv", ["invdiff", "operators", "list"])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 0 and "kcrop" in capsys.readouterr().out
    monkeypatch.setattr("sys.argv", ["invdiff", "operators"])  # no subcommand: help, status 2
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 2 and "check" in capsys.readouterr().out


def test_demo_table_shows_units(run, monkeypatch, tmp_path):
    """The demo's table (run_demo stubbed: the real one takes minutes) keeps 'PSNR [dB]'."""
    import invdiff.demo
    import invdiff.priors.registry

    row = {"factor": "4x (32->128)", "method": "zero-fill", "psnr": 24.5, "ssim": 0.75,
           "nmse": 0.05, "s_per_slice": 0.0, "nfe": 0}
    monkeypatch.setattr(invdiff.priors.registry, "resolve_prior", lambda name, device: None)
    monkeypatch.setattr(invdiff.demo, "run_demo", lambda config, prior, report: [row])
    r = run("demo", "--out", tmp_path / "d", "--prior", "p.ckpt")
    assert r.exit_code == 0, r.output
    assert "PSNR [dB]" in r.stdout and "24.50" in r.stdout


@pytest.mark.parametrize(("device", "message"), [
    ("gpu", "device must be cpu, cuda or cuda:N, got 'gpu'"),
    ("cuda", "CUDA is not available"),
])
def test_demo_refuses_unusable_devices_in_one_line(run, monkeypatch, tmp_path, device, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    r = run("demo", "--out", tmp_path / "d", "--device", device)
    assert r.exit_code == 2 and "Traceback" not in r.output
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line, line


def test_version(run):
    r = run("--version")
    assert r.exit_code == 0
    import invdiff

    assert r.stdout.startswith(f"invdiff {invdiff.__version__} (torch ")
