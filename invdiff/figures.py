"""Figures in the style of the seed abstract (Jiang, Gao, Sun, ISMRM 2023, Figs. 2-4).

All functions take numpy arrays of shape ``(S, H, W)`` (S slices) in one common intensity range
and write a PNG; matplotlib's non-interactive Agg backend is used so this works headless.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np


class Row(NamedTuple):
    """One row of a figure: a label, a stack ``(S, H, W)`` and its display window."""

    label: str
    stack: np.ndarray
    cmap: str
    vmin: float
    vmax: float


def _window(reference: np.ndarray) -> tuple[float, float]:
    return float(np.percentile(reference, 0.5)), float(np.percentile(reference, 99.8))


def comparison_figure(
    methods: Mapping[str, np.ndarray],
    reference: np.ndarray,
    path: str | Path,
    title: str = "",
    error_gain: float = 5.0,
) -> Path:
    """Rows: reference, then each method and its absolute error x ``error_gain``; columns: slices.

    Like the seed's Figs. 2 and 3, plus error maps.
    """
    lo, hi = _window(reference)
    rows = [Row("reference", reference, "gray", lo, hi)]
    for name, img in methods.items():
        rows.append(Row(name, img, "gray", lo, hi))
        rows.append(Row(f"|error| x{error_gain:g}", np.abs(img - reference) * error_gain,
                        "inferno", 0.0, hi - lo))
    return _grid(rows, path, title)


def lambda_sweep_figure(
    sweep: Mapping[float, np.ndarray], reference: np.ndarray, path: str | Path, title: str = ""
) -> Path:
    """Rows: lambda values (one seed for all), then the reference; columns: slices (seed Fig. 4)."""
    lo, hi = _window(reference)
    rows = [Row(f"lambda={lam:g}", sweep[lam], "gray", lo, hi) for lam in sorted(sweep)]
    rows.append(Row("reference", reference, "gray", lo, hi))
    return _grid(rows, path, title)


def uncertainty_figure(
    mean: np.ndarray,
    std: np.ndarray,
    reference: np.ndarray,
    path: str | Path,
    samples: Sequence[np.ndarray] = (),
    title: str = "",
) -> Path:
    """Rows: reference, posterior samples, posterior mean, |mean - reference| and pixelwise std."""
    lo, hi = _window(reference)
    err = np.abs(mean - reference)
    top = float(max(np.percentile(std, 99.5), np.percentile(err, 99.5), 1e-8))
    rows = [Row("reference", reference, "gray", lo, hi)]
    rows += [Row(f"sample {i + 1}", s, "gray", lo, hi) for i, s in enumerate(samples)]
    rows += [Row("mean", mean, "gray", lo, hi), Row("|mean - ref|", err, "magma", 0.0, top),
             Row("std", std, "magma", 0.0, top)]
    return _grid(rows, path, title)


def training_curve_figure(log: Sequence[Mapping[str, float]], path: str | Path,
                          title: str = "") -> Path:
    """Training bits/dim (per logged step) and validation bits/dim of an ``invdiff train`` log.

    ``log`` holds the rows of ``<prior>.log.jsonl``: rows with ``bpd`` and rows with ``val_bpd``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["step"], r["bpd"]) for r in log if "bpd" in r]
    val = [(r["step"], r["val_bpd"]) for r in log if "val_bpd" in r]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if train:
        ax.plot(*zip(*train, strict=True), lw=0.8, label="training bound (batch)")
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation bound (held-out subject)")
    ax.set_xlabel("step")
    ax.set_ylabel("bits/dim")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    lines, labels = ax.get_legend_handles_labels()
    lr = [(r["step"], r["lr"]) for r in log if "lr" in r]
    if lr:  # warm-up and cooldown on a second axis
        ax_lr = ax.twinx()
        lines += ax_lr.plot(*zip(*lr, strict=True), color="0.5", lw=0.8, ls="--")
        labels.append("learning rate (right)")
        ax_lr.set_ylabel("learning rate")
        ax_lr.set_ylim(0, 1.05 * max(v for _, v in lr))
    ax.legend(lines, labels, fontsize=8, loc="center right")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def _grid(rows: Sequence[Row], path: str | Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_cols = rows[0].stack.shape[0]
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(1.8 * n_cols, 1.8 * len(rows)),
                             squeeze=False)
    for r, row in enumerate(rows):
        for s in range(n_cols):
            ax = axes[r, s]
            ax.imshow(row.stack[s], cmap=row.cmap, vmin=row.vmin, vmax=row.vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if s == 0:
                ax.set_ylabel(row.label, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
