"""Non-learned baselines behind the shared solver signature.

All take ``y`` in the prior's range and return real images in that range. They are deterministic:
the result holds one sample (``n_samples`` and ``generator`` are accepted and ignored).

* ``zero_fill``: the real minimum-norm least-squares image ``A^+ y`` (zero-filled k-space with the
  conjugate-symmetric fill of an even crop); ``part="magnitude"`` gives ``|A^H y|`` instead,
  which is only meaningful for data in physical units (in the prior's range the background is
  ``-1`` and the magnitude would fold it to ``+1``).
* ``adjoint``: ``Re(A^H y)``.
* ``bilinear`` / ``bicubic``: image-domain interpolation of the low-resolution image (``kcrop`` or
  ``downsample`` operators only).
* ``cs_wavelet`` / ``cs_tv``: ``argmin_x |A x - y|^2 / 2 + lamda R(x)`` over real images with
  ``R`` the L1 norm of a Daubechies-4 wavelet transform (as ``sigpy.mri.app.L1WaveletRecon``) or
  anisotropic total variation (as ``sigpy.mri.app.TotalVariationRecon``), solved by sigpy through
  the same operator (:mod:`invdiff.solvers.sigpy_adapter`).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import sigpy as sp
import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

from invdiff.operators.fourier import KCrop, ifft2c
from invdiff.operators.image import Downsample
from invdiff.solvers.problem import SolverInputError, describe, real_pinv, setup
from invdiff.solvers.result import SolveResult
from invdiff.solvers.sigpy_adapter import RealImageLinop, stack_real


def _finish(p, x: Tensor, info: dict[str, Any]) -> SolveResult:
    return p.result(x.to(p.dtype), {"steps": 0, "nfe": 0, **info}, None)


def zero_fill(
    operator: Any, y: Tensor, prior: Any, *, part: Literal["real", "magnitude"] = "real", **_: Any
) -> SolveResult:
    """Zero-filled reconstruction ``A^+ y`` over real images (or ``|A^H y|``, see module)."""
    p = setup("zero-fill", operator, y, prior, steps=None, n_samples=1)
    if part == "real":
        x = real_pinv(operator, "zero-fill", alternative="adjoint")(p.y)
    elif part == "magnitude":
        x = operator.adjoint(p.y).abs()
    else:
        raise SolverInputError(f"zero-fill: part must be 'real' or 'magnitude', got {part!r}")
    return _finish(p, x, {"part": part})


def adjoint(operator: Any, y: Tensor, prior: Any, **_: Any) -> SolveResult:
    """``Re(A^H y)``."""
    p = setup("adjoint", operator, y, prior, steps=None, n_samples=1)
    x = operator.adjoint(p.y)
    return _finish(p, x.real if x.is_complex() else x, {})


def low_resolution(
    operator: Any, y: Tensor
) -> tuple[Tensor, tuple[float, float], tuple[float, float]]:
    """The low-resolution image behind ``y`` and where its pixels sit on the full grid.

    ``kcrop`` (``A = C F``, orthonormal): ``F_n^{-1} y`` scaled by ``sqrt(n m / (H W))`` so that
    intensities are preserved (a constant ``c`` has DC ``c sqrt(H W)`` on the full grid and
    ``F_n^{-1}`` of that DC alone is ``c sqrt(H W / (n m))``); the real part is kept. Pixel ``j``
    lies at full-grid coordinate ``H // 2 + (j - n // 2) H / n`` (both grids centred at their
    ``// 2`` index). ``downsample:K``: ``y`` itself, block ``j`` centred at ``j K + (K - 1) / 2``.

    Returns:
        ``(image (..., n, m), (offset_h, offset_w), (spacing_h, spacing_w))`` with full-grid
        coordinate ``offset + j * spacing``.
    """
    if isinstance(operator, KCrop):
        (h, w), (n, m) = operator.ishape, operator.oshape
        img = ifft2c(y).real * float(np.sqrt(n * m / (h * w)))
        spacing = (h / n, w / m)
        offset = (h // 2 - (n // 2) * spacing[0], w // 2 - (m // 2) * spacing[1])
        return img, offset, spacing
    if isinstance(operator, Downsample):
        k = operator.factor
        return y.real if y.is_complex() else y, ((k - 1) / 2, (k - 1) / 2), (float(k), float(k))
    raise SolverInputError(
        f"image-domain interpolation needs a kcrop or downsample operator, got {describe(operator)}"
    )


def interpolate(
    operator: Any, y: Tensor, prior: Any, *, mode: Literal["bilinear", "bicubic"], **_: Any
) -> SolveResult:
    """Resize the low-resolution image to the full grid, sampling at the true pixel positions.

    ``kcrop`` images are periodic (the DFT's), so they are padded circularly; ``downsample``
    images are padded by edge replication.
    """
    p = setup(mode, operator, y, prior, steps=None, n_samples=1)
    img, offset, spacing = low_resolution(operator, p.y)
    pad = 2
    lead = img.shape[:-2]
    flat = img.reshape(-1, 1, *img.shape[-2:])
    padmode = "circular" if isinstance(operator, KCrop) else "replicate"
    flat = F.pad(flat, (pad, pad, pad, pad), mode=padmode)
    h, w = operator.ishape
    n_p, m_p = flat.shape[-2:]
    # low-res index of each full-grid pixel, then align_corners=True normalisation
    u = (torch.arange(h, dtype=flat.dtype) - offset[0]) / spacing[0] + pad
    v = (torch.arange(w, dtype=flat.dtype) - offset[1]) / spacing[1] + pad
    gy = 2 * u / (n_p - 1) - 1
    gx = 2 * v / (m_p - 1) - 1
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)  # (h, w, 2) as (x, y)
    grid = grid.to(flat.device).expand(flat.shape[0], h, w, 2)
    out = F.grid_sample(flat, grid, mode=mode, padding_mode="border", align_corners=True)
    return _finish(p, out.reshape(*lead, h, w), {"mode": mode})


def bilinear(operator: Any, y: Tensor, prior: Any, **_: Any) -> SolveResult:
    """Bilinear interpolation of the low-resolution image (see :func:`interpolate`)."""
    return interpolate(operator, y, prior, mode="bilinear")


def bicubic(operator: Any, y: Tensor, prior: Any, **_: Any) -> SolveResult:
    """Bicubic (Keys, a = -0.75) interpolation of the low-resolution image."""
    return interpolate(operator, y, prior, mode="bicubic")


def _sigpy_recon(
    name: str,
    operator: Any,
    y: Tensor,
    prior: Any,
    lamda: float,
    max_iter: int,
    regulariser: Literal["wavelet", "tv"],
    wave_name: str = "db4",
) -> SolveResult:
    p = setup(name, operator, y, prior, steps=None, n_samples=1)
    if not lamda >= 0:
        raise SolverInputError(f"{name}: lamda must be >= 0, got {lamda}")
    a = RealImageLinop(operator)
    ish = list(operator.ishape)
    lead = p.y.shape[: p.y.ndim - len(operator.oshape)]
    ys = stack_real(p.y.detach().cpu().to(torch.complex128))
    ys = ys.reshape(-1, *operator.oshape, 2).numpy()
    out = []
    for yi in ys:
        x0 = np.zeros(ish, dtype=np.float64)
        if regulariser == "wavelet":
            w = sp.linop.Wavelet(ish, wave_name=wave_name)
            proxg = sp.prox.UnitaryTransform(sp.prox.L1Reg(w.oshape, lamda), w)
            app = sp.app.LinearLeastSquares(
                a, yi, x=x0, proxg=proxg, max_iter=max_iter, show_pbar=False
            )
        else:
            g = sp.linop.FiniteDifference(ish)
            proxg = sp.prox.L1Reg(g.oshape, lamda)
            app = sp.app.LinearLeastSquares(
                a, yi, x=x0, proxg=proxg, G=g, max_iter=max_iter, show_pbar=False
            )
        out.append(np.real(app.run()))
    x = torch.from_numpy(np.stack(out)).reshape(*lead, *operator.ishape).to(p.device)
    return _finish(p, x, {"lamda": lamda, "max_iter": max_iter})


def cs_wavelet(
    operator: Any,
    y: Tensor,
    prior: Any,
    *,
    lamda: float = 0.005,
    max_iter: int = 100,
    wave_name: str = "db4",
    **_: Any,
) -> SolveResult:
    """L1-wavelet compressed sensing (Lustig et al. 2007), sigpy's accelerated proximal gradient."""
    return _sigpy_recon("cs-wavelet", operator, y, prior, lamda, max_iter, "wavelet", wave_name)


def cs_tv(
    operator: Any, y: Tensor, prior: Any, *, lamda: float = 0.005, max_iter: int = 100, **_: Any
) -> SolveResult:
    """Total-variation reconstruction (Rudin et al. 1992), sigpy's primal-dual hybrid gradient."""
    return _sigpy_recon("cs-tv", operator, y, prior, lamda, max_iter, "tv")
