"""Run manifests: a JSON record, written beside every output, from which a run can be repeated.

A manifest holds the software versions (invdiff, torch, numpy, Python), the git commit of the
invdiff source tree when it is a git checkout, the device, the fully resolved configuration, the
seed, SHA-256 digests of the input, prior and configuration files, the timings, the
data-consistency residual and, when a reference was given, the metrics. ``invdiff solve --manifest
FILE`` reads it back (:func:`read_manifest`) and repeats the run; on CPU the result is bit-identical
because every random draw comes from one seeded ``torch.Generator`` consumed in slice order.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invdiff.io.atomic import write_atomic

FORMAT = "invdiff.manifest"
VERSION = 1


class ManifestError(ValueError):
    """A manifest file that cannot be read or does not describe a solve."""


def manifest_path(output: str | os.PathLike) -> Path:
    """``OUT.manifest.json`` beside ``OUT``."""
    output = Path(output)
    return output.with_name(output.name + ".manifest.json")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """``HEAD`` of the git checkout holding ``path`` (default: the invdiff package), or ``None``.

    A ``+dirty`` suffix marks uncommitted changes to tracked files.
    """
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where, capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def environment() -> dict[str, Any]:
    """Versions of invdiff and the libraries that determine numerical results."""
    import numpy
    import torch

    import invdiff

    return {
        "invdiff": invdiff.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git_commit": git_commit(),
    }


def write_manifest(path: str | os.PathLike, manifest: dict[str, Any]) -> None:
    """Write ``manifest`` (with format and version keys added) atomically as indented JSON."""
    record = {"format": FORMAT, "version": VERSION, **manifest}
    text = json.dumps(record, indent=2, sort_keys=False, allow_nan=False, default=_default)

    def write(tmp: Path) -> None:
        tmp.write_text(text + "\n", encoding="utf-8")

    write_atomic(path, write)


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Read a manifest; checks it is an invdiff manifest of a known version with a config."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ManifestError(f"{path}: not an invdiff manifest (format != {FORMAT!r})")
    if record.get("version") != VERSION:
        raise ManifestError(f"{path}: manifest version {record.get('version')}; expected {VERSION}")
    for key in ("config", "input", "outputs"):
        if not isinstance(record.get(key), dict):
            raise ManifestError(f"{path}: missing the {key!r} section")
    for section, key in (("input", "path"), ("outputs", "mean")):
        if not isinstance(record[section].get(key), str):
            raise ManifestError(f"{path}: missing {section}.{key} (a file path)")
    return record


#: Environment entries that can change a run's numbers (the platform string and Python's patch
#: level are left out: they change with every OS update without changing results).
NUMERIC_ENVIRONMENT = ("invdiff", "torch", "numpy", "git_commit")


def environment_changes(record: dict[str, Any]) -> list[str]:
    """``"torch 2.4.0 -> 2.13.0"``-style notes for each :data:`NUMERIC_ENVIRONMENT` entry that
    differs between a manifest's recorded ``environment`` and this process's (a re-run may then
    differ in the last bits; none when the manifest records no environment)."""
    recorded = record.get("environment")
    if not isinstance(recorded, dict):
        return []
    now = environment()
    return [f"{key} {recorded.get(key) or 'none'} -> {now.get(key) or 'none'}"
            for key in NUMERIC_ENVIRONMENT
            if key in recorded and recorded.get(key) != now.get(key)]


#: Operator-spec keys whose values are files (``kmask:file=``, ``sense:espirit=``); a value
#: without a key counts when it names a data file (``sense:maps.npy``).
FILE_KEYS = ("file", "espirit", "maps")
DATA_SUFFIXES = (".npy", ".npz", ".nii", ".nii.gz", ".mat", ".h5")
#: Characters of the spec grammar: a path holding one cannot be written into a spec.
SPEC_SEPARATORS = ("|", ",", "=")


def operator_files(spec: str) -> dict[str, str]:
    """``{absolute path: SHA-256}`` of the files an operator spec names (sampling masks, coil
    maps: ``kmask:file=mask.npy``, ``sense:maps.npy``), as the operator factories find them
    (relative to the working folder): values of :data:`FILE_KEYS`, and key-less values with a
    :data:`DATA_SUFFIXES` suffix, that name existing files (``kcrop:32`` never counts)."""
    found: dict[str, str] = {}

    def record(value: str) -> str:
        candidate = Path(value).expanduser()
        if candidate.is_file():
            found[str(candidate.resolve())] = sha256_file(candidate)
        return value

    _map_file_values(spec, record)
    return found


def operator_files_relative_to(spec: str, folder: str | os.PathLike[str]) -> str:
    """``spec`` with each relative file value that names a file in ``folder`` made absolute
    (a config file's ``operator``, like its ``prior``, is read next to the file first); other
    values, and files whose absolute path holds one of :data:`SPEC_SEPARATORS`, stay as
    written."""

    def rebase(value: str) -> str:
        path = Path(value).expanduser()
        if not path.is_absolute() and (Path(folder) / path).is_file():
            absolute = str((Path(folder) / path).resolve())
            if not any(c in absolute for c in SPEC_SEPARATORS):  # would split the spec
                return absolute
        return value

    return _map_file_values(spec, rebase)


def _map_file_values(spec: str, fn: Callable[[str], str]) -> str:
    """``spec`` with ``fn(value)`` in place of each file value (see :func:`operator_files`);
    everything else, spacing included, is kept."""
    stages = []
    for stage in spec.split("|"):
        name, colon, args = stage.partition(":")
        out = []
        for arg in args.split(",") if colon else ():
            key, has_key, value = arg.partition("=")
            value = value if has_key else key
            named = has_key and key.strip().lower() in FILE_KEYS
            if named or (not has_key and value.strip().lower().endswith(DATA_SUFFIXES)):
                new = fn(value.strip())
                if new != value.strip():
                    arg = f"{key}={new}" if has_key else new
            out.append(arg)
        stages.append(f"{name}:{','.join(out)}" if colon else stage)
    return "|".join(stages)


def check_operator_files(found: dict[str, str], recorded: dict[str, str]) -> None:
    """Refuse a re-run whose operator files differ from those a manifest recorded.

    Files are compared by content: the same files found at other paths (a moved project
    folder) pass.

    Raises:
        ManifestError: names the first file that is missing, new or changed.
    """
    if sorted(found.values()) == sorted(recorded.values()):
        return
    for path in sorted(set(found) | set(recorded)):
        if found.get(path) != recorded.get(path):
            what = ("is no longer where the operator finds it" if path not in found else
                    "was not used by the recorded run" if path not in recorded else
                    "has changed")
            raise ManifestError(f"operator file {path} {what} (the manifest recorded "
                                f"{sorted(recorded) or 'none'}); the re-run would not repeat it")


def _default(obj: Any) -> Any:
    """JSON for numpy/torch scalars and arrays."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in a manifest")
