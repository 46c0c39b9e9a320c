"""Scripts in benchmarks/: solvers.py's solver entries with options (``NAME:KEY=VALUE``),
reference_slabs.py's slab finding."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "solvers.py"


def _run(tmp_path, solvers):
    cmd = [sys.executable, str(SCRIPT), "--prior", "gaussian", "--solvers", solvers, "--steps", "3",
           "--slices", "2", "--json", str(tmp_path / "rows.json")]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_solver_options_reach_the_solver_and_label_the_rows(tmp_path):
    done = _run(tmp_path, "zero-fill,diffpir,diffpir:zeta=1")
    assert done.returncode == 0, done.stderr
    rows = {r["solver"]: r for r in json.loads((tmp_path / "rows.json").read_text())["rows"]}
    assert list(rows) == ["zero-fill", "diffpir", "diffpir:zeta=1"]
    assert rows["diffpir"]["psnr"] != rows["diffpir:zeta=1"]["psnr"]  # the option took effect


def test_bad_solver_options_are_one_line_usage_errors(tmp_path):
    for entry, message in (("diffpir:foo=1", "solver diffpir has no option 'foo'"),
                           ("diffpir:", "solver entry 'diffpir:' expects KEY=VALUE"),
                           ("diffpir:zeta=2", "zeta must be in [0, 1]")):
        done = _run(tmp_path, entry)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr
        assert "Traceback" not in done.stderr


def test_reference_slabs_finds_the_shipped_slab_by_its_affine():
    path = Path(__file__).parents[1] / "benchmarks" / "reference_slabs.py"
    spec = importlib.util.spec_from_file_location("reference_slabs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = (-4, -4, -20)
    t1 = nib.Nifti1Image(np.zeros((4, 4, 20), np.float32), affine)
    slab = np.diag([0.5, 0.5, 2.0, 1.0])  # finer in-plane, the same slices
    slab[:3, 3] = (-4.75, -4.75, -20 + 2 * 7)
    found = module.slab_slices(t1, nib.Nifti1Image(np.zeros((16, 16, 3), np.float32), slab))
    assert found == (7, 10)
    slab[2, 3] += 1.0  # between the T1's slices
    with pytest.raises(SystemExit, match="not slices of this T1"):
        module.slab_slices(t1, nib.Nifti1Image(np.zeros((16, 16, 3), np.float32), slab))
