"""Shared fixtures for solver tests: a 16x16 analytic Gaussian prior and kcrop operators."""

from __future__ import annotations

import warnings

import pytest
import torch

from invdiff.operators import from_spec
from invdiff.priors.gaussian import GaussianPrior


def make_kcrop(n: int | str, shape: tuple[int, int] = (16, 16)):
    with warnings.catch_warnings():  # other operator plugins may still be missing
        warnings.simplefilter("ignore", RuntimeWarning)
        return from_spec(f"kcrop:{n}", shape)


@pytest.fixture
def kcrop():
    """``kcrop(n, shape=(16, 16))`` builds the operator ``kcrop:n``."""
    return make_kcrop


@pytest.fixture
def prior() -> GaussianPrior:
    return GaussianPrior.stationary((16, 16), mean=0.1)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)
