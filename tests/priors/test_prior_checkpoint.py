"""Prior checkpoints: bit-exact round trip, atomic writes, and clear errors on bad files."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import stat

import pytest
import safetensors.torch
import torch

from invdiff import __version__
from invdiff.priors.checkpoint import (
    CheckpointError,
    load_prior,
    read_checkpoint_info,
    save_prior,
)
from invdiff.priors.vdm import VDMPrior


def test_round_trip_is_bit_exact(tmp_path, tiny_vdm, images):
    path = tmp_path / "vdm.ckpt"
    save_prior(path, tiny_vdm, metadata={"step": 12, "data": "colin27"})
    prior = load_prior(path)
    assert isinstance(prior, VDMPrior) and prior.config == tiny_vdm.config
    want, got = tiny_vdm.state_dict(), prior.model.state_dict()
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k
    t = torch.tensor(0.4)
    with torch.no_grad():
        assert torch.equal(prior.eps(images, t), tiny_vdm.eval().eps(images, t))
    info = read_checkpoint_info(path)
    assert info["metadata"] == {"step": 12, "data": "colin27"}
    assert info["version"] == __version__ and info["config"] == tiny_vdm.config
    assert [p.name for p in tmp_path.iterdir()] == ["vdm.ckpt"]  # no temporary file left


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_saved_prior_has_ordinary_file_permissions(tmp_path, tiny_vdm):
    """Readable like any file the user creates (umask applies), not mkstemp's private 0600."""
    old = os.umask(0o022)
    try:
        save_prior(tmp_path / "vdm.ckpt", tiny_vdm)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "vdm.ckpt").stat().st_mode) == 0o644


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_round_trip_fixed_schedules(tmp_path, tiny_config, vdm_factory, schedule):
    model = vdm_factory(dataclasses.replace(tiny_config, schedule=schedule))
    save_prior(tmp_path / "p.safetensors", model)
    prior = load_prior(tmp_path / "p.safetensors")
    t = torch.linspace(0, 1, 5)
    assert torch.equal(prior.gamma(t), model.gamma(t).detach())


def test_overwrite_replaces_file(tmp_path, tiny_config, vdm_factory):
    path = tmp_path / "vdm.ckpt"
    save_prior(path, vdm_factory(tiny_config, seed=1))
    second = vdm_factory(tiny_config, seed=2)
    save_prior(path, second)
    loaded = load_prior(path).model.state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in second.state_dict().items())


def test_torch_save_file_is_refused(tmp_path, tiny_vdm):
    path = tmp_path / "vdm.ckpt"
    torch.save(tiny_vdm.state_dict(), path)
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_prior(path)


def test_raw_pickle_is_refused(tmp_path):
    path = tmp_path / "vdm.pkl"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(CheckpointError, match="pickle"):
        load_prior(path)


@pytest.mark.parametrize("keep", [0, 5, 40, -100])
def test_truncated_file(tmp_path, tiny_vdm, keep):
    path = tmp_path / "vdm.ckpt"
    save_prior(path, tiny_vdm)
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep >= 0 else data[:keep])
    with pytest.raises(CheckpointError, match="truncated"):
        load_prior(path)


def test_tensors_not_matching_config(tmp_path, tiny_vdm):
    path = tmp_path / "vdm.ckpt"
    wrong = dataclasses.replace(tiny_vdm.config, unet_channels=(8, 24))
    meta = {
        "invdiff.format": "invdiff-vdm/1",
        "invdiff.config": json.dumps(wrong.to_dict()),
        "invdiff.version": __version__,
    }
    safetensors.torch.save_file(dict(tiny_vdm.state_dict()), path, metadata=meta)
    with pytest.raises(CheckpointError, match="do not match the stored configuration"):
        load_prior(path)


def test_foreign_safetensors_file(tmp_path):
    path = tmp_path / "other.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="not an invdiff prior checkpoint"):
        load_prior(path)


def test_garbage_and_missing_files(tmp_path):
    path = tmp_path / "junk.ckpt"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_prior(path)
    with pytest.raises(FileNotFoundError, match="no prior checkpoint"):
        load_prior(tmp_path / "absent.ckpt")


@pytest.mark.parametrize("first_bytes", [b"\x80", b"PK"])
def test_header_lengths_that_look_like_other_formats_still_load(tmp_path, tiny_vdm, first_bytes):
    """The 8-byte header length of a valid file can start like a pickle or a zip archive."""
    path = tmp_path / "vdm.ckpt"
    save_prior(path, tiny_vdm)
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    want, mask = int.from_bytes(first_bytes, "little"), 256 ** len(first_bytes) - 1
    m = n + ((want - n) & mask)  # the next length whose low bytes are first_bytes
    # JSON allows trailing spaces (safetensors pads its header with them); offsets are relative
    # to the end of the header, so the file stays valid
    path.write_bytes(m.to_bytes(8, "little") + raw[8 : 8 + n] + b" " * (m - n) + raw[8 + n :])
    assert path.read_bytes()[: len(first_bytes)] == first_bytes
    load_prior(path)


def test_image_and_data_files_given_as_priors_are_named(tmp_path):
    """Mistakes a user makes with --prior: a measurement (.npz), a NIfTI, a gzipped NIfTI."""
    import gzip

    import nibabel as nib
    import numpy as np

    np.savez(tmp_path / "meas.npz", a=np.zeros(3))
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 2), np.float32), np.eye(4)), tmp_path / "v.nii")
    (tmp_path / "v.nii.gz").write_bytes(gzip.compress((tmp_path / "v.nii").read_bytes()))
    for name, message in [("meas.npz", "is a zip archive"), ("v.nii", "not a safetensors file"),
                          ("v.nii.gz", "is gzip-compressed")]:
        with pytest.raises(CheckpointError, match=message):
            load_prior(tmp_path / name)


@pytest.mark.parametrize("header", [
    {"w": 5},
    {"w": {"dtype": "F32"}},
    {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0]}},
    {"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}},
    {"__metadata__": "not a dict"},
    {"__metadata__": {"invdiff.format": 1}},
])
def test_malformed_headers_are_checkpoint_errors(tmp_path, header):
    raw = json.dumps(header).encode()
    path = tmp_path / "vdm.ckpt"
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + bytes(8))
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_prior(path)
