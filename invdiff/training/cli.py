"""Plain-argument entry point for ``invdiff train`` (the typer command wraps this one call)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from invdiff.training.config import AugmentConfig, DataConfig, TrainConfig
from invdiff.training.loop import NO_WEIGHTS, train


def cli_train(
    data: Sequence[str | Path],
    output: str | Path = "vdm.ckpt",
    *,
    preset: str | None = None,
    val_data: Sequence[str | Path] = (),
    steps: int = 10_000,
    minutes: float | None = None,
    batch_size: int = 16,
    lr: float = 2e-4,
    warmup: int = 200,
    cooldown: int = 0,
    ema_decay: float = 0.999,
    seed: int = 0,
    resume: bool = False,
    overwrite: bool = False,
    device: str = "auto",
    bf16: bool = False,
    compile: bool = False,
    image_size: int | None = None,
    channels: Sequence[int] | None = None,
    dropout: float | None = None,
    axes: Sequence[int] | str = (2,),
    reorient: bool = True,
    augment: bool = True,
    augment_preset: str = "light",
    init: str | Path | None = None,
    val_every: int = 500,
    ckpt_every: int = 250,
    log_every: int = 10,
    progress: bool = True,
) -> Path:
    """Train a VDM prior from files and return the path of the written prior.

    Args:
        data: ``.npz`` stacks, NIfTI volumes or PNG folders (see :class:`DataConfig`).
        output: prior file to write; ``<stem>.resume.safetensors`` and ``<stem>.log.jsonl``
            go next to it.
        preset: model size, a :meth:`VDMConfig.preset` name (``default``, ``large``, ``tiny``;
            default ``default``, or the ``init`` file's model).
        val_data: held-out inputs (default: the ``val`` array of npz inputs, or a fraction
            of the volumes/folders).
        steps: stop at this total step count (counted across resumed runs).
        minutes: also stop, with a checkpoint, after this many minutes of this invocation.
        batch_size: global batch per step (split over ``torchrun`` ranks).
        lr, warmup, ema_decay, seed: optimisation settings (see :class:`TrainConfig`).
        cooldown: decay the learning rate to 0 over the last this many steps before ``steps``
            (``cooldown_steps`` of :class:`TrainConfig`; may be set when resuming).
        resume: continue from the resume file next to ``output``.
        overwrite: start afresh although ``output``, its resume file or its log exist (they are
            replaced at the new run's first checkpoint). Without ``resume`` or ``overwrite``
            any of them existing is an error (``OutputExistsError``, a ``FileExistsError``).
        device: ``auto``, ``cpu``, ``cuda``...; bf16: bf16 autocast; compile: ``torch.compile``.
        image_size: side of the model's square images (default: the preset's, 128).
        channels: U-Net feature channels per level, overriding the preset's
            (``unet_channels`` of :class:`VDMConfig`, e.g. ``(24, 48, 96, 192)``).
        dropout: dropout rate of the residual blocks, overriding the preset's (or, with
            ``init``, the file's: it has no weights of its own).
        axes: volume axes to slice: a sequence, or a string ``"all"`` / ``"0,2"``.
        reorient: NIfTI slices in display orientation (as ``invdiff solve`` presents them);
            ``False`` keeps the file's voxel order.
        augment: augment the training images (``False``: none).
        augment_preset: :meth:`AugmentConfig.preset` name: ``light`` (flips, small
            rotations/scalings, gamma), ``strong`` (adds stretch, elastic deformation, bias
            field) or ``legacy`` (``light`` with bilinear resampling, to resume old runs).
        init: start from this prior file's weights (``"default"``: the shipped default prior),
            e.g. to fine-tune it on your own images; its model configuration is used.
        val_every, ckpt_every, log_every: intervals in steps.
        progress: show the progress display.
    """
    from invdiff.priors.checkpoint import read_checkpoint_info
    from invdiff.priors.config import VDMConfig
    from invdiff.priors.default import DEFAULT_WEIGHTS

    if isinstance(axes, str):
        axes = (0, 1, 2) if axes.strip() == "all" else tuple(
            int(a) for a in axes.split(",") if a.strip())
    overrides: dict[str, object] = {}
    if image_size is not None:
        overrides["image_size"] = image_size
    if channels is not None:
        overrides["unet_channels"] = tuple(channels)
    if init is not None:
        init = DEFAULT_WEIGHTS if str(init) == "default" else Path(init)
        # a resume takes the weights (and so the model) from its state, not from the init file,
        # which may have been replaced or removed since
        source = Path(output) if resume and Path(output).is_file() else Path(init)
        if not source.is_file():
            raise FileNotFoundError(f"--init: no such prior file: {init}")
        model = read_checkpoint_info(source)["config"]
        if preset is not None or overrides:
            asked = VDMConfig.preset(preset or "default", **overrides)
            what = ", ".join(f"{k} {getattr(model, k)} (asked: {getattr(asked, k)})"
                             for k in model.differences(asked, ignore=NO_WEIGHTS))
            if what:
                raise ValueError(f"--init {init} holds a different model: {what}; leave "
                                 "--preset, --image-size and --channels out to take the file's")
        if dropout is not None:  # no weights of its own: fine-tuning may change it
            model = dataclasses.replace(model, dropout=dropout)
    else:
        if dropout is not None:
            overrides["dropout"] = dropout
        model = VDMConfig.preset(preset or "default", **overrides)
    config = TrainConfig(
        model=model,
        data=DataConfig(paths=tuple(str(p) for p in data),
                        val_paths=tuple(str(p) for p in val_data),
                        image_size=model.image_size, axes=tuple(axes), reorient=reorient),
        augment=AugmentConfig.preset(augment_preset if augment else "none"),
        output=str(output),
        batch_size=batch_size, lr=lr, warmup_steps=warmup, cooldown_steps=cooldown,
        ema_decay=ema_decay,
        max_steps=steps, max_minutes=minutes, val_every=val_every, ckpt_every=ckpt_every,
        log_every=log_every, seed=seed, device=device, bf16=bf16, compile=compile,
        resume=resume, overwrite=overwrite, progress=progress,
        init=None if init is None else str(init),
    )
    return train(config)
