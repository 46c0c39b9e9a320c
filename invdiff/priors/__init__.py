"""Diffusion priors behind one protocol (:class:`Prior`).

* :mod:`invdiff.priors.vdm`: the VDM of Kingma et al. 2021 (learned schedule) and, with
  ``VDMConfig(schedule="linear" | "cosine")``, the same network under a fixed schedule;
* :mod:`invdiff.priors.checkpoint`: safetensors checkpoints (never unpickled);
* :mod:`invdiff.priors.registry`: names, files and ``invdiff.priors`` plugins to priors.
"""

from invdiff.priors.base import Prior
from invdiff.priors.checkpoint import CheckpointError, load_prior, save_prior
from invdiff.priors.registry import list_priors, resolve_prior
from invdiff.priors.vdm import VDM, VDMConfig, VDMLoss, VDMPrior

__all__ = [
    "VDM",
    "CheckpointError",
    "Prior",
    "VDMConfig",
    "VDMLoss",
    "VDMPrior",
    "list_priors",
    "load_prior",
    "resolve_prior",
    "save_prior",
]
