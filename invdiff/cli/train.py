"""``invdiff train``: train a VDM prior (a thin wrapper over :func:`invdiff.training.cli_train`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from invdiff.cli.common import EXIT_INTERRUPTED, Debug, console, user_errors

EPILOG = """\
Example: invdiff train invdiff/data/brain128.npz --out vdm.ckpt --steps 20000 --minutes 60

Example (continue later): invdiff train invdiff/data/brain128.npz --out vdm.ckpt --resume

Example (start afresh over an earlier run): invdiff train data.npz --out vdm.ckpt --overwrite

Example (2 GPUs): torchrun --nproc-per-node 2 -m invdiff.cli.app train data.npz --out vdm.ckpt
"""


def train(
    data: Annotated[
        list[Path], typer.Argument(help=".npz stacks, NIfTI volumes or folders of PNG/NIfTI.")
    ],
    out: Annotated[Path, typer.Option(help="Prior checkpoint to write (e.g. vdm.ckpt).")],
    preset: Annotated[str | None, typer.Option(
        help="Model size: default, large or tiny (default: default, or --init's).")] = None,
    init: Annotated[str | None, typer.Option(
        help="Start from this prior file's weights ('default': the shipped prior), "
             "e.g. to fine-tune it on your images.")] = None,
    val_data: Annotated[
        list[Path] | None, typer.Option(help="Held-out inputs (repeatable).")
    ] = None,
    steps: Annotated[int, typer.Option(help="Total optimiser steps (across resumes).")] = 10_000,
    minutes: Annotated[
        float | None, typer.Option(help="Stop with a checkpoint after this many minutes.")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Global batch size.")] = 16,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 2e-4,
    warmup: Annotated[int, typer.Option(help="Warm-up steps.")] = 200,
    cooldown: Annotated[int, typer.Option(
        help="Decay the learning rate to 0 over the last N steps before --steps (1-sqrt "
             "cooldown; may be added when resuming a constant-rate run).")] = 0,
    ema_decay: Annotated[float, typer.Option(help="EMA decay of the saved weights.")] = 0.999,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue from OUT's resume file.")] = False,
    overwrite: Annotated[bool, typer.Option(
        help="Start afresh although OUT, its resume file or its log exist (replaced at the "
             "first checkpoint); without it or --resume that is an error.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    bf16: Annotated[bool, typer.Option(help="bf16 autocast.")] = False,
    compile: Annotated[bool, typer.Option(help="torch.compile the network.")] = False,
    image_size: Annotated[
        int | None, typer.Option(help="Side of the square training images (preset's default).")
    ] = None,
    channels: Annotated[str | None, typer.Option(
        help="U-Net channels per level, comma-separated, overriding the preset's "
             "(e.g. 24,48,96,192; the default preset's are 16,32,64,128).")] = None,
    dropout: Annotated[float | None, typer.Option(
        help="Dropout rate in the residual blocks, overriding the preset's "
             "(default 0, large 0.1).")] = None,
    axes: Annotated[
        str, typer.Option(help="Volume axes to slice, comma-separated, e.g. 0,1,2.")
    ] = "2",
    augment: Annotated[bool, typer.Option(
        help="Augment training images (--no-augment: off).")] = True,
    augment_preset: Annotated[str, typer.Option(
        help="light (flips, small rotations/scalings, gamma), strong (+ stretch, elastic, "
             "bias field), legacy (light, bilinear resampling as invdiff 0.1) or none.")] = "light",
    reorient: Annotated[bool, typer.Option(
        help="Show NIfTI slices in display orientation, as invdiff solve presents them "
             "(--no-reorient: file voxel order).")] = True,
    val_every: Annotated[int, typer.Option(help="Validation interval (steps).")] = 500,
    ckpt_every: Annotated[int, typer.Option(help="Checkpoint interval (steps).")] = 250,
    log_every: Annotated[int, typer.Option(help="Log interval (steps).")] = 10,
    quiet: Annotated[bool, typer.Option(help="No progress display.")] = False,
    debug: Debug = False,
) -> None:
    """Train a diffusion prior; checkpoints are written atomically and can be resumed."""
    from nibabel.filebasedimages import ImageFileError

    from invdiff.config import validate_device
    from invdiff.training import cli_train

    before = _stamp(out)
    with user_errors(debug, "use a smaller --batch-size or model (--preset, --channels)"):
        init_file = [Path(init)] if init not in (None, "default") else []
        check_checkpoint_path(out, [*data, *(val_data or ()), *init_file])
        if device != "auto":
            validate_device(device)
        try:
            axis_list = tuple(int(a) for a in axes.split(","))
        except ValueError:
            raise ValueError(f"--axes expects comma-separated integers, got {axes!r}") from None
        channel_list = None
        if channels is not None:
            try:
                channel_list = tuple(int(c) for c in channels.split(","))
            except ValueError:
                raise ValueError(
                    f"--channels expects comma-separated integers, got {channels!r}") from None
        try:
            written = cli_train(
                data, out, preset=preset, val_data=tuple(val_data or ()), steps=steps,
                minutes=minutes, batch_size=batch_size, lr=lr, warmup=warmup, cooldown=cooldown,
                ema_decay=ema_decay, seed=seed, resume=resume, overwrite=overwrite,
                device=device, bf16=bf16,
                compile=compile, image_size=image_size, channels=channel_list,
                dropout=dropout, axes=axis_list, augment=augment,
                augment_preset=augment_preset, init=init,
                reorient=reorient,
                val_every=val_every, ckpt_every=ckpt_every, log_every=log_every,
                progress=not quiet,
            )
        except ImageFileError as exc:  # nibabel's error for a corrupt file is no ValueError
            raise ValueError(f"not a readable NIfTI file ({exc})") from exc
        except KeyboardInterrupt:
            console.print(f"interrupted; the last checkpoint of {out} is intact "
                          "(continue with --resume)")
            raise typer.Exit(EXIT_INTERRUPTED) from None
    if int(os.environ.get("RANK", "0")) == 0:  # one line under torchrun, not one per rank
        if before is not None and _stamp(written) == before:  # resumed at its step budget
            console.print(f"{written} is unchanged")
        else:
            console.print(f"wrote {written}")


def _stamp(path: Path) -> tuple[int, int] | None:
    """Modification time and size of ``path`` (``None`` when it does not exist)."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


#: Names of training data, never of a checkpoint.
DATA_SUFFIXES = (".nii", ".nii.gz", ".png", ".npy", ".npz")


def check_checkpoint_path(out: Path, inputs: list[Path]) -> None:
    """Refuse an ``--out`` that is one of the training inputs or is named like data.

    Training replaces ``out`` (and writes ``out``'s resume and log files beside it), so a slip such
    as ``invdiff train vol.nii.gz --out vol.nii.gz`` would destroy the user's volume.
    """
    target = out.resolve()
    for path in inputs:
        if path.resolve() == target:
            raise ValueError(f"--out {out} is a training input; name the checkpoint e.g. vdm.ckpt")
    if out.name.lower().endswith(DATA_SUFFIXES):
        raise ValueError(f"--out {out} is named like training data ({', '.join(DATA_SUFFIXES)}); "
                         "name the checkpoint e.g. vdm.ckpt")
