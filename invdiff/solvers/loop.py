"""The reverse-diffusion loop every diffusion solver runs; solvers supply the per-step update."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from invdiff.solvers.problem import check_finite
from invdiff.solvers.steps import Grid, Step, final_rescale, iterate, schedule

#: ``update(x_t, step) -> (x_s, x0_hat)``.
Update = Callable[[Tensor, Step], tuple[Tensor, Tensor]]


def reverse_loop(
    x: Tensor,
    prior: Any,
    name: str,
    steps: int,
    grid: Grid,
    update: Update,
    callback: Callable[[dict[str, Any]], None] | None,
    progress: bool,
) -> Tensor:
    """Run ``x = x_1`` (standard normal noise) through ``steps`` updates to ``t = 0``, then
    rescale by ``1/alpha_0``.

    Stops with :class:`invdiff.solvers.problem.SamplingError` naming the step where the sample
    first stops being finite. ``callback`` receives ``{"i", "t", "x", "x0_hat"}`` after each step.
    """
    for st in iterate(schedule(prior, steps, grid), progress, name):
        x, x0_hat = update(x, st)
        check_finite(x, name, st.index, steps, st.t)
        if callback is not None:
            callback({"i": st.index, "t": st.t, "x": x, "x0_hat": x0_hat})
    return final_rescale(x, prior)


#: Most values (images x channels x pixels) per network call on a CPU: 8 single-channel 128x128
#: images. With glibc's default allocator the time per image grows past that (1.8x at 32 images on
#: a 2-core machine: the large activations are page-faulted in afresh on every call, see
#: :mod:`invdiff.allocator`), so bigger CPU batches are split; accelerators get the whole batch.
#: ``python benchmarks/cpu_eval.py`` measures it on a machine.
CPU_EVAL_VALUES = 8 * 128 * 128


def predict_eps(prior: Any, x: Tensor, st: Step) -> Tensor:
    """``eps_hat(x_t, t)`` at the step's ``t`` (a 0-d tensor in the sample's dtype).

    On a CPU the batch is evaluated in chunks of at most :data:`CPU_EVAL_VALUES` values (at least
    one image per chunk); the result is the same as one call up to float rounding.
    """
    t = torch.tensor(st.t, dtype=x.dtype, device=x.device)
    chunk = eval_chunk(x)
    if chunk >= x.shape[0]:
        return prior.eps(x, t)
    return torch.cat([prior.eps(part, t) for part in x.split(chunk)])


def eval_chunk(x: Tensor) -> int:
    """Images per network call for the batch ``x`` (all of them off the CPU)."""
    if x.device.type != "cpu" or x.shape[0] == 0:
        return max(x.shape[0], 1)
    return max(1, CPU_EVAL_VALUES // max(1, x[0].numel()))
