"""The shipped default prior: a VDM trained on brain MRI slices (``weights/default.safetensors``).

Registered as the ``default`` entry point of the ``invdiff.priors`` group.
"""

from __future__ import annotations

from pathlib import Path

from invdiff.priors.checkpoint import load_prior
from invdiff.priors.vdm import VDMPrior

#: Where the package keeps the default prior's weights.
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "default.safetensors"


class DefaultPriorMissingError(FileNotFoundError):
    """The default prior's weights are not part of this installation."""


def load_default_prior(device: str = "cpu") -> VDMPrior:
    """The shipped default prior: a VDM trained on 128 x 128 brain MRI slices.

    Loaded on ``device`` from :data:`DEFAULT_WEIGHTS`.

    Raises:
        DefaultPriorMissingError: the weights file is absent (not shipped yet).
    """
    if not DEFAULT_WEIGHTS.is_file():
        raise DefaultPriorMissingError(
            f"the default prior is not shipped yet ({DEFAULT_WEIGHTS} is absent); "
            "train one with `invdiff train` and pass its checkpoint path instead"
        )
    return load_prior(DEFAULT_WEIGHTS, device=device)
