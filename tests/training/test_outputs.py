"""A fresh run never writes over an earlier run's prior, resume file or log; ``overwrite`` starts
afresh and replaces them only when the new run writes its own; ``resume`` is unchanged."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
from cli_assertions import assert_one_line_error
from tiny_model import TinyConfig, export_state, make_images
from typer.testing import CliRunner

from invdiff.cli.app import app
from invdiff.io.atomic import OutputExistsError
from invdiff.priors.config import VDMConfig
from invdiff.training import (
    AugmentConfig,
    DataConfig,
    TrainConfig,
    Trainer,
    cli_train,
    log_path,
    resume_path,
    train,
)
from invdiff.training.display import JsonlLog

REFUSAL = "exists; pass --resume to continue that run or --overwrite to start afresh"
TINY = ("--preset", "tiny", "--batch-size", "2", "--log-every", "1", "--val-every", "0",
        "--device", "cpu", "--quiet")


def _data(tmp_path) -> str:
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, train=rng.uniform(-1, 1, (8, 16, 16)).astype(np.float16))
    return str(path)


def _train(*args):
    return CliRunner().invoke(app, ["train", *(str(a) for a in args)])




def _files(out) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (out, resume_path(out), log_path(out)) if p.exists()}


def _steps(out) -> list[int]:
    return [json.loads(r)["step"] for r in log_path(out).read_text().splitlines()]


def test_cli_refuses_to_write_over_a_run_whose_resume_file_is_gone(tmp_path):
    """The reported data loss: with the resume file deleted, a second run replaced vdm.ckpt and
    appended its rows to the first run's log."""
    data, out = _data(tmp_path), tmp_path / "vdm.ckpt"
    r = _train(data, "--out", out, "--steps", "3", *TINY)
    assert r.exit_code == 0, r.output
    resume_path(out).unlink()
    before = _files(out)
    r = _train(data, "--out", out, "--steps", "3", "--seed", "1", *TINY)
    assert_one_line_error(r, f"error: {out} {REFUSAL}")
    assert _files(out) == before and _steps(out) == [1, 2, 3]


@pytest.mark.parametrize("existing", ["prior", "resume", "log"])
def test_a_fresh_run_refuses_each_earlier_file_before_reading_its_data(tmp_path, existing):
    """Any one of the three files is enough; the check comes before any training work (the
    data named here does not exist, and that is not what the error says)."""
    out = tmp_path / "vdm.ckpt"
    path = {"prior": out, "resume": resume_path(out), "log": log_path(out)}[existing]
    path.write_text("earlier run\n")
    missing = tmp_path / "missing.npz"
    with pytest.raises(OutputExistsError, match=f"^{re.escape(f'{path} {REFUSAL}')}$"):
        cli_train([missing], out, preset="tiny", steps=1, batch_size=2, device="cpu",
                  progress=False)
    config = TrainConfig(model=VDMConfig.preset("tiny"),
                         data=DataConfig(paths=(str(missing),), image_size=16),
                         output=str(out), max_steps=1, device="cpu", progress=False)
    with pytest.raises(OutputExistsError, match=REFUSAL):
        train(config)
    with pytest.raises(OutputExistsError, match=REFUSAL):  # the Trainer class checks too
        Trainer(config, None, export_state)
    assert_one_line_error(_train(missing, "--out", out, "--steps", "1", *TINY), f"{path} {REFUSAL}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    assert path.read_text() == "earlier run\n"


def test_cli_resume_still_continues_and_overwrite_starts_afresh(tmp_path):
    data, out = _data(tmp_path), tmp_path / "vdm.ckpt"
    assert _train(data, "--out", out, "--steps", "2", *TINY).exit_code == 0
    r = _train(data, "--out", out, "--steps", "3", "--resume", *TINY)
    assert r.exit_code == 0, r.output
    assert _steps(out) == [1, 2, 3] and f"wrote {out}" in r.output
    old = _files(out)
    r = _train(data, "--out", out, "--steps", "3", "--resume", *TINY)  # at its step budget
    assert r.exit_code == 0 and f"{out} is unchanged" in r.output and "wrote" not in r.output
    assert _files(out) == old
    r = _train(data, "--out", out, "--steps", "2", "--resume", "--overwrite", *TINY)
    assert_one_line_error(r, "--resume", "--overwrite", "not both")
    r = _train(data, "--out", out, "--steps", "2", "--seed", "1", "--overwrite", *TINY)
    assert r.exit_code == 0, r.output
    new = _files(out)
    assert all(new[name] != old[name] for name in old)
    assert _steps(out) == [1, 2]  # a new log, not the old one with two more rows
    r = _train(data, "--out", out, "--steps", "3", "--seed", "1", "--resume", *TINY)
    assert r.exit_code == 0, r.output  # the overwriting run resumes like any other
    assert _steps(out) == [1, 2, 3]


def _tiny_config(tmp_path, **kw) -> TrainConfig:
    return TrainConfig(
        model=TinyConfig(), output=str(tmp_path / "vdm.ckpt"),
        data=DataConfig(paths=("unused.npz",), image_size=16), batch_size=4, max_steps=4,
        val_every=0, ckpt_every=100, log_every=1, device="cpu", progress=False,
        augment=AugmentConfig(enabled=False), **kw)


def test_overwrite_keeps_the_old_files_until_the_new_run_checkpoints(tmp_path, tiny_model):
    """A run started with overwrite that fails before its first checkpoint (here: a NaN loss)
    leaves the earlier run's prior, resume file and log as they were."""
    cfg = _tiny_config(tmp_path)
    Trainer(cfg, tiny_model(), export_state, images=make_images()).run()
    out = tmp_path / "vdm.ckpt"
    before = _files(out)
    bad = make_images()
    bad.train[:] = float("nan")
    again = Trainer(dataclasses.replace(cfg, overwrite=True), tiny_model(seed=1), export_state,
                    images=bad)
    with pytest.raises(FloatingPointError, match="non-finite"):
        again.run()
    assert _files(out) == before


def test_replacing_log_holds_rows_until_commit(tmp_path):
    path = tmp_path / "vdm.log.jsonl"
    path.write_text('{"step": 7}\n')
    log = JsonlLog(path, replace=True)
    log.write({"step": 1})
    assert path.read_text() == '{"step": 7}\n'
    log.commit()
    log.write({"step": 2})
    assert _steps(tmp_path / "vdm.ckpt") == [1, 2]
    fresh = JsonlLog(tmp_path / "new.jsonl", replace=True)  # nothing to replace: writes at once
    fresh.write({"step": 1})
    assert (tmp_path / "new.jsonl").read_text() == '{"step": 1}\n'


def test_output_folder_repeated_axes_and_zero_volumes_are_named(tmp_path):
    import nibabel as nib

    data = _data(tmp_path)
    (tmp_path / "runs").mkdir()
    r = _train(data, "--out", tmp_path / "runs", "--steps", "1", "--overwrite", *TINY)
    assert_one_line_error(r, "is a folder", "vdm.ckpt")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("runs")) == ["runs"]
    r = _train(data, "--out", tmp_path / "a.ckpt", "--steps", "1", "--axes", "0,0", *TINY)
    assert_one_line_error(r, "axes must not repeat")
    zero = tmp_path / "zero.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 4), np.float32), np.eye(4)), zero)
    r = _train(data, zero, "--out", tmp_path / "b.ckpt", "--steps", "1", *TINY)
    assert_one_line_error(r, "zero.nii.gz", "all zero")
