"""One rank of the DDP test (run by test_distributed.py with RANK/WORLD_SIZE set), or the
single-process reference when WORLD_SIZE is unset. Usage: ddp_worker.py OUT_DIR STEPS [resume]
or ddp_worker.py OUT_DIR STEPS timestop (only rank 1 has a time budget, already spent)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
from tiny_model import TinyConfig, TinyModel, export_state, make_images  # noqa: E402

from invdiff.training import AugmentConfig, DataConfig, TrainConfig, Trainer  # noqa: E402


def config(out: Path, steps: int = 4, resume: bool = False, **kw) -> TrainConfig:
    return TrainConfig(
        model=TinyConfig(deterministic=True), data=DataConfig(paths=("unused.npz",), image_size=16),
        output=str(out / "vdm.ckpt"), batch_size=8, lr=1e-2, warmup_steps=2, ema_decay=0.9,
        max_steps=steps, resume=resume, val_every=2, val_size=6, ckpt_every=2, log_every=1,
        device="cpu", progress=False, augment=AugmentConfig(max_rotation_deg=10.0, max_scale=0.1),
        **kw,
    )


def main(out: Path, steps: int = 4, resume: bool = False) -> None:
    torch.manual_seed(0)
    model = TinyModel(TinyConfig(deterministic=True))
    trainer = Trainer(config(out, steps, resume), model, export_state, images=make_images())
    rank = trainer.info.rank
    trainer.run()
    tensors = {f"grad.{n}": p.grad for n, p in trainer.model.named_parameters()}
    tensors.update({f"param.{n}": p.detach() for n, p in trainer.model.named_parameters()})
    tensors.update({f"ema.{n}": p.detach() for n, p in trainer.ema.named_parameters()})
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / f"rank{rank}.safetensors"))


def time_stop(out: Path, steps: int) -> None:
    """Rank 1 alone is out of time after its first step: every rank must stop there, as a time
    stop (exit 0), not as an interrupt."""
    rank = int(os.environ["RANK"])
    cfg = config(out, steps, max_minutes=1e-9 if rank == 1 else None)
    trainer = Trainer(cfg, TinyModel(TinyConfig(deterministic=True)), export_state,
                      images=make_images())
    trainer.run()
    print(f"rank {rank} stopped at step {trainer.step_count}", flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[3:] == ["timestop"]:
        time_stop(Path(sys.argv[1]), int(sys.argv[2]))
    else:
        main(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:] == ["resume"])
    os._exit(0)
