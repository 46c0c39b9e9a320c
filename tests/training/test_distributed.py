"""DDP on 2 CPU processes (gloo) equals one process on the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from invdiff.training import log_path

sys.path.insert(0, str(Path(__file__).parent))
import ddp_worker  # noqa: E402

WORKER = Path(__file__).with_name("ddp_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", **extra)
    return env


def _run_ranks(out: Path, *args: str) -> tuple[list[int], list[str]]:
    port = str(_free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(out), *args],
            env=_env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2",
                     MASTER_ADDR="127.0.0.1", MASTER_PORT=port),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for r in range(2)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    return [p.returncode for p in procs], outs


@pytest.mark.slow
def test_a_time_budget_on_one_rank_stops_all_ranks_as_a_time_stop(tmp_path):
    codes, outs = _run_ranks(tmp_path, "10", "timestop")
    assert codes == [0, 0], "\n".join(outs)
    assert "rank 0 stopped at step 1" in outs[0] and "rank 1 stopped at step 1" in outs[1]


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process(tmp_path):
    """Gradients, parameters, EMA, prior file and losses of 2 ranks (stopped after 2 steps and
    resumed for 2 more) equal one uninterrupted process on the same global batches."""
    single, multi = tmp_path / "single", tmp_path / "multi"
    single.mkdir(), multi.mkdir()
    assert "WORLD_SIZE" not in os.environ or os.environ["WORLD_SIZE"] == "1"
    ddp_worker.main(single, steps=4)  # the one-process reference, here, 4 steps at once
    for args in (["2"], ["4", "resume"]):  # DDP: 2 steps, stop, resume for 2 more
        codes, outs = _run_ranks(multi, *args)
        assert codes == [0, 0], "\n".join(outs)

    want = load_file(str(single / "rank0.safetensors"))
    got = [load_file(str(multi / f"rank{r}.safetensors")) for r in range(2)]
    assert any(k.startswith("grad.") for k in want)
    for k, v in want.items():
        for r in range(2):  # averaged gradients and the resulting parameters, on both ranks
            torch.testing.assert_close(got[r][k], v, rtol=1e-5, atol=1e-6, msg=f"rank {r}: {k}")
    # the prior file (rank 0's EMA) and the per-step losses agree too
    pa = load_file(str(single / "vdm.ckpt"))
    pb = load_file(str(multi / "vdm.ckpt"))
    for k in pa:
        torch.testing.assert_close(pb[k], pa[k], rtol=1e-5, atol=1e-6)
    rows = [[json.loads(r) for r in log_path(d / "vdm.ckpt").read_text().splitlines()]
            for d in (single, multi)]
    losses = [[r["loss"] for r in rs if "loss" in r] for rs in rows]
    assert len(losses[0]) == 4
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert not (multi / "rank0.log.jsonl").exists()
