"""End to end with the real VDM (tiny preset, 16x16): train(), cli_train(), load_prior."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from invdiff.manifest import sha256_file
from invdiff.priors.checkpoint import load_prior, read_checkpoint_info
from invdiff.priors.config import VDMConfig
from invdiff.training import DataConfig, TrainConfig, cli_train, resume_path, train


def _data(tmp_path) -> str:
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, train=rng.uniform(-1, 1, (24, 16, 16)).astype(np.float16),
             val=rng.uniform(-1, 1, (4, 16, 16)).astype(np.float16))
    return str(path)


def test_vdm_resume_is_bit_exact_with_dropout(tmp_path):
    data = _data(tmp_path)

    def cfg(out: str, steps: int, resume: bool = False) -> TrainConfig:
        return TrainConfig(
            model=VDMConfig.preset("tiny", dropout=0.2),
            data=DataConfig(paths=(data,), image_size=16), output=str(tmp_path / out),
            batch_size=8, max_steps=steps, val_every=3, val_batch_size=4, ckpt_every=100,
            log_every=1, device="cpu", bf16=True, resume=resume, progress=False,
        )

    train(cfg("a.ckpt", 4))
    train(cfg("b.ckpt", 2))
    train(cfg("b.ckpt", 4, resume=True))
    a, b = load_file(str(tmp_path / "a.ckpt")), load_file(str(tmp_path / "b.ckpt"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = load_file(str(resume_path(tmp_path / "a.ckpt"))), load_file(
        str(resume_path(tmp_path / "b.ckpt")))
    assert ra.keys() == rb.keys() and all(torch.equal(ra[k], rb[k]) for k in ra)


def test_cli_train_writes_a_loadable_prior(tmp_path):
    out = cli_train([_data(tmp_path)], tmp_path / "vdm.ckpt", preset="tiny", steps=2,
                    batch_size=8, val_every=2, device="cpu", progress=False)
    info = read_checkpoint_info(out)
    assert info["config"] == VDMConfig.preset("tiny") and info["metadata"]["step"] == 2
    assert info["metadata"]["train_config"]["batch_size"] == 8
    prior = load_prior(out)
    bpd = prior.bits_per_dim(torch.zeros(2, 1, 16, 16), generator=torch.Generator().manual_seed(0))
    assert bpd.shape == (2,) and torch.isfinite(bpd).all()
    # the exported weights are the EMA model's
    ema = load_file(str(resume_path(out)))
    weights = load_file(str(out))
    assert all(torch.equal(weights[k], ema[f"ema.{k}"]) for k in weights)
    assert dataclasses.is_dataclass(info["config"])


def test_init_starts_from_a_prior_files_weights(tmp_path):
    """--init: the run starts from the file's weights and takes its model configuration
    (with lr = 0 the exported EMA is the file's weights); a clashing preset or a missing file
    is an error."""
    data = _data(tmp_path)
    first = cli_train([data], tmp_path / "a.ckpt", preset="tiny", steps=2, batch_size=8,
                      val_every=0, device="cpu", progress=False)
    tuned = cli_train([data], tmp_path / "b.ckpt", init=first, steps=2, batch_size=8, lr=0.0,
                      val_every=0, device="cpu", progress=False, augment_preset="strong")
    a, b = load_file(str(first)), load_file(str(tuned))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    meta = read_checkpoint_info(tuned)["metadata"]["train_config"]
    assert meta["init"] == str(first) and meta["augment"]["elastic_px"] > 0
    fresh = cli_train([data], tmp_path / "c.ckpt", preset="tiny", steps=2, batch_size=8, lr=0.0,
                      val_every=0, device="cpu", progress=False)
    assert not all(torch.equal(a[k], v) for k, v in load_file(str(fresh)).items())
    with pytest.raises(ValueError, match="different model"):
        cli_train([data], tmp_path / "d.ckpt", init=first, preset="default", steps=1)
    with pytest.raises(FileNotFoundError, match="no such prior file"):
        cli_train([data], tmp_path / "d.ckpt", init=tmp_path / "missing.ckpt", steps=1)


def test_init_records_the_start_weights_digest_through_a_resume(tmp_path):
    """The metadata names the init file's SHA-256; a resume keeps it although the file at
    that path has since been replaced (as the shipped default prior is); a wrong digest asked
    for is an error."""
    data = _data(tmp_path)
    first = cli_train([data], tmp_path / "a.ckpt", preset="tiny", steps=1, batch_size=8,
                      val_every=0, device="cpu", progress=False)
    digest = sha256_file(first)

    def tune(steps: int, resume: bool = False, **kw):
        return cli_train([data], tmp_path / "b.ckpt", init=first, steps=steps, batch_size=8,
                         val_every=0, device="cpu", progress=False, resume=resume, **kw)

    tune(1)
    cli_train([data], first, preset="tiny", steps=2, batch_size=8, val_every=0, device="cpu",
              progress=False, resume=True)  # the init file changes under the same path
    assert sha256_file(first) != digest
    meta = read_checkpoint_info(tune(2, resume=True))["metadata"]["train_config"]
    assert meta["init_sha256"] == digest
    first.rename(tmp_path / "gone.ckpt")  # a resume does not need the init file at all
    meta = read_checkpoint_info(tune(3, resume=True))["metadata"]
    assert meta["step"] == 3 and meta["train_config"]["init_sha256"] == digest
    cfg = TrainConfig(model=VDMConfig.preset("tiny"), data=DataConfig(paths=(data,), image_size=16),
                      output=str(tmp_path / "c.ckpt"), max_steps=1, device="cpu",
                      progress=False, init=str(tmp_path / "gone.ckpt"), init_sha256=digest)
    with pytest.raises(ValueError, match="SHA-256"):
        train(cfg)


def test_cli_train_parses_axes_strings(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr("invdiff.training.cli.train", lambda cfg: seen.setdefault("cfg", cfg))
    cli_train(["v.nii"], tmp_path / "v.ckpt", preset="tiny", axes="all")
    assert seen.pop("cfg").data.axes == (0, 1, 2)
    cli_train(["v.nii"], tmp_path / "v.ckpt", preset="tiny", axes="0,2", image_size=32)
    cfg = seen.pop("cfg")
    assert cfg.data.axes == (0, 2) and cfg.model.image_size == cfg.data.image_size == 32


def test_cli_train_channels_and_dropout_override_the_preset(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr("invdiff.training.cli.train", lambda cfg: seen.setdefault("cfg", cfg))
    cli_train(["v.nii"], tmp_path / "v.ckpt", preset="tiny", channels=(4, 8), dropout=0.1)
    model = seen.pop("cfg").model
    assert model.unet_channels == (4, 8) and model.dropout == 0.1
    assert model.num_res_blocks == VDMConfig.preset("tiny").num_res_blocks  # the rest: preset's
    cli_train(["v.nii"], tmp_path / "v.ckpt", preset="tiny")
    assert seen.pop("cfg").model == VDMConfig.preset("tiny")


def test_cli_train_init_takes_a_new_dropout_but_not_new_channels(tmp_path, monkeypatch):
    data = _data(tmp_path)
    prior = cli_train([data], tmp_path / "a.ckpt", preset="tiny", steps=1,
                      batch_size=8, val_every=0, device="cpu", progress=False)
    tuned = cli_train([data], tmp_path / "t.ckpt", init=prior, dropout=0.2, steps=1,
                      batch_size=8, val_every=0, device="cpu", progress=False)
    assert read_checkpoint_info(tuned)["config"] == VDMConfig.preset("tiny", dropout=0.2)
    seen = {}
    monkeypatch.setattr("invdiff.training.cli.train", lambda cfg: seen.setdefault("cfg", cfg))
    cli_train(["v.nii"], tmp_path / "b.ckpt", init=prior, dropout=0.2)
    assert seen.pop("cfg").model == VDMConfig.preset("tiny", dropout=0.2)
    with pytest.raises(ValueError, match=r"unet_channels \(8, 16\) \(asked: \(4, 8\)\)"):
        cli_train(["v.nii"], tmp_path / "b.ckpt", init=prior, preset="tiny", channels=(4, 8))
    # not only the architecture: any setting but dropout must match (the schedule here)
    other = VDMConfig.preset("tiny", schedule="cosine")
    from invdiff.priors.checkpoint import save_prior
    from invdiff.priors.vdm import VDM

    save_prior(tmp_path / "cosine.ckpt", VDM(other))
    with pytest.raises(ValueError, match=r"schedule cosine \(asked: learned\)"):
        cli_train(["v.nii"], tmp_path / "b.ckpt", init=tmp_path / "cosine.ckpt", preset="tiny")
