"""Image-quality metrics: PSNR, SSIM and NMSE (scikit-image), overall and per slice.

Definitions, for a reference ``r`` and a reconstruction ``x`` on the voxels of a mask ``M``:

* ``data_range = max(r) - min(r)`` over the whole reference volume (also for per-slice values, so
  slices are comparable), ``PSNR = 10 log10(data_range^2 / mean_M (r - x)^2)``;
* ``NMSE = ||r - x||^2 / ||r||^2`` on ``M`` (the square of scikit-image's Euclidean NRMSE);
* ``SSIM``: scikit-image's 2D SSIM map (7x7 window, Wang et al. 2004) computed per slice and
  averaged over ``M`` minus the 3-pixel border scikit-image leaves out (without a mask this is
  exactly scikit-image's mean SSIM); the overall SSIM of a volume is the mean over slices with
  mask voxels.

``mask="auto"`` keeps voxels where the reference exceeds ``AUTO_FRACTION`` of its 99.5th
percentile (the robust scale of :mod:`invdiff.intensity`), i.e. excludes the background.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from skimage.metrics import mean_squared_error, structural_similarity

AUTO_FRACTION = 0.1


@dataclass(frozen=True)
class SliceMetrics:
    """Metrics of one slice (``None`` where the slice has no mask voxel)."""

    index: int
    psnr: float | None
    ssim: float | None
    nmse: float | None


@dataclass(frozen=True)
class Metrics:
    """Overall metrics and the per-slice table (one entry for a 2D image)."""

    psnr: float
    ssim: float
    nmse: float
    n_voxels: int
    axis: int | None
    slices: list[SliceMetrics] = field(default_factory=list)

    def to_dict(self) -> dict:
        return _jsonable(asdict(self))


def auto_mask(reference: np.ndarray) -> np.ndarray:
    """Foreground mask: ``reference > AUTO_FRACTION * quantile(|reference|, 0.995)``."""
    threshold = AUTO_FRACTION * float(np.quantile(np.abs(reference), 0.995))
    return reference > threshold


def evaluate(
    reference: np.ndarray,
    recon: np.ndarray,
    mask: np.ndarray | None = None,
    axis: int | None = None,
) -> Metrics:
    """PSNR, SSIM and NMSE of ``recon`` against ``reference`` (2D or 3D, same shape).

    Args:
        reference, recon: real arrays of equal shape, 2D ``(H, W)`` or 3D.
        mask: boolean array of the same shape, or ``None`` for all voxels.
        axis: slice axis of a 3D volume (default 2).
    """
    reference = np.asarray(reference, dtype=np.float64)
    recon = np.asarray(recon, dtype=np.float64)
    if reference.shape != recon.shape:
        raise ValueError(
            f"reference shape {reference.shape} and reconstruction shape {recon.shape} differ"
        )
    if reference.ndim not in (2, 3):
        raise ValueError(f"expected 2D or 3D images, got shape {reference.shape}")
    if mask is None:
        mask = np.ones(reference.shape, dtype=bool)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != reference.shape:
        raise ValueError(f"mask shape {mask.shape} does not match image shape {reference.shape}")
    if not mask.any():
        raise ValueError("the mask selects no voxel (it is all zero)")
    data_range = float(reference.max() - reference.min())
    if not data_range > 0:
        raise ValueError("the reference is constant: PSNR and SSIM are undefined")
    if reference.ndim == 3 and axis is not None and not -3 <= axis <= 2:
        raise ValueError(f"slice axis must be 0, 1 or 2 for a 3D volume, got {axis}")
    ax = None if reference.ndim == 2 else (2 if axis is None else axis % 3)
    ref_s, rec_s, mask_s = (_slices(a, ax) for a in (reference, recon, mask))
    ssim_maps = [
        structural_similarity(r, x, data_range=data_range, full=True, win_size=_win(r.shape))[1]
        for r, x in zip(ref_s, rec_s, strict=True)
    ]
    per_slice = [
        _slice_metrics(i, r, x, m, s, data_range)
        for i, (r, x, m, s) in enumerate(zip(ref_s, rec_s, mask_s, ssim_maps, strict=True))
    ]
    ssims = [s.ssim for s in per_slice if s.ssim is not None]
    return Metrics(
        psnr=_psnr(reference[mask], recon[mask], data_range),
        ssim=float(np.mean(ssims)),
        nmse=_nmse(reference[mask], recon[mask]),
        n_voxels=int(mask.sum()),
        axis=ax,
        slices=per_slice,
    )


def _slice_metrics(
    i: int, r: np.ndarray, x: np.ndarray, m: np.ndarray, ssim_map: np.ndarray, data_range: float
) -> SliceMetrics:
    if not m.any():
        return SliceMetrics(i, None, None, None)
    pad = (_win(r.shape) - 1) // 2
    inner = np.zeros_like(m)
    inner[pad:m.shape[0] - pad, pad:m.shape[1] - pad] = True
    s = m & inner if (m & inner).any() else m
    return SliceMetrics(
        index=i,
        psnr=_psnr(r[m], x[m], data_range),
        ssim=float(ssim_map[s].mean()),
        nmse=_nmse(r[m], x[m]),
    )


def _psnr(r: np.ndarray, x: np.ndarray, data_range: float) -> float:
    mse = mean_squared_error(r, x)
    return math.inf if mse == 0 else float(10 * np.log10(data_range**2 / mse))


def _nmse(r: np.ndarray, x: np.ndarray) -> float:
    denom = float(np.sum(r**2))
    return math.nan if denom == 0 else float(np.sum((r - x) ** 2) / denom)


def _slices(a: np.ndarray, axis: int | None) -> np.ndarray:
    return a[None] if axis is None else np.moveaxis(a, axis, 0)


def _win(shape: tuple[int, ...]) -> int:
    """scikit-image's default 7x7 window, shrunk (odd) for slices smaller than 7 pixels."""
    side = min(7, *shape)
    return side if side % 2 == 1 else side - 1


def _jsonable(obj):
    """Replace non-finite floats by strings JSON can carry (``"inf"``, ``"nan"``)."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj
