"""TrainConfig validation, file naming, and the plain-text progress display."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from tiny_model import TinyConfig

from invdiff.training import AugmentConfig, DataConfig, TrainConfig, log_path, resume_path
from invdiff.training.display import RunDisplay, _fmt_seconds


def _data(**kw) -> DataConfig:
    return DataConfig(paths=("d.npz",), image_size=16, **kw)


def test_file_names_sit_next_to_the_prior():
    assert resume_path("out/vdm.ckpt").as_posix() == "out/vdm.resume.safetensors"
    assert log_path("out/vdm.ckpt").as_posix() == "out/vdm.log.jsonl"


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"batch_size": 0}, "batch_size must be >= 1, got 0"),
        ({"ema_decay": 1.0}, "ema_decay must be in \\[0, 1\\), got 1.0"),
        ({"max_minutes": 0.0}, "max_minutes must be > 0"),
        ({"lr": -1.0}, "lr must be >= 0"),
        ({"data": DataConfig(paths=("d.npz",), image_size=32)}, "differs from the model's"),
    ],
)
def test_train_config_rejects_bad_values(kw, match):
    base = dict(model=TinyConfig(), data=_data(), output="vdm.ckpt")
    base.update(kw)
    with pytest.raises(ValueError, match=match):
        TrainConfig(**base)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: DataConfig(paths=()), "paths is empty"),
        (lambda: _data(axes=(3,)), "axes must be"),
        (lambda: _data(min_foreground=1.0), "min_foreground"),
        (lambda: AugmentConfig(flip_lr=1.5), "flip_lr must be a probability"),
        (lambda: AugmentConfig(max_scale=-0.1), "max_scale must be >= 0"),
    ],
)
def test_data_and_augment_configs_reject_bad_values(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_plain_display_prints_stats_and_eta():
    buf = io.StringIO()
    d = RunDisplay(start_step=0, max_steps=100, max_minutes=None,
                   console=Console(file=buf, force_terminal=False, width=200))
    d.t0 -= 10.0  # 10 s for the first 10 steps -> 90 s left
    d.update(10, loss=1.5, bpd=2.25, images_per_s=16.0, lr=1e-4)
    d.validation(10, 3.5)
    text = buf.getvalue()
    assert "step 10/100 loss 1.5000 bpd 2.250 16.0 img/s lr 1.00e-04 ETA 1:30" in text
    assert "validation 3.5000 bits/dim" in text
    budget = RunDisplay(0, 100, max_minutes=0.5, enabled=False)
    budget.t0 -= 10.0
    assert budget.eta_seconds(10) == pytest.approx(20.0, abs=0.5)  # the budget comes first
    assert _fmt_seconds(3725) == "1:02:05" and _fmt_seconds(None) == "?"
