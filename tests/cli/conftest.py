"""Fixtures for command-line tests: an untrained tiny VDM prior and small NIfTI volumes."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from invdiff.cli.app import app


@pytest.fixture(scope="session")
def tiny_prior(tmp_path_factory) -> str:
    """An untrained 16x16 VDM saved as a checkpoint (weights seeded, so runs are repeatable)."""
    from invdiff.priors.checkpoint import save_prior
    from invdiff.priors.config import VDMConfig
    from invdiff.priors.vdm import VDM

    path = tmp_path_factory.mktemp("prior") / "tiny.ckpt"
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = VDM(VDMConfig.preset("tiny"), generator=torch.Generator().manual_seed(0))
    save_prior(path, model)
    return str(path)


def blob_volume(shape=(16, 16, 3)) -> np.ndarray:
    """A smooth positive head-like blob per slice, varying with the slice index."""
    i, j = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    slices = [
        100 * np.exp(-((i - 8.3) ** 2 / 18 + (j - 7.1 - k) ** 2 / 12)) + 10 + 3 * k
        for k in range(shape[2])
    ]
    return np.stack(slices, axis=-1).astype(np.float32)


AFFINE = np.array(
    [[0.0, -1.5, 0.0, 20.0], [1.2, 0.0, 0.0, -11.0], [0.0, 0.0, 3.0, 4.5], [0, 0, 0, 1.0]]
)


@pytest.fixture
def hr_nifti(tmp_path) -> str:
    path = tmp_path / "hr.nii.gz"
    nib.save(nib.Nifti1Image(blob_volume(), AFFINE), path)
    return str(path)


@pytest.fixture
def run():
    """``run(*args)`` invokes the app in-process and returns the result."""
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args])

    return invoke
