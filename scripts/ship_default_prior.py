#!/usr/bin/env python3
"""Install a trained prior as the package's default prior, with its training log and curve.

    python scripts/ship_default_prior.py runs/default/vdm.ckpt

Copies the EMA prior to ``invdiff/priors/weights/default.safetensors`` (after checking that it
loads and is a 1x128x128 prior), the training log ``<stem>.log.jsonl`` to
``docs/default-prior/train-log.jsonl`` and draws ``docs/default-prior/training-curve.png``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from invdiff.figures import training_curve_figure
from invdiff.priors.checkpoint import load_prior
from invdiff.training import log_path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    args = ap.parse_args()
    prior = load_prior(args.checkpoint)
    if tuple(prior.image_shape) != (1, 128, 128):
        raise SystemExit(f"expected a 1x128x128 prior, got {prior.image_shape}")
    weights = ROOT / "invdiff/priors/weights/default.safetensors"
    weights.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.checkpoint, weights)
    docs = ROOT / "docs/default-prior"
    docs.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(log_path(args.checkpoint), docs / "train-log.jsonl")
    rows = [json.loads(line) for line in open(docs / "train-log.jsonl") if line.strip()]
    training_curve_figure(rows, docs / "training-curve.png",
                          title="default prior: variational bound during training")
    print(f"installed {weights} ({weights.stat().st_size / 2**20:.1f} MiB) and {docs}")


if __name__ == "__main__":
    main()
