"""Process-group setup for DistributedDataParallel under ``torchrun``.

``torchrun --nproc_per_node=N`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``
and ``MASTER_PORT``; :func:`setup` reads them, joins the group (NCCL for CUDA devices, gloo for
CPU) and picks ``cuda:LOCAL_RANK`` on GPUs. Without ``WORLD_SIZE`` (or with 1) it is a plain
single process and nothing is initialised.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialised_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA if available else CPU; anything else is parsed by ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    d = torch.device(device)
    if d.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return d


def setup(device: str) -> DistInfo:
    """Join the process group described by the ``torchrun`` environment, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    base = resolve_device(device)
    if world <= 1:
        return DistInfo(device=base)
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    dev = torch.device("cuda", local) if base.type == "cuda" else torch.device("cpu")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    here = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo",
                                rank=rank, world_size=world)
        here = True
    if dist.get_world_size() != world:
        raise ValueError(f"process group has {dist.get_world_size()} ranks, WORLD_SIZE={world}")
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=dev,
                    initialised_here=here)


def teardown(info: DistInfo) -> None:
    """Leave the process group if :func:`setup` created it."""
    if info.initialised_here and dist.is_initialized():
        dist.destroy_process_group()


def all_mean(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of ``values`` over ranks (identity in a single process)."""
    if not info.enabled:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values / info.world_size


def any_ranks(flags: list[bool], info: DistInfo) -> list[bool]:
    """Each flag true on every rank if it is true on any rank, in one reduction (keeps stop
    decisions in lock step)."""
    if not info.enabled:
        return list(flags)
    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v > 0) for v in t.tolist()]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_gather(t: torch.Tensor, info: DistInfo) -> list[torch.Tensor]:
    """``[t from rank 0, t from rank 1, ...]`` (equal shapes on all ranks), on the CPU."""
    if not info.enabled:
        return [t.cpu()]
    t = t.to(info.device)
    out = [torch.empty_like(t) for _ in range(info.world_size)]
    dist.all_gather(out, t)
    return [o.cpu() for o in out]
