"""Solve configuration: TOML files, command-line overrides, one frozen dataclass.

A configuration file is flat TOML with the keys below plus an optional ``[options]`` table of
solver-specific keyword arguments (checked against the solver's signature when it is resolved).
Unknown keys are an error. Layers are merged in order (defaults, then the file or a manifest, then
command-line flags); a later layer overrides an earlier one::

    operator = "kcrop:32"     # operator spec (measurement files carry their own)
    prior = "default"         # "default", a checkpoint path, or a plugin name
    solver = "kspace-mix"
    lambda = 1.0              # data-consistency weight in (0, 1]
    steps = 50
    samples = 4               # posterior samples per slice: output = mean, std map if > 1
    seed = 0
    device = "cpu"            # "cpu", "cuda" or "cuda:N"
    batch = 8                 # slices per solver call
    axis = 2                  # slice axis of 3D volumes
    # frame = 0               # volume index of 4D input
    # noise_sigma = 0.0       # measurement noise std (measurement files carry their own)
    save_samples = false      # also write every sample
    phase = false             # k-space of a complex image: estimate and remove a smooth phase
    reorient = true           # show the prior slices in its training orientation (see orientation)

    [options]                 # passed to the solver as keyword arguments
    # eta = 0.0
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration file or value that cannot be used."""


# TOML key -> (field name, accepted python types)
_KEYS: dict[str, tuple[str, tuple[type, ...]]] = {
    "operator": ("operator", (str,)),
    "prior": ("prior", (str,)),
    "solver": ("solver", (str,)),
    "lambda": ("lam", (float, int)),
    "steps": ("steps", (int,)),
    "samples": ("samples", (int,)),
    "seed": ("seed", (int,)),
    "device": ("device", (str,)),
    "batch": ("batch", (int,)),
    "axis": ("axis", (int,)),
    "frame": ("frame", (int,)),
    "noise_sigma": ("noise_sigma", (float, int)),
    "save_samples": ("save_samples", (bool,)),
    "phase": ("phase", (bool,)),
    "reorient": ("reorient", (bool,)),
    "options": ("options", (dict,)),
}
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")  # what the docs promise and the tests cover


@dataclass(frozen=True)
class SolveConfig:
    """Everything that determines a solve besides its input and output files."""

    operator: str | None = None
    prior: str = "default"
    solver: str = "kspace-mix"
    lam: float = 1.0
    steps: int = 50
    samples: int = 4
    seed: int = 0
    device: str = "cpu"
    batch: int = 8
    axis: int = 2
    frame: int | None = None
    noise_sigma: float | None = None
    save_samples: bool = False
    phase: bool = False
    reorient: bool = True
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (0.0 < self.lam <= 1.0):
            raise ConfigError(f"lambda must be in (0, 1], got {self.lam}")
        for name in ("steps", "samples", "batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        check_seed(self.seed)
        if self.axis not in (-3, -2, -1, 0, 1, 2):
            raise ConfigError(f"axis must be 0, 1 or 2, got {self.axis}")
        if self.frame is not None and self.frame < 0:
            raise ConfigError(f"frame must be >= 0, got {self.frame}")
        if self.noise_sigma is not None and not (
            math.isfinite(self.noise_sigma) and self.noise_sigma >= 0
        ):
            raise ConfigError(f"noise_sigma must be finite and >= 0, got {self.noise_sigma}")
        validate_device(self.device)

    def to_toml_dict(self) -> dict[str, Any]:
        """The configuration with TOML key names, ``None`` values left out (for manifests)."""
        by_field = {name: key for key, (name, _) in _KEYS.items()}
        return {by_field[k]: v for k, v in asdict(self).items() if v is not None}


def check_seed(seed: int) -> None:
    """Refuse a seed outside ``[0, 2^32)``: torch's CPU generator keeps only the low 32 bits of
    its seed (0 and 2^32 draw the same numbers), so larger ones would look distinct but repeat
    runs, and beyond 64 bits it says only "Overflow"."""
    if not 0 <= seed < 2**32:
        raise ConfigError(f"seed must be in [0, 2^32) (torch's generator uses 32 bits), got {seed}")


def validate_device(device: str) -> None:
    """Refuse a device name other than ``cpu``, ``cuda`` or ``cuda:N`` (:class:`ConfigError`)."""
    if not _DEVICE.match(device):
        raise ConfigError(f"device must be cpu, cuda or cuda:N, got {device!r}")


def parse_config(data: Mapping[str, Any], source: str = "configuration") -> dict[str, Any]:
    """Validate TOML-style keys and types; return ``{field name: value}`` for the keys present."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in _KEYS:
            raise ConfigError(f"{source}: unknown key {key!r}; known keys: {', '.join(_KEYS)}")
        name, types = _KEYS[key]
        if value is None:
            continue
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            expected = " or ".join(t.__name__ for t in types)
            raise ConfigError(
                f"{source}: {key} must be {expected}, got {type(value).__name__} {value!r}"
            )
        if name == "options":
            _check_options(value, source)
            value = dict(value)
        out[name] = float(value) if float in types and not isinstance(value, bool) else value
    return out


def _check_options(options: Mapping[str, Any], source: str) -> None:
    for key, value in options.items():
        if not isinstance(value, bool | int | float | str):
            raise ConfigError(
                f"{source}: options.{key} must be a number, string or boolean, "
                f"got {type(value).__name__}"
            )


def parse_option_pairs(items: Iterable[str], what: str = "--option") -> dict[str, Any]:
    """Solver options from ``KEY=VALUE`` strings (``--option``): booleans, ints and floats are
    recognised, anything else stays a string; checked like a configuration file's options.
    ``what`` names the source in errors."""
    options: dict[str, Any] = {}
    for item in items:
        key, eq, text = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"{what} expects KEY=VALUE, got {item!r}")
        options[key.strip()] = _option_value(text.strip())
    return parse_config({"options": options}, what)["options"]


def _option_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a TOML configuration file and validate it with :func:`parse_config`.

    A relative ``prior`` path that names a file next to the config (``prior = "vdm.ckpt"``) is
    resolved against the config file's folder, so a config works from any working directory;
    anything else (``"default"``, a plugin name, a path relative to the working directory) is
    kept as written. The same holds for the files an ``operator`` spec names
    (``operator = "kmask:file=mask.npy"``).
    """
    try:
        import tomllib
    except ModuleNotFoundError as exc:  # Python 3.10
        raise ConfigError("--config needs Python >= 3.11 (the tomllib module)") from exc
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"config file {path} is a folder; name a .toml file")
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: malformed TOML ({exc})") from exc
    layer = parse_config(data, str(path))
    prior = layer.get("prior")
    if prior is not None and not Path(prior).is_absolute() and (path.parent / prior).is_file():
        # a checkpoint path in a config file is relative to the file, like an include
        layer["prior"] = str((path.parent / prior).resolve())
    if layer.get("operator"):  # so are the operator's mask and coil-map files
        from invdiff.manifest import operator_files_relative_to

        layer["operator"] = operator_files_relative_to(layer["operator"], path.parent)
    return layer


def resolve_config(*layers: Mapping[str, Any]) -> SolveConfig:
    """Merge layers of ``{field name: value}`` (later wins, ``None`` means "not given").

    Solver ``options`` are merged key by key, so ``--option final_dc=false`` keeps a config file's
    ``[options] eta = 0``.
    """
    merged: dict[str, Any] = {}
    names = {f.name for f in fields(SolveConfig)}
    for layer in layers:
        for name, value in layer.items():
            if name not in names:
                raise ConfigError(f"unknown configuration field {name!r}")
            if name == "options" and value is not None:  # merged key by key, later wins
                merged["options"] = {**merged.get("options", {}), **value}
            elif value is not None:
                merged[name] = value
    return SolveConfig(**merged)
