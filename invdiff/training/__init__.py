"""Training diffusion priors: data, augmentation, the loop, resume files and DDP.

Quick start (one process, CPU or GPU)::

    from invdiff.training import cli_train

    cli_train(["invdiff/data/brain128.npz"], "vdm.ckpt", steps=20_000, minutes=60, bf16=True)
    cli_train(["invdiff/data/brain128.npz"], "vdm.ckpt", steps=20_000, minutes=60, bf16=True,
              resume=True)                       # a later session continues the same run

or with full control: ``train(TrainConfig(model=VDMConfig.preset("default"), data=DataConfig(
paths=("invdiff/data/brain128.npz",)), output="vdm.ckpt", ...))``.

See docs/training.md for every option, resume and ``torchrun``.
"""

from invdiff.training.augment import AugmentParams, apply_augment, sample_augment
from invdiff.training.cli import cli_train
from invdiff.training.config import (
    AugmentConfig,
    DataConfig,
    TrainConfig,
    log_path,
    resume_path,
)
from invdiff.training.data import BatchStream, ImageSets, load_image_sets
from invdiff.training.loop import Trainer, train

__all__ = [
    "AugmentConfig",
    "AugmentParams",
    "BatchStream",
    "DataConfig",
    "ImageSets",
    "TrainConfig",
    "Trainer",
    "apply_augment",
    "cli_train",
    "load_image_sets",
    "log_path",
    "resume_path",
    "sample_augment",
    "train",
]
