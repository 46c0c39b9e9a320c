"""benchmarks/solvers.py: solver entries with options (``NAME:KEY=VALUE``)."""

import json
import subprocess
import sys
from pathlib import Path

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
