"""Metrics against hand computations; configuration parsing and layering; manifests."""

from __future__ import annotations

import math

import numpy as np
import pytest

from invdiff.config import ConfigError, SolveConfig, load_config, parse_config, resolve_config
from invdiff.manifest import ManifestError, read_manifest, sha256_file, write_manifest
from invdiff.metrics import auto_mask, evaluate


def test_metrics_match_definitions():
    rng = np.random.default_rng(0)
    ref = rng.random((16, 12, 3))
    rec = ref + 0.01 * rng.standard_normal(ref.shape)
    m = evaluate(ref, rec, axis=2)
    mse = np.mean((ref - rec) ** 2)
    rng_ = ref.max() - ref.min()
    assert m.psnr == pytest.approx(10 * math.log10(rng_**2 / mse))
    assert m.nmse == pytest.approx(np.sum((ref - rec) ** 2) / np.sum(ref**2))
    assert len(m.slices) == 3 and m.n_voxels == ref.size
    assert m.slices[1].psnr == pytest.approx(
        10 * math.log10(rng_**2 / np.mean((ref[:, :, 1] - rec[:, :, 1]) ** 2)))
    assert 0.9 < m.ssim < 1.0
    from skimage.metrics import structural_similarity

    assert m.slices[2].ssim == pytest.approx(
        structural_similarity(ref[:, :, 2], rec[:, :, 2], data_range=rng_))
    assert evaluate(ref, ref).ssim == pytest.approx(1.0) and evaluate(ref, ref).psnr == math.inf


def test_mask_restricts_voxels():
    ref = np.zeros((16, 16))
    ref[4:12, 4:12] = 1.0
    rec = ref.copy()
    rec[0, 0] = 5.0  # an error in the background only
    mask = auto_mask(ref)
    assert mask.sum() == 64
    assert evaluate(ref, rec, mask).psnr == math.inf
    assert evaluate(ref, rec).psnr < 40


def test_metrics_shape_mismatch():
    with pytest.raises(ValueError, match="differ"):
        evaluate(np.ones((4, 4)), np.ones((4, 5)))


def test_config_layers_and_types(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('operator = "kcrop:32"\nlambda = 1\nsteps = 7\n[options]\neta = 0.0\n')
    layer = load_config(p)
    assert layer == {"operator": "kcrop:32", "lam": 1.0, "steps": 7, "options": {"eta": 0.0}}
    cfg = resolve_config(layer, {"steps": 3, "seed": None})
    assert (cfg.steps, cfg.lam, cfg.seed, cfg.options) == (3, 1.0, 0, {"eta": 0.0})
    assert cfg.to_toml_dict()["lambda"] == 1.0
    assert resolve_config(parse_config(cfg.to_toml_dict())) == cfg


def test_config_prior_path_is_relative_to_the_config(tmp_path, monkeypatch):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "vdm.ckpt").write_bytes(b"x")
    p = tmp_path / "cfg" / "c.toml"
    p.write_text('prior = "vdm.ckpt"\n')
    monkeypatch.chdir(tmp_path)  # vdm.ckpt does not exist here
    assert load_config(p)["prior"] == str((tmp_path / "cfg" / "vdm.ckpt").resolve())
    p.write_text('prior = "default"\n')
    assert load_config(p)["prior"] == "default"
    p.write_text(f'prior = "{tmp_path / "cfg" / "vdm.ckpt"}"\n')
    assert load_config(p)["prior"] == str(tmp_path / "cfg" / "vdm.ckpt")


def test_config_operator_files_are_relative_to_the_config(tmp_path, monkeypatch):
    """Mask and coil-map files an operator spec in a config names are read next to the config
    first (as its prior); other values, absolute paths and files not there stay as written."""
    (tmp_path / "cfg").mkdir()
    for name in ("mask.npy", "maps.npy"):
        (tmp_path / "cfg" / name).write_bytes(b"x")
    p = tmp_path / "cfg" / "c.toml"
    monkeypatch.chdir(tmp_path)  # neither file exists here
    here = (tmp_path / "cfg").resolve()
    p.write_text('operator = "sense:maps.npy|kmask:file=mask.npy, seed=3"\n')
    expected = f"sense:{here / 'maps.npy'}|kmask:file={here / 'mask.npy'}, seed=3"
    assert load_config(p)["operator"] == expected
    for kept in ("kcrop:32", "kmask:file=elsewhere.npy", f"kmask:file={here / 'mask.npy'}",
                 "kmask:accel=4, acs=8"):
        p.write_text(f'operator = "{kept}"\n')
        assert load_config(p)["operator"] == kept
    (tmp_path / "run,1").mkdir()  # a path with a separator of the spec grammar is not written in
    (tmp_path / "run,1" / "mask.npy").write_bytes(b"x")
    (tmp_path / "run,1" / "c.toml").write_text('operator = "kmask:file=mask.npy"\n')
    assert load_config(tmp_path / "run,1" / "c.toml")["operator"] == "kmask:file=mask.npy"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stpes = 3\n", "unknown key 'stpes'"),
        ('steps = "many"\n', "steps must be int"),
        ("save_samples = 1\n", "save_samples must be bool"),
        ("steps = [\n", "malformed TOML"),
        ("[options]\nx = [1, 2]\n", "options.x"),
    ],
)
def test_bad_config(tmp_path, text, message):
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(p)


@pytest.mark.parametrize(
    "kwargs", [{"lam": 0.0}, {"steps": 0}, {"device": "gpu"}, {"samples": 0}, {"axis": 3}]
)
def test_bad_values(kwargs):
    with pytest.raises(ConfigError):
        SolveConfig(**kwargs)


def test_shipped_configs_parse():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "configs"
    files = sorted(root.glob("*.toml"))
    assert {f.name for f in files} >= {"seed-32.toml", "seed-64.toml", "fast-50.toml"}
    for f in files:
        resolve_config(load_config(f))


def test_manifest_round_trip(tmp_path):
    p = tmp_path / "m.json"
    write_manifest(p, {"config": {"steps": 1}, "input": {"path": "x"}, "outputs": {"mean": "y"},
                       "residual": np.float32(0.5)})
    rec = read_manifest(p)
    assert rec["residual"] == 0.5 and rec["format"] == "invdiff.manifest"
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(ManifestError, match="not an invdiff manifest"):
        read_manifest(tmp_path / "bad.json")
    assert len(sha256_file(p)) == 64


@pytest.mark.parametrize(("record", "message"), [
    ({"config": {}, "input": {}, "outputs": {"mean": "y"}}, "missing input.path"),
    ({"config": {}, "input": {"path": "x"}}, "missing the 'outputs' section"),
    ({"config": {}, "input": {"path": "x"}, "outputs": {"mean": 3}}, "missing outputs.mean"),
])
def test_incomplete_manifests_are_named(tmp_path, record, message):
    # a manifest without input.path used to fail as 'error: path'
    write_manifest(tmp_path / "m.json", record)
    with pytest.raises(ManifestError, match=message):
        read_manifest(tmp_path / "m.json")


def test_environment_changes_name_what_can_change_numbers():
    from invdiff.manifest import environment, environment_changes

    now = environment()
    assert environment_changes({"environment": dict(now)}) == []
    assert environment_changes({}) == []  # nothing recorded, nothing to compare
    old = dict(now, torch="1.0.0", git_commit="deadbeef", platform="Other-OS", python="2.7")
    assert environment_changes({"environment": old}) == [
        f"torch 1.0.0 -> {now['torch']}", f"git_commit deadbeef -> {now['git_commit'] or 'none'}"]


def test_devices_this_machine_lacks_are_one_line_errors(monkeypatch):
    import torch

    from invdiff.pipeline.run import check_device

    with pytest.raises(ConfigError, match="cpu, cuda or cuda:N"):
        SolveConfig(device="mps")  # was accepted, then failed with a traceback in torch
    check_device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        check_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    check_device("cuda:1")
    with pytest.raises(ValueError, match="cuda:2 requested but this machine has 2 CUDA"):
        check_device("cuda:2")


def test_evaluate_refuses_an_axis_a_volume_lacks():
    # axis 7 was taken as 7 % 3 = 1
    ref = np.random.default_rng(0).random((8, 9, 4))
    with pytest.raises(ValueError, match="slice axis must be 0, 1 or 2 for a 3D volume, got 7"):
        evaluate(ref, ref, axis=7)
    assert evaluate(ref, ref, axis=-2).axis == 1


def test_solver_options_merge_key_by_key():
    # a flag's option used to replace the whole [options] table of the config file
    cfg = resolve_config({"options": {"eta": 0.0, "grid": "logsnr"}}, {"options": {"eta": 0.5}},
                         {"options": {"final_dc": False}})
    assert cfg.options == {"eta": 0.5, "grid": "logsnr", "final_dc": False}


def test_operator_files_are_only_file_arguments(tmp_path, monkeypatch):
    from invdiff.manifest import operator_files

    monkeypatch.chdir(tmp_path)
    for name in ("2", "8", "32", "mask.npy", "maps.npy"):
        (tmp_path / name).write_bytes(name.encode())
    assert operator_files("downsample:2|sense:birdcage=8|kcrop:32") == {}
    found = operator_files("sense:maps.npy|kmask:file=mask.npy")
    assert sorted(found) == [str(tmp_path / "maps.npy"), str(tmp_path / "mask.npy")]
    assert operator_files("kmask:file=absent.npy") == {}  # the operator will say it is missing


def test_lambda_reaches_a_solver_that_reads_keyword_options():
    """A plugin solver may take lambda through **options: it is passed on, not reset."""
    from invdiff.pipeline.solve import for_solver

    def plugin(operator, y, prior, *, steps=50, n_samples=1, **options):
        return options

    def builtin_without_lambda(operator, y, prior, *, steps=50, n_samples=1, **_):
        return None

    cfg = SolveConfig(solver="plugin", lam=0.3)
    assert for_solver(plugin, cfg).lam == 0.3
    with pytest.warns(UserWarning, match="has no lambda"):
        assert for_solver(builtin_without_lambda, cfg).lam == 1.0


def test_operator_files_compare_by_content():
    from invdiff.manifest import ManifestError, check_operator_files

    check_operator_files({"/new/place/mask.npy": "ab"}, {"/old/place/mask.npy": "ab"})
    with pytest.raises(ManifestError, match="mask.npy"):
        check_operator_files({"/old/place/mask.npy": "cd"}, {"/old/place/mask.npy": "ab"})
