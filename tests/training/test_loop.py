"""Training loop: resume is bit-exact, checkpoints and logs are written, settings are checked."""

from __future__ import annotations

import dataclasses
import json
import os
import signal

import pytest
import torch
from safetensors.torch import load_file
from tiny_model import TinyConfig, export_state, make_images

from invdiff.training import AugmentConfig, DataConfig, TrainConfig, Trainer, log_path, resume_path


def _config(tmp_path, **kw) -> TrainConfig:
    base = dict(
        model=TinyConfig(), data=DataConfig(paths=("unused.npz",), image_size=16),
        output=str(tmp_path / "vdm.ckpt"), batch_size=4, lr=1e-2, warmup_steps=3,
        ema_decay=0.9, max_steps=8, val_every=3, val_size=6, val_batch_size=4, ckpt_every=100,
        log_every=2, device="cpu", progress=False,
        augment=AugmentConfig(max_rotation_deg=10.0, max_scale=0.1, max_log_gamma=0.2),
    )
    base.update(kw)
    return TrainConfig(**base)


def _trainer(cfg, tiny_model, images) -> Trainer:
    return Trainer(cfg, tiny_model(seed=cfg.seed), export_state, images=images)


def _states(tr: Trainer) -> dict[str, torch.Tensor]:
    out = {f"model.{k}": v for k, v in tr.model.state_dict().items()}
    out.update({f"ema.{k}": v for k, v in tr.ema.state_dict().items()})
    for pid, st in tr.optimizer.state_dict()["state"].items():
        out.update({f"optim.{pid}.{k}": v for k, v in st.items()})
    return out


@pytest.mark.parametrize("bf16", [False, True])
def test_resume_is_bit_exact(tmp_path, tiny_model, images, bf16):
    """k steps, stop, resume k more == 2k uninterrupted steps, bit for bit (crosses an epoch)."""
    full = _trainer(_config(tmp_path / "a", bf16=bf16), tiny_model, images)
    full.run()
    first = _trainer(_config(tmp_path / "b", max_steps=4, bf16=bf16), tiny_model, images)
    first.run()
    assert load_file(str(tmp_path / "b" / "vdm.ckpt"))  # prior exported at the stop
    cfg = _config(tmp_path / "b", max_steps=8, resume=True, bf16=bf16)
    second = _trainer(cfg, tiny_model, images)
    assert second.step_count == 4
    second.run()
    a, b = _states(full), _states(second)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert full.stream.state_dict() == second.stream.state_dict()
    assert torch.equal(full.gen_loss.get_state(), second.gen_loss.get_state())
    pa = load_file(str(tmp_path / "a" / "vdm.ckpt"))
    pb = load_file(str(tmp_path / "b" / "vdm.ckpt"))
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    # the logs agree row for row, apart from timing
    rows_a = [json.loads(r) for r in log_path(tmp_path / "a" / "vdm.ckpt").read_text().splitlines()]
    rows_b = [json.loads(r) for r in log_path(tmp_path / "b" / "vdm.ckpt").read_text().splitlines()]
    strip = ("images_per_s", "elapsed_s")
    rows_a = [{k: v for k, v in r.items() if k not in strip} for r in rows_a]
    rows_b = [{k: v for k, v in r.items() if k not in strip} for r in rows_b]
    assert rows_b == rows_a


def test_run_changes_weights_and_logs(tmp_path, tiny_model, images):
    tr = _trainer(_config(tmp_path), tiny_model, images)
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    out = tr.run()
    assert out == tmp_path / "vdm.ckpt" and out.exists() and resume_path(out).exists()
    assert not any(torch.equal(before[k], v) for k, v in tr.model.state_dict().items())
    rows = [json.loads(r) for r in log_path(out).read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [2, 4, 6, 8]
    assert [r["step"] for r in rows if "val_bpd" in r] == [3, 6]
    assert all(r["bpd"] > 0 and r["images_per_s"] > 0 for r in rows if "loss" in r)
    # warm-up: lr rises linearly over 3 steps then stays at 1e-2
    assert rows[0]["lr"] == pytest.approx(1e-2) and tr.scheduler.get_last_lr()[0] == 1e-2
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_warmup_is_linear(tmp_path, tiny_model, images):
    tr = _trainer(_config(tmp_path, warmup_steps=4), tiny_model, images)
    lrs = []
    for _ in range(6):
        lrs.append(tr.optimizer.param_groups[0]["lr"])
        tr.step()
    assert lrs == pytest.approx([2.5e-3, 5e-3, 7.5e-3, 1e-2, 1e-2, 1e-2])


def test_cooldown_follows_one_minus_sqrt(tmp_path, tiny_model, images):
    tr = _trainer(_config(tmp_path, warmup_steps=0, cooldown_steps=4), tiny_model, images)
    lrs = []
    for _ in range(8):
        lrs.append(tr.optimizer.param_groups[0]["lr"])
        tr.step()
    expected = [1, 1, 1, 1, 1, 1 - 0.25**0.5, 1 - 0.5**0.5, 1 - 0.75**0.5]
    assert lrs == pytest.approx([1e-2 * f for f in expected])
    with pytest.raises(ValueError, match="cooldown_steps 9 exceeds max_steps 8"):
        _config(tmp_path, cooldown_steps=9)


def test_cooldown_decided_on_resume_matches_planned_run(tmp_path, tiny_model, images):
    """Warmup-stable-decay: a constant-rate run resumed with a cooldown is bit-exact with a run
    that planned the cooldown from the start."""
    # the decay starts at step 3, so the first resumed step (4) already decays
    planned = _trainer(_config(tmp_path / "a", cooldown_steps=5), tiny_model, images)
    planned.run()
    _trainer(_config(tmp_path / "b", max_steps=4), tiny_model, images).run()
    late = _trainer(_config(tmp_path / "b", cooldown_steps=5, resume=True), tiny_model, images)
    late.run()
    a, b = _states(planned), _states(late)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert late.optimizer.param_groups[0]["lr"] == 0.0  # 1 - sqrt(5 / 5) after the last step


def test_ema_follows_formula(tmp_path, tiny_model, images):
    tr = _trainer(_config(tmp_path, ema_decay=0.5), tiny_model, images)
    ema0 = {k: v.clone() for k, v in tr.ema.state_dict().items()}
    tr.step()  # n = 0: d = min(0.5, 1/10) = 0.1
    for k, v in tr.ema.state_dict().items():
        torch.testing.assert_close(v, 0.1 * ema0[k] + 0.9 * tr.model.state_dict()[k])


def test_gradient_clipping_bounds_update(tmp_path, tiny_model, images):
    tr = _trainer(_config(tmp_path, grad_clip=1e-3, lr=1.0, warmup_steps=0), tiny_model, images)
    _, _, gn = tr.step()
    assert gn > 1e-3  # the reported norm is the norm before clipping
    clipped = torch.cat([p.grad.flatten() for p in tr.model.parameters()]).norm()
    assert clipped == pytest.approx(1e-3, rel=1e-4)


def test_resume_refuses_changed_settings(tmp_path, tiny_model, images):
    _trainer(_config(tmp_path, max_steps=2), tiny_model, images).run()
    with pytest.raises(ValueError, match="lr"):
        _trainer(_config(tmp_path, max_steps=4, lr=5e-3, resume=True), tiny_model, images)
    with pytest.raises(FileExistsError, match="resume"):
        _trainer(_config(tmp_path, max_steps=4), tiny_model, images)


def test_resume_drops_log_rows_past_the_checkpoint(tmp_path, tiny_model, images):
    """Rows logged after the last checkpoint (a crash) are not duplicated by the resumed run."""
    _trainer(_config(tmp_path, max_steps=4), tiny_model, images).run()
    log = log_path(tmp_path / "vdm.ckpt")
    with log.open("a") as f:
        f.write(json.dumps({"step": 6, "loss": 1.0}) + "\n")
    _trainer(_config(tmp_path, max_steps=6, resume=True), tiny_model, images).run()
    steps = [json.loads(r)["step"] for r in log.read_text().splitlines() if "loss" in r]
    assert steps == [2, 4, 6]


def test_resume_without_file_is_clear(tmp_path, tiny_model, images):
    with pytest.raises(FileNotFoundError, match="no resume file"):
        _trainer(_config(tmp_path, resume=True), tiny_model, images)


def test_time_budget_stops_and_checkpoints(tmp_path, tiny_model, images):
    cfg = _config(tmp_path, max_steps=10_000, max_minutes=1e-9)
    tr = _trainer(cfg, tiny_model, images)
    tr.run()
    assert tr.step_count == 1
    again = _trainer(dataclasses.replace(cfg, resume=True), tiny_model, images)
    assert again.step_count == 1


def test_nonfinite_loss_raises(tmp_path, tiny_model):
    bad = make_images()
    bad.train[0, 0, 0, 0] = float("nan")
    tr = _trainer(_config(tmp_path, augment=AugmentConfig(enabled=False), batch_size=20,
                          log_every=1), tiny_model, bad)
    with pytest.raises(FloatingPointError, match=r"non-finite by step 1 \(no checkpoint written\)"):
        tr.run()


def test_config_mismatch_names_nested_settings_and_tolerates_new_defaults(tmp_path):
    from invdiff.training.config import config_mismatch, config_to_dict

    cfg = _config(tmp_path)
    saved = config_to_dict(cfg)
    assert config_mismatch(saved, dataclasses.replace(cfg, max_steps=99, device="cuda")) == []
    changed = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, axes=(0, 1)), seed=3)
    assert config_mismatch(saved, changed) == ["data.axes", "seed"]
    older = {k: v for k, v in saved.items() if k != "grad_clip"}  # written before grad_clip
    older["augment"] = {k: v for k, v in saved["augment"].items() if k != "flip_ud"}
    assert config_mismatch(older, dataclasses.replace(cfg, grad_clip=1.0)) == []
    assert config_mismatch(older, dataclasses.replace(cfg, grad_clip=0.5)) == ["grad_clip"]


def test_runs_saved_before_bicubic_resampling_resume_only_with_bilinear(tmp_path):
    """A resume file without ``augment.interpolation`` was augmented bilinearly: resuming it
    with today's default would silently change its data, so it must ask for ``legacy``."""
    from invdiff.training import AugmentConfig
    from invdiff.training.config import config_mismatch, config_to_dict

    cfg = _config(tmp_path)
    old = config_to_dict(cfg)
    old["augment"] = {k: v for k, v in old["augment"].items() if k != "interpolation"}
    assert config_mismatch(old, cfg) == ["augment.interpolation"]
    legacy = dataclasses.replace(cfg.augment, interpolation="bilinear")
    assert AugmentConfig.preset("legacy").interpolation == "bilinear"
    assert config_mismatch(old, dataclasses.replace(cfg, augment=legacy)) == []


def test_interrupt_stops_after_the_step_with_a_checkpoint(tmp_path, tiny_model, images):
    """SIGINT (Ctrl-C) or SIGTERM: finish the step, write prior and resume file, resume from it."""
    cfg = _config(tmp_path, max_steps=8)
    tr = _trainer(cfg, tiny_model, images)
    step = tr.step

    def step_then_signal():
        out = step()
        if tr.step_count == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    tr.step = step_then_signal
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="interrupted at step 3"):  # a script learns it
        tr.run()
    assert tr.step_count == 3 and signal.getsignal(signal.SIGTERM) is handler  # restored
    again = _trainer(dataclasses.replace(cfg, resume=True), tiny_model, images)
    assert again.step_count == 3
    torch.testing.assert_close(again.model.state_dict(), tr.model.state_dict(), rtol=0, atol=0)


def test_resume_at_or_past_the_step_count_trains_nothing(tmp_path, tiny_model, images, capsys):
    out = tmp_path / "vdm.ckpt"
    _trainer(_config(tmp_path, max_steps=4), tiny_model, images).run()
    before = out.stat().st_mtime_ns, resume_path(out).read_bytes()
    again = _trainer(_config(tmp_path, max_steps=2, resume=True, progress=True), tiny_model,
                     images)
    capsys.readouterr()
    again.run()
    assert again.step_count == 4
    assert (out.stat().st_mtime_ns, resume_path(out).read_bytes()) == before
    err = capsys.readouterr().err
    assert "already at step 4 (>= 2 steps): nothing to train" in err and "wrote" not in err


def test_missing_validation_data_is_announced(tmp_path, tiny_model, images, capsys):
    no_val = dataclasses.replace(images, val=images.val[:0])
    _trainer(_config(tmp_path, max_steps=1, progress=True), tiny_model, no_val).run()
    err = capsys.readouterr().err
    assert "no held-out images, so no validation bits/dim" in err
    params = sum(p.numel() for p in tiny_model(seed=0).parameters())
    assert f"model {params / 1e6:.2f} M parameters" in " ".join(err.split())  # size announced


def test_a_run_stopped_by_its_time_budget_logs_its_last_step(tmp_path, tiny_model, images):
    """--minutes: the step the run stopped at is logged although it is no log_every step."""
    out = _trainer(_config(tmp_path, max_minutes=1e-9, log_every=100), tiny_model, images).run()
    rows = [json.loads(r) for r in log_path(out).read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1]
    assert rows[0]["bpd"] > 0


def test_resume_refusal_names_values_and_options(tmp_path, tiny_model, images):
    _trainer(_config(tmp_path, max_steps=2), tiny_model, images).run()
    changed = _config(tmp_path, max_steps=4, resume=True, lr=5e-3,
                      augment=AugmentConfig(max_rotation_deg=3.0, max_scale=0.1, max_log_gamma=0.2))
    with pytest.raises(ValueError) as err:
        _trainer(changed, tiny_model, images)
    message = str(err.value)
    assert "\n" not in message
    assert ("augment settings max_rotation_deg 10.0 -> 3.0 (--augment-preset/--no-augment)"
            in message)
    assert "lr was 0.01, now 0.005 (--lr)" in message and "--overwrite" in message


def test_any_ranks_is_the_flags_themselves_in_one_process():
    from invdiff.training import distributed as tdist

    info = tdist.setup("cpu")
    assert tdist.any_ranks([True, False], info) == [True, False]
