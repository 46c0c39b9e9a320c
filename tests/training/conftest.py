"""Shared fixtures: a tiny stand-in model, random 16x16 data in [-1, 1]."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from tiny_model import TinyConfig, TinyModel, make_images  # noqa: E402

from invdiff.training import ImageSets  # noqa: E402


@pytest.fixture
def images() -> ImageSets:
    return make_images()


@pytest.fixture
def tiny_model():
    def build(seed: int = 0, **kw) -> TinyModel:
        torch.manual_seed(seed)
        return TinyModel(TinyConfig(**kw))

    return build
