"""The resume file: everything needed to continue a run exactly, without pickle.

One safetensors file (``vdm.resume.safetensors`` next to ``vdm.ckpt``) holds

* tensors: ``model.<name>`` and ``ema.<name>`` (parameters and buffers),
  ``optim.<param index>.<key>`` (AdamW moments and step counters), ``rng.<name>`` (the states of
  the global CPU/CUDA generators and of the run's explicit generators, as uint8 tensors);
* metadata ``"invdiff.resume"``: JSON with the format version, the step, the optimiser's
  hyper-parameters (param groups), the learning-rate scheduler state, the data position, the
  optimiser's non-tensor per-parameter values and the run's :class:`TrainConfig`.

Files are written to a temporary name in the same folder and renamed (:func:`atomic_write`), so
an interrupted write never leaves a truncated file under the real name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

FORMAT = "invdiff.resume"
VERSION = 1


@dataclass
class ResumeState:
    """The in-memory contents of a resume file.

    Attributes:
        model, ema: state dicts of the trained and the averaged model.
        optimizer: ``torch.optim.Optimizer.state_dict()``.
        scheduler: ``torch.optim.lr_scheduler.LRScheduler.state_dict()`` (JSON-able).
        rng: generator states as uint8 tensors, by name.
        meta: JSON-able scalars: ``step``, ``data`` (the batch stream position), ``config``.
    """

    model: dict[str, Tensor]
    ema: dict[str, Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: dict[str, Tensor]
    meta: dict[str, Any]


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_resume(path: str | Path, state: ResumeState) -> None:
    """Write ``state`` to ``path`` atomically (safetensors + JSON metadata)."""
    tensors: dict[str, Tensor] = {}
    for prefix, sd in (("model", state.model), ("ema", state.ema), ("rng", state.rng)):
        for k, v in sd.items():
            tensors[f"{prefix}.{k}"] = _own(v)
    opt_scalars: dict[str, dict[str, Any]] = {}
    for pid, st in state.optimizer["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{pid}.{k}"] = _own(v)
            else:
                opt_scalars.setdefault(str(pid), {})[k] = v
    meta = {
        "version": VERSION,
        "param_groups": state.optimizer["param_groups"],
        "optim_scalars": opt_scalars,
        "scheduler": state.scheduler,
        **state.meta,
    }
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata={FORMAT: json.dumps(meta)})


def load_resume(path: str | Path) -> ResumeState:
    """Read a file written by :func:`save_resume`; clear errors for missing or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no resume file at {path}: train without resume first")
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path} is not a readable safetensors resume file ({e})") from None
    if FORMAT not in header:
        raise ValueError(f"{path} is a safetensors file but not an invdiff resume file")
    try:
        return _parse_resume(header[FORMAT], tensors)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"{path} is a malformed invdiff resume file "
                         f"({type(e).__name__}: {e})") from None


def _parse_resume(text: str, tensors: dict[str, Tensor]) -> ResumeState:
    """The :class:`ResumeState` of a resume file's metadata JSON and tensors."""
    meta = json.loads(text)
    if meta.get("version") != VERSION:
        raise ValueError(f"resume format {meta.get('version')}, expected {VERSION}")
    groups: dict[str, dict[str, Tensor]] = {"model": {}, "ema": {}, "rng": {}}
    opt_state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        prefix, rest = k.split(".", 1)
        if prefix == "optim":
            pid, key = rest.split(".", 1)
            opt_state.setdefault(int(pid), {})[key] = v
        else:
            groups[prefix][rest] = v
    for pid, scalars in meta.pop("optim_scalars").items():
        opt_state.setdefault(int(pid), {}).update(scalars)
    param_groups = meta.pop("param_groups")
    for g in param_groups:
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
    return ResumeState(
        model=groups["model"],
        ema=groups["ema"],
        optimizer={"state": opt_state, "param_groups": param_groups},
        scheduler=meta.pop("scheduler"),
        rng=groups["rng"],
        meta=meta,
    )


def load_module_state(module: nn.Module, sd: dict[str, Tensor], what: str) -> None:
    """``module.load_state_dict(sd)`` with a one-line error naming missing/unexpected keys."""
    missing, unexpected = module.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"resume file's {what} does not match the model: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}"
        )


def rank_rng_states(generators: dict[str, torch.Generator],
                    device: torch.device) -> dict[str, Tensor]:
    """This process's generator states as uint8 tensors: the global CPU generator, the global
    CUDA generator of ``device`` (if CUDA) and ``generators``, by name."""
    out = {"torch_cpu": torch.get_rng_state()}
    if device.type == "cuda":
        out["torch_cuda"] = torch.cuda.get_rng_state(device)
    for name, g in generators.items():
        out[f"gen_{name}"] = g.get_state()
    return out


def set_rank_rng_states(states: dict[str, Tensor], generators: dict[str, torch.Generator],
                        device: torch.device, suffix: str = "") -> None:
    """Inverse of :func:`rank_rng_states`; keys are looked up with ``suffix`` appended."""

    def get(key: str) -> Tensor:
        if key + suffix not in states:
            raise ValueError(f"resume file has no generator state {key + suffix!r}")
        return states[key + suffix]

    torch.set_rng_state(get("torch_cpu"))
    if device.type == "cuda":
        torch.cuda.set_rng_state(get("torch_cuda"), device)
    for name, g in generators.items():
        g.set_state(get(f"gen_{name}"))


def _own(t: Tensor) -> Tensor:
    """A contiguous CPU copy (safetensors refuses shared or strided storage)."""
    return t.detach().to("cpu", copy=True).contiguous()


ExportFn = Callable[[Path, nn.Module, dict[str, Any]], None]
