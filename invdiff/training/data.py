"""Training images in memory, and the seeded batch order that a resume can reproduce.

All inputs become one float16 tensor ``(N, 1, S, S)`` in the prior range [-1, 1]
(see :mod:`invdiff.intensity`). Sources:

* ``.npz`` stacks: arrays ``(N, H, W)`` (any float dtype, already in [-1, 1], square of side
  ``image_size``) under the keys ``DataConfig.train_key`` (default ``"train"``) and
  ``DataConfig.val_key`` (default ``"val"``); the shipped ``invdiff/data/brain128.npz`` has both.
* NIfTI volumes and PNG folders: see :mod:`invdiff.training.slices`.

Batch order (:class:`BatchStream`): epoch ``e`` visits the images in the order of
``torch.randperm(N)`` drawn from a generator seeded with ``(seed, e)``; each step takes the next
``batch_size`` indices (the global batch) and rank ``r`` of ``W`` uses the ``r``-th of ``W``
equal parts; the incomplete tail of an epoch is dropped. The position ``(epoch, pos)`` is all a
resume needs to continue the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from invdiff.training.config import DataConfig

NPZ_SUFFIX = ".npz"


@dataclass(frozen=True)
class ImageSets:
    """Training and validation images, float16 ``(N, 1, S, S)`` in [-1, 1]."""

    train: Tensor
    val: Tensor


def load_image_sets(config: DataConfig) -> ImageSets:
    """Load every input named in ``config`` into memory (see module docstring)."""
    npz = [Path(p) for p in config.paths if Path(p).suffix == NPZ_SUFFIX]
    other = [Path(p) for p in config.paths if Path(p).suffix != NPZ_SUFFIX]
    train: list[Tensor] = []
    val: list[Tensor] = []
    for p in npz:
        train.append(load_npz(p, config.train_key, config.image_size))
        if not config.val_paths:
            val.append(load_npz(p, config.val_key, config.image_size, required=False))
    if other:
        from invdiff.training.slices import load_slice_sets

        sets = load_slice_sets(other, config, hold_out=not config.val_paths)
        train.append(sets.train)
        val.append(sets.val)
    for p in (Path(v) for v in config.val_paths):
        if p.suffix == NPZ_SUFFIX:
            val.append(load_npz(p, config.val_key, config.image_size))
        else:
            from invdiff.training.slices import load_slice_sets

            val.append(load_slice_sets([p], config, hold_out=False).train)
    out = ImageSets(train=_cat(train, config.image_size), val=_cat(val, config.image_size))
    if len(out.train) == 0:
        raise ValueError(f"no training images found in {list(config.paths)}")
    return out


def load_npz(path: Path, key: str, image_size: int, required: bool = True) -> Tensor:
    """Array ``key`` of an ``.npz`` file as float16 ``(N, 1, S, S)``, checked to be real,
    finite and in [-1, 1].

    With ``required=False`` a missing key gives an empty tensor.
    """
    if not path.is_file():
        raise FileNotFoundError(f"npz file not found: {path}")
    with np.load(path, allow_pickle=False) as z:
        if key not in z.files:
            if required:
                raise KeyError(f"{path} has no array {key!r}; it has {sorted(z.files)}")
            return torch.empty(0, 1, image_size, image_size, dtype=torch.float16)
        a = z[key]
    if a.ndim != 3 or a.shape[1:] != (image_size, image_size):
        raise ValueError(
            f"{path}[{key!r}] has shape {a.shape}, expected (N, {image_size}, {image_size})"
        )
    if a.dtype.kind == "c":  # refused, not reduced to its magnitude (as invdiff solve does)
        raise TypeError(f"{path}[{key!r}]: complex data {a.dtype}; expected a real float array "
                        "in [-1, 1]")
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"{path}[{key!r}] has dtype {a.dtype}, expected a float array in [-1, 1]")
    finite = np.isfinite(a)
    if not finite.all():  # worded as invdiff.io.images words a NaN/Inf input image
        raise ValueError(f"{path}[{key!r}]: {int((~finite).sum())} value(s) are NaN or Inf")
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if lo < -1.001 or hi > 1.001:
        raise ValueError(f"{path}[{key!r}] has values in [{lo:.3g}, {hi:.3g}], expected [-1, 1]")
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float16)).unsqueeze(1)


def _cat(parts: list[Tensor], image_size: int) -> Tensor:
    parts = [p for p in parts if len(p)]
    if not parts:
        return torch.empty(0, 1, image_size, image_size, dtype=torch.float16)
    return torch.cat(parts).to(torch.float16).contiguous()


class BatchStream:
    """Seeded, resumable order of global batches over ``n`` images, sharded over ranks.

    Args:
        n: number of images.
        batch_size: global batch size (divisible by ``world_size``).
        seed: seeds the per-epoch permutations.
        rank, world_size: this process's share of each global batch.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        if batch_size % world_size:
            raise ValueError(
                f"batch_size {batch_size} is not divisible by the number of ranks {world_size}"
            )
        if n < batch_size:
            raise ValueError(f"{n} training images are fewer than one batch of {batch_size}")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.pos = 0, 0
        self._perm = self._permutation(0)

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.batch_size

    def _permutation(self, epoch: int) -> Tensor:
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % (2**63))
        return torch.randperm(self.n, generator=g)

    def next_indices(self) -> tuple[Tensor, Tensor]:
        """``(global_indices, local_indices)`` of the next step, advancing the position."""
        if self.pos + self.batch_size > self.n:
            self.epoch, self.pos = self.epoch + 1, 0
            self._perm = self._permutation(self.epoch)
        idx = self._perm[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        local = self.batch_size // self.world_size
        return idx, idx[self.rank * local : (self.rank + 1) * local]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos, "n": self.n}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["n"] != self.n:
            raise ValueError(
                f"resume file was written for {state['n']} training images, the data has {self.n}"
            )
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._perm = self._permutation(self.epoch)
