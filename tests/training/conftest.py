"""Shared fixtures: a tiny stand-in model, random 16x16 data in [-1, 1]."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from tiny_model import TinyConfig, TinyModel  # noqa: E402

from invdiff.training import ImageSets  # noqa: E402


def make_images(n_train: int = 20, n_val: int = 6, size: int = 16, seed: int = 0) -> ImageSets:
    g = torch.Generator().manual_seed(seed)
    train = (torch.rand(n_train, 1, size, size, generator=g) * 2 - 1).half()
    val = (torch.rand(n_val, 1, size, size, generator=g) * 2 - 1).half()
    return ImageSets(train=train, val=val)


@pytest.fixture
def images() -> ImageSets:
    return make_images()


@pytest.fixture
def tiny_model():
    def build(seed: int = 0, **kw) -> TinyModel:
        torch.manual_seed(seed)
        return TinyModel(TinyConfig(**kw))

    return build
