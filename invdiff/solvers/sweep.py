"""The lambda sweep of the seed paper's Fig. 4: kspace-mix over several mixing weights."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from invdiff.solvers.kspace_mix import kspace_mix
from invdiff.solvers.result import SolveResult


def lambda_sweep(
    operator: Any,
    y: Tensor,
    prior: Any,
    lams: Sequence[float] = (0.01, 0.1, 0.5, 1.0),
    *,
    seed: int = 0,
    final_dc: bool = False,
    **options: Any,
) -> dict[float, SolveResult]:
    """Run :func:`invdiff.solvers.kspace_mix.kspace_mix` once per ``lambda`` with the same seed.

    Every run starts from a generator seeded with ``seed`` on the prior's device, so the runs share
    their initial noise and differ only through ``lambda``. ``final_dc`` defaults to False, as in
    the seed (a final hard replacement would make all runs agree on the measured frequencies).

    Returns:
        ``{lambda: SolveResult}`` in the order of ``lams``.
    """
    device = getattr(prior, "device", torch.device("cpu"))
    out: dict[float, SolveResult] = {}
    for lam in lams:
        gen = torch.Generator(device=device).manual_seed(seed)
        out[float(lam)] = kspace_mix(
            operator, y, prior, lam=lam, generator=gen, final_dc=final_dc, **options
        )
    return out
