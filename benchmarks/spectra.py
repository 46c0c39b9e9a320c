#!/usr/bin/env python3
"""Radial power spectra: training slices as augmented, prior samples, the validation subject.

A prior for super-resolution must draw images as sharp as its data. This prints, per ring of
k-space radius (in cycles per 128 pixels), the mean power per pixel of

* the shipped training slices, raw and after each augmentation setting (``legacy`` bilinear vs
  the band-limited ``bicubic-2x`` resampling; :mod:`invdiff.training.augment`),
* unconditional samples of each ``--prior`` (ancestral, ``--steps``, fixed seed),
* the held-out validation slices,

all in the prior's range [-1, 1] (``x + 1`` transformed, so the background adds no DC).

    python benchmarks/spectra.py --prior default --prior runs/x/vdm.ckpt --samples 8
"""

from __future__ import annotations

import argparse
from importlib import resources

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from invdiff.priors.registry import resolve_prior
from invdiff.solvers.unconditional import sample_prior
from invdiff.training import AugmentConfig, apply_augment, sample_augment

RINGS = (0, 8, 16, 24, 32, 40, 48, 56, 64, 91)
BANDS = list(zip(RINGS[:-1], RINGS[1:], strict=True))


def ring_power(x: np.ndarray) -> list[float]:
    """Mean |FFT|^2 per pixel (orthonormal) of ``(N, H, W)`` images in each ring of ``RINGS``."""
    n = x.shape[-1]
    k = np.fft.fftshift(np.fft.fft2(x.astype(np.float64) + 1.0, norm="ortho"), axes=(-2, -1))
    power = (np.abs(k) ** 2).reshape(-1, *x.shape[-2:]).mean(0)
    f = np.arange(n) - n // 2
    r = np.hypot(f[:, None], f[None, :]) * 128 / n
    return [float(power[(r >= a) & (r < b)].mean()) for a, b in BANDS]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prior", action="append", default=[])
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--every", type=int, default=4, help="use every N-th training slice")
    args = ap.parse_args()
    with resources.as_file(resources.files("invdiff") / "data" / "brain128.npz") as p:
        data = np.load(p)
        train, val = data["train"][:: args.every].astype(np.float32), data["val"]
    rows = [("training slices, not augmented", ring_power(train))]
    x = torch.from_numpy(train)[:, None]
    for preset in ("legacy", "light", "strong"):
        cfg = AugmentConfig.preset(preset)
        params = sample_augment(len(x), cfg, torch.Generator().manual_seed(0))
        y = apply_augment(x, params, cfg.interpolation)[:, 0].numpy()
        rows.append((f"training slices, {preset} ({cfg.interpolation})", ring_power(y)))
    for name in args.prior:
        prior = resolve_prior(name, "cpu")
        z = sample_prior(prior, args.samples, steps=args.steps,
                         generator=torch.Generator().manual_seed(0))
        rows.append((f"samples of {name} ({args.steps} steps)", ring_power(z[:, 0].numpy())))
    rows.append(("validation subject (held out)", ring_power(val.astype(np.float32))))
    table = Table(title="mean power per pixel by k-space radius (cycles / 128 px)")
    table.add_column("images")
    for a, b in BANDS:
        table.add_column(f"{a}-{b}", justify="right")
    for name, powers in rows:
        table.add_row(name, *(f"{v:.3g}" for v in powers))
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
