"""Frozen configuration of a training run, parsed once at the boundary (CLI or Python caller).

:class:`TrainConfig` holds everything that decides a run: the model configuration (a
:class:`~invdiff.priors.vdm.VDMConfig`), the data (:class:`DataConfig`), the augmentation
(:class:`AugmentConfig`) and the optimisation settings. It serialises to JSON
(:func:`config_to_json`) so that a resume file can check that it continues the same run.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from invdiff.config import check_seed
from invdiff.io.atomic import OutputExistsError

#: Settings that may change between a run and its resumption (budgets, display, bookkeeping).
RESUMABLE_CHANGES = frozenset(
    {"max_steps", "max_minutes", "resume", "overwrite", "progress", "log_every", "val_every",
     "ckpt_every", "compile", "device", "output", "cooldown_steps"}
)


@dataclass(frozen=True)
class DataConfig:
    """Where training images come from and how they are turned into model-sized slices.

    Attributes:
        paths: training inputs: ``.npz`` files (arrays ``(N, H, W)`` in [-1, 1]), NIfTI volumes
            (``.nii``/``.nii.gz``) or folders of PNG images; the kind is decided by the suffix.
        val_paths: held-out inputs of the same kinds. If empty, ``.npz`` inputs use their
            ``val_key`` array and volumes/folders hold out ``val_fraction`` of the files.
        image_size: side of the square images the model sees.
        axes: volume axes to slice along (0, 1, 2); ``(0, 1, 2)`` takes all three orientations.
        reorient: present NIfTI slices in display orientation (RAS, superior/anterior at the
            top), the orientation ``invdiff solve`` shows a prior by default; ``False`` keeps
            the file's voxel order (then solve with ``--no-reorient``).
        min_foreground: skip slices whose fraction of pixels above 10 % of the volume's robust
            scale is below this (near-empty slices outside the head).
        val_fraction: fraction of volumes/PNG files held out when ``val_paths`` is empty.
        train_key, val_key: array names in ``.npz`` inputs.
    """

    paths: tuple[str, ...]
    val_paths: tuple[str, ...] = ()
    image_size: int = 128
    axes: tuple[int, ...] = (2,)
    reorient: bool = True
    min_foreground: float = 0.05
    val_fraction: float = 0.1
    train_key: str = "train"
    val_key: str = "val"

    def __post_init__(self) -> None:
        if not self.paths:
            raise ValueError("DataConfig.paths is empty: expected at least one input path")
        if self.image_size < 4:
            raise ValueError(f"image_size must be >= 4, got {self.image_size}")
        if not self.axes or any(a not in (0, 1, 2) for a in self.axes):
            raise ValueError(f"axes must be a non-empty subset of (0, 1, 2), got {self.axes}")
        if len(set(self.axes)) != len(self.axes):  # each slice would be trained on twice
            raise ValueError(f"axes must not repeat, got {self.axes}")
        if not 0.0 <= self.min_foreground < 1.0:
            raise ValueError(f"min_foreground must be in [0, 1), got {self.min_foreground}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")


@dataclass(frozen=True)
class AugmentConfig:
    """Random augmentation of training batches (never of validation batches).

    Attributes:
        enabled: master switch.
        flip_lr, flip_ud: probability of a left-right / up-down flip per image.
        max_rotation_deg: rotation angle uniform in ``[-max, max]`` degrees.
        max_scale: zoom factor ``exp(u)`` with ``u`` uniform in ``[-log(1+max), log(1+max)]``.
        max_log_gamma: intensity gamma ``exp(u)``, ``u`` uniform in ``[-max, max]``, applied
            as ``((x + 1) / 2) ** gamma * 2 - 1`` so the background (-1) and the range stay put.
        max_aspect: anisotropic stretch: rows scaled by ``exp(u)`` and columns by ``exp(-u)``,
            ``u`` uniform in ``[-log(1+max), log(1+max)]`` (heads differ in length and width).
        elastic_px: smooth random displacement (elastic deformation, Simard et al. 2003): on an
            ``elastic_grid x elastic_grid`` grid of control points each displacement component
            is uniform in ``[-elastic_px, elastic_px]`` pixels, upsampled bicubically.
        max_bias: smooth multiplicative intensity bias field (coil inhomogeneity) ``exp(b)``,
            ``b`` uniform in ``[-log(1 + max_bias), log(1 + max_bias)]`` on the same control
            grid, upsampled bicubically; applied to ``(x + 1) / 2`` so the background stays -1.
        elastic_grid: control points per side of the elastic and bias fields.
        interpolation: how warped images are resampled. ``"bicubic-2x"``: band-limited (FFT)
            upsampling by 2, bicubic sampling, FFT downsampling, which keeps the power spectrum
            of the slices to within a few per cent; ``"bilinear"`` (invdiff <= 0.1 and the
            step-10,000 default prior) attenuates the top octave of k-space 2-4 fold, and a
            prior trained on it draws images that are too smooth.

    :meth:`preset` names the settings the project uses: ``light`` (the defaults), ``strong``
    (the extra deformations on, to make more anatomy out of few heads) and ``legacy`` (``light``
    with bilinear resampling, the default of invdiff <= 0.1, to resume such runs).
    """

    enabled: bool = True
    flip_lr: float = 0.5
    flip_ud: float = 0.0
    max_rotation_deg: float = 5.0
    max_scale: float = 0.05
    max_log_gamma: float = 0.1
    max_aspect: float = 0.0
    elastic_px: float = 0.0
    max_bias: float = 0.0
    elastic_grid: int = 5
    interpolation: str = "bicubic-2x"

    def __post_init__(self) -> None:
        for name in ("flip_lr", "flip_ud"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
        for name in ("max_rotation_deg", "max_scale", "max_log_gamma", "max_aspect",
                     "elastic_px", "max_bias"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.interpolation not in ("bicubic-2x", "bilinear"):
            raise ValueError(f"interpolation must be 'bicubic-2x' or 'bilinear', "
                             f"got {self.interpolation!r}")
        if self.elastic_grid < 2:
            raise ValueError(f"elastic_grid must be >= 2, got {self.elastic_grid}")

    @property
    def smooth_fields(self) -> bool:
        """Whether the extra draws of the elastic/stretch/bias augmentations are made."""
        return self.max_aspect > 0 or self.elastic_px > 0 or self.max_bias > 0

    @classmethod
    def preset(cls, name: str) -> AugmentConfig:
        """``none`` (off), ``light`` (the defaults: flips, 5 degrees, 5 % zoom, gamma) or
        ``strong`` (10 degrees, 10 % zoom, 10 % stretch, 3 px elastic, 15 % bias field,
        wider gamma) or ``legacy`` (``light`` with bilinear resampling)."""
        presets = {
            "none": cls(enabled=False),
            "light": cls(),
            "legacy": cls(interpolation="bilinear"),
            "strong": cls(max_rotation_deg=10.0, max_scale=0.10, max_log_gamma=0.2,
                          max_aspect=0.10, elastic_px=3.0, max_bias=0.15),
        }
        if name not in presets:
            raise ValueError(f"unknown augmentation preset {name!r}; "
                             f"choose one of {', '.join(presets)}")
        return presets[name]


@dataclass(frozen=True)
class TrainConfig:
    """One training run.

    Attributes:
        model: the model configuration (a ``VDMConfig``; any dataclass for a custom model).
        data, augment: see :class:`DataConfig`, :class:`AugmentConfig`.
        output: the prior file to write (e.g. ``vdm.ckpt``); the resume state goes to
            :func:`resume_path` and the log to :func:`log_path`.
        batch_size: global batch per optimiser step (split evenly over DDP ranks).
        lr, weight_decay, betas: AdamW settings; the learning rate rises linearly from 0 over
            ``warmup_steps``, stays constant, and decays over the last ``cooldown_steps``
            steps before ``max_steps`` (:func:`lr_factor`).
        cooldown_steps: length of the final decay (0: none). A warmup-stable-decay schedule
            (Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed
            Training Durations"): a constant-rate run can be resumed with a larger ``max_steps``
            and a cooldown decided late, so both may change on resume.
        grad_clip: clip the global gradient norm to this (0 disables).
        ema_decay: decay of the exponential moving average of the weights (the exported prior).
        max_steps: stop at this global step; ``max_minutes``: also stop (and checkpoint) once
            this many minutes of this invocation have passed.
        val_every, val_size, val_batch_size: validation bits/dim of the EMA model on the first
            ``val_size`` held-out images every ``val_every`` steps (0 disables), with a fixed
            generator so numbers are comparable across steps and runs.
        ckpt_every: write the prior and the resume state every this many steps (and at the end).
        log_every: write a log row (and refresh the plain-text display) every this many steps.
        seed: seeds data order, augmentation, the loss noise and the initial weights.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"``.
        bf16: run the forward pass under bf16 autocast (CPU and GPU).
        compile: wrap the loss computation in ``torch.compile``.
        resume: continue from the resume file next to ``output`` (error if absent).
        overwrite: start afresh even if ``output``, its resume file or its log exist (without
            it, and without ``resume``, any of them existing is an error,
            :func:`check_run_outputs`); they are replaced when the new run writes its first
            checkpoint, the log then holding only the new run's rows.
        progress: show the rich progress display (rank 0 only).
        init: a prior file whose weights start the run (fine-tuning; the optimiser, step count
            and data order start afresh); its model configuration must equal ``model``.
        init_sha256: SHA-256 of the ``init`` file. Filled in by :func:`train` when left out and
            checked when given, so a run's metadata names the exact weights it started from
            even after the file at that path (e.g. the shipped default prior) is replaced.
    """

    model: Any
    data: DataConfig
    output: str
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    batch_size: int = 16
    lr: float = 2e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = 200
    cooldown_steps: int = 0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    max_steps: int = 10_000
    max_minutes: float | None = None
    val_every: int = 500
    val_size: int = 256
    val_batch_size: int = 32
    ckpt_every: int = 250
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    bf16: bool = False
    compile: bool = False
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    init: str | None = None
    init_sha256: str | None = None

    def __post_init__(self) -> None:
        positive = ("batch_size", "max_steps", "val_size", "val_batch_size", "ckpt_every",
                    "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "weight_decay", "warmup_steps", "cooldown_steps", "grad_clip",
                     "val_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.cooldown_steps > self.max_steps:
            raise ValueError(f"cooldown_steps {self.cooldown_steps} exceeds max_steps "
                             f"{self.max_steps}: the decay must end at max_steps")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"max_minutes must be > 0 or None, got {self.max_minutes}")
        check_seed(self.seed)
        if not str(self.output):
            raise ValueError("output path is empty")
        if self.resume and self.overwrite:
            raise ValueError("pass either --resume (continue the run) or --overwrite (start "
                             "afresh), not both")
        model_size = getattr(self.model, "image_size", None)
        if model_size is not None and model_size != self.data.image_size:
            raise ValueError(
                f"data.image_size {self.data.image_size} differs from the model's image_size "
                f"{model_size}"
            )


def lr_factor(step: int, warmup: int, cooldown: int, max_steps: int) -> float:
    """Learning-rate multiplier of optimiser step ``step`` (0-based): linear warm-up over
    ``warmup`` steps, then 1, then ``1 - sqrt((step - start) / cooldown)`` from
    ``start = max_steps - cooldown`` (the "1-sqrt" cooldown of Hägele et al. 2024, Sec. 3)."""
    factor = min(1.0, (step + 1) / warmup) if warmup else 1.0
    start = max_steps - cooldown
    if cooldown and step >= start:
        factor *= max(0.0, 1.0 - math.sqrt((step - start) / cooldown))
    return factor


def resume_path(output: str | Path) -> Path:
    """The resume file of a run writing ``output``: ``vdm.ckpt`` -> ``vdm.resume.safetensors``."""
    p = Path(output)
    return p.with_name(p.stem + ".resume.safetensors")


def log_path(output: str | Path) -> Path:
    """The JSON-lines log of a run writing ``output``: ``vdm.ckpt`` -> ``vdm.log.jsonl``."""
    p = Path(output)
    return p.with_name(p.stem + ".log.jsonl")


def check_run_outputs(output: str | Path, resume: bool, overwrite: bool) -> None:
    """Refuse to start a fresh run over an earlier one's files.

    Without ``resume`` or ``overwrite``, ``output``, its :func:`resume_path` and its
    :func:`log_path` must not exist: a new run would replace the prior and mix its log rows into
    the old run's log.

    Raises:
        OutputExistsError: one of them exists (the message names it).
    """
    if Path(output).is_dir():
        raise IsADirectoryError(f"output {output} is a folder; give a file path such as "
                                f"{Path(output) / 'vdm.ckpt'}")
    if resume or overwrite:
        return
    for path in (Path(output), resume_path(output), log_path(output)):
        if path.exists():
            raise OutputExistsError(f"{path} exists; pass --resume to continue that run or "
                                    "--overwrite to start afresh")


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """Plain-JSON view of a config (nested dataclasses become dicts, tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=_json_default))


def config_to_json(config: TrainConfig) -> str:
    return json.dumps(config_to_dict(config), sort_keys=True)


def config_mismatch(saved: dict[str, Any], config: TrainConfig) -> list[str]:
    """Names of settings that differ between a saved run and ``config`` and must not change.

    Nested settings are named with dots (``data.axes``). A setting the saved run did not have
    (written by an older version) counts as unchanged if ``config`` holds its default.
    """
    now = config_to_dict(config)
    return sorted(_diff(_with_old_defaults(saved), now, config, "", skip=RESUMABLE_CHANGES))


def _with_old_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved run's settings with what older versions did for settings they did not record."""
    saved = dict(saved)
    if isinstance(saved.get("augment"), dict):  # written before the setting existed
        saved["augment"] = {"interpolation": "bilinear", **saved["augment"]}
    return saved


#: The ``invdiff train`` option behind a setting (by its full name or its first dotted part).
CLI_FLAGS: dict[str, str] = {
    "model": "--preset/--channels/--dropout/--image-size/--init",
    "augment": "--augment-preset/--no-augment", "data.paths": "DATA",
    "data.val_paths": "--val-data", "data.axes": "--axes", "data.reorient": "--no-reorient",
    "data.image_size": "--image-size", "batch_size": "--batch-size", "lr": "--lr",
    "warmup_steps": "--warmup", "seed": "--seed", "ema_decay": "--ema-decay", "bf16": "--bf16",
    "ckpt_every": "--ckpt-every", "init": "--init", "init_sha256": "--init",
}
GROUPED = ("model", "augment")  # named together: their values come from one option


def describe_mismatch(saved: dict[str, Any], config: TrainConfig, names: list[str]) -> str:
    """One line naming each changed setting with its saved and current value (settings of the
    model and of the augmentation together) and the ``invdiff train`` option that sets it."""
    now, saved = config_to_dict(config), _with_old_defaults(saved)

    def value(d: Any, name: str) -> Any:
        for part in name.split("."):
            if not isinstance(d, dict) or part not in d:
                return "(unset)"
            d = d[part]
        return d

    parts = []
    for group in GROUPED:
        members = [f"{n.split('.', 1)[1]} {value(saved, n)!r} -> {value(now, n)!r}"
                   for n in names if n.startswith(group + ".")]
        if members:
            parts.append(f"{group} settings {', '.join(members)} ({CLI_FLAGS[group]})")
    for name in names:
        if name.split(".")[0] in GROUPED:
            continue
        flag = CLI_FLAGS.get(name)
        parts.append(f"{name} was {value(saved, name)!r}, now {value(now, name)!r}"
                     + (f" ({flag})" if flag else ""))
    return "; ".join(parts)


def _diff(saved: dict[str, Any], now: dict[str, Any], obj: Any, prefix: str,
          skip: frozenset[str] = frozenset()) -> list[str]:
    defaults = _field_defaults(obj)
    out: list[str] = []
    for key in (set(saved) | set(now)) - skip:
        name = prefix + key
        if key not in saved:
            if key not in defaults or _plain(defaults[key]) != now[key]:
                out.append(name)
        elif key not in now:
            out.append(name)
        elif isinstance(saved[key], dict) and isinstance(now[key], dict):
            out.extend(_diff(saved[key], now[key], getattr(obj, key, None), name + "."))
        elif saved[key] != now[key]:
            out.append(name)
    return out


def _field_defaults(obj: Any) -> dict[str, Any]:
    if not dataclasses.is_dataclass(obj):
        return {}
    out = {}
    for f in dataclasses.fields(obj):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} in a TrainConfig")
