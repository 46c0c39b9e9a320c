"""Training diffusion priors: data, augmentation, the loop, resume files and DDP.

Quick start (one process, CPU or GPU)::

    from invdiff.priors.vdm import VDMConfig
    from invdiff.training import DataConfig, TrainConfig, train

    cfg = TrainConfig(model=VDMConfig(), data=DataConfig(paths=("invdiff/data/brain128.npz",)),
                      output="vdm.ckpt", max_minutes=60)
    train(cfg)
    train(dataclasses.replace(cfg, resume=True))   # a later session continues the run

See docs/training.md for every option, resume and ``torchrun``.
"""

from invdiff.training.augment import AugmentParams, apply_augment, sample_augment
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
    "load_image_sets",
    "log_path",
    "resume_path",
    "sample_augment",
    "train",
]
