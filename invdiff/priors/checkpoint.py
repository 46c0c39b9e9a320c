"""Prior checkpoints: safetensors weights with the model configuration in the metadata.

File layout (one file, any name, e.g. ``vdm.ckpt``): a safetensors file whose tensors are the
:class:`~invdiff.priors.vdm.VDM` state dict (the EMA weights when written by the trainer) and
whose string metadata holds

* ``invdiff.format``: ``"invdiff-vdm/1"``;
* ``invdiff.config``: the :class:`~invdiff.priors.config.VDMConfig` as JSON;
* ``invdiff.version``: the invdiff version that wrote it;
* ``invdiff.metadata``: the caller's metadata dict as JSON (training step, data, ...).

Loading never unpickles: the header is validated by hand before safetensors reads the data,
so pickle / ``torch.save`` files, truncated files and tensors that do not match the stored
configuration each get a one-line :class:`CheckpointError`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from invdiff import __version__
from invdiff.priors.config import VDMConfig
from invdiff.priors.vdm import VDM, VDMPrior

FORMAT = "invdiff-vdm/1"
_MAX_HEADER = 100 * 1024 * 1024


class CheckpointError(ValueError):
    """A file that is not a valid invdiff prior checkpoint."""


def save_prior(
    path: str | os.PathLike[str], model: VDM, metadata: dict[str, Any] | None = None
) -> None:
    """Write ``model``'s weights and configuration to ``path`` atomically.

    The file is written to a temporary file in the same directory, flushed to disk and moved
    over ``path`` with :func:`os.replace`, so readers never see a partial file.

    Args:
        path: destination file.
        model: the VDM whose weights to store (pass the EMA model).
        metadata: JSON-serialisable extra information, stored as ``invdiff.metadata``.
    """
    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    header = {
        "invdiff.format": FORMAT,
        "invdiff.config": json.dumps(model.config.to_dict()),
        "invdiff.version": __version__,
        "invdiff.metadata": json.dumps(metadata or {}),
    }
    data = safetensors.torch.save(tensors, metadata=header)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make the prior private
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's file-creation mask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_checkpoint_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"config": VDMConfig, "version": str, "metadata": dict}`` of a checkpoint, no weights."""
    header, _ = _read_header(Path(path))
    return _parse_metadata(Path(path), header.get("__metadata__") or {})


def load_prior(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> VDMPrior:
    """Load a checkpoint written by :func:`save_prior` as a :class:`VDMPrior` on ``device``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: not a safetensors file (e.g. a pickle), truncated, not an invdiff
            checkpoint, or tensors that do not match the stored configuration.
    """
    path = Path(path)
    header, _ = _read_header(path)
    info = _parse_metadata(path, header.get("__metadata__") or {})
    model = VDM(info["config"])
    expected = {k: v.shape for k, v in model.state_dict().items()}
    found = {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    _check_tensors(path, expected, found)
    try:
        state = safetensors.torch.load_file(path, device="cpu")
    except Exception as err:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: cannot read tensors ({err})") from err
    model.load_state_dict(state, strict=True)
    return VDMPrior(model.to(device))


def _read_header(path: Path) -> tuple[dict[str, Any], int]:
    """Parse and validate the safetensors header by hand; returns ``(header, header_size)``."""
    if not path.is_file():
        raise FileNotFoundError(f"no prior checkpoint at {path}")
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(9)
        # a safetensors file is an 8-byte length and a JSON object; its length bytes can be
        # anything (0x80 or "PK" included), so the guesses below are only for non-JSON files
        if head[8:9] != b"{":
            if head[:1] == b"\x80":
                raise CheckpointError(
                    f"{path} is a pickle file; invdiff loads only safetensors "
                    "checkpoints and never unpickles (re-export the weights with save_prior)"
                )
            if head[:2] == b"PK":
                raise CheckpointError(
                    f"{path} is a zip archive (a torch.save file or an .npz?), not a safetensors "
                    "checkpoint; invdiff never unpickles (re-export torch weights with save_prior)"
                )
            if head[:2] == b"\x1f\x8b":
                raise CheckpointError(f"{path} is gzip-compressed (a .nii.gz?), not a "
                                      "safetensors checkpoint")
            if len(head) < 9:
                raise CheckpointError(
                    f"{path} is truncated or not a safetensors file ({size} bytes)")
            raise CheckpointError(f"{path} is not a safetensors file (no JSON header)")
        f.seek(8)
        n = int.from_bytes(head[:8], "little")
        if n > _MAX_HEADER:
            raise CheckpointError(f"{path} is not a safetensors file (header size {n})")
        if 8 + n > size:
            raise CheckpointError(
                f"{path} is truncated: header needs {8 + n} bytes, file has {size}"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is not a safetensors file (bad header: {err})") from err
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is not a safetensors file (header is not an object)")
    meta = header.get("__metadata__", {})
    if not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise CheckpointError(f"{path} is not a safetensors file (bad __metadata__ entry)")
    for k, v in header.items():
        if k != "__metadata__" and not _is_tensor_entry(v):
            raise CheckpointError(
                f"{path} is not a safetensors file (bad header entry for tensor {k!r}: expected "
                "dtype, shape and two data_offsets)"
            )
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    need = 8 + n + max(ends, default=0)
    if need > size:
        raise CheckpointError(f"{path} is truncated: tensors need {need} bytes, file has {size}")
    return header, n


def _is_tensor_entry(v: Any) -> bool:
    """A safetensors header entry: ``{"dtype": str, "shape": [int...], "data_offsets": [a, b]}``."""
    if not isinstance(v, dict):
        return False
    shape, offsets = v.get("shape"), v.get("data_offsets")
    return (
        isinstance(v.get("dtype"), str)
        and isinstance(shape, list)
        and all(isinstance(n, int) and n >= 0 for n in shape)
        and isinstance(offsets, list)
        and len(offsets) == 2
        and all(isinstance(n, int) and n >= 0 for n in offsets)
        and offsets[0] <= offsets[1]
    )


def _parse_metadata(path: Path, meta: dict[str, str]) -> dict[str, Any]:
    if meta.get("invdiff.format") != FORMAT:
        raise CheckpointError(
            f"{path} is a safetensors file but not an invdiff prior checkpoint "
            f"(invdiff.format = {meta.get('invdiff.format')!r}, expected {FORMAT!r})"
        )
    try:
        config = VDMConfig.from_dict(json.loads(meta["invdiff.config"]))
        metadata = json.loads(meta.get("invdiff.metadata", "{}"))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: invalid stored configuration ({err})") from err
    return {"config": config, "version": meta.get("invdiff.version"), "metadata": metadata}


def _check_tensors(
    path: Path, expected: dict[str, torch.Size], found: dict[str, tuple[int, ...]]
) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if tuple(expected[k]) != found[k])
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}{' ...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}{' ...' if len(unexpected) > 3 else ''}")
        for k in wrong[:3]:
            parts.append(f"{k}: shape {found[k]}, config needs {tuple(expected[k])}")
        raise CheckpointError(
            f"{path}: tensors do not match the stored configuration: {'; '.join(parts)}"
        )
