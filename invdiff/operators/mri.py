"""MRI operators: Cartesian undersampling ``kmask`` and multi-coil sensitivities ``sense``.

- ``kmask``: ``A = M F`` with ``F`` the centred orthonormal FFT and ``M`` a 0/1 diagonal mask on the
  full ``(H, W)`` k-space grid; the output keeps the grid (zeros where not sampled), as
  ``sigpy.linop.Multiply(mask) * sigpy.linop.FFT``. ``M`` is a projection and ``F`` unitary, so
  ``A^+ = A^H = F^H M``. Phase-encode lines are rows (index along ``H``, axis ``-2``); each
  sampled row is fully sampled along ``W`` (the readout).
- ``sense``: ``S x = (S_1 x, ..., S_C x)`` multiplies the image ``(..., H, W)`` by ``C`` coil maps,
  giving ``(..., C, H, W)`` (coil axis just before the image axes, Pruessmann et al., SENSE, MRM
  1999). ``S^H S = diag(sum_c |S_c|^2)``, hence ``S^+ y = (sum_c conj(S_c) y_c) / sum_c |S_c|^2``
  (zero where no coil sees the pixel). ``fft``/``kcrop``/``kmask`` then act per coil, e.g.
  ``from_spec("sense:birdcage=8|kmask:accel=4", (H, W))``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from invdiff.operators.base import LinearOperator, Shape, check_shape, complex_dtype
from invdiff.operators.fourier import FFT, fft2c, hermitian_fill_real_pinv, ifft2c
from invdiff.operators.spec import parse_options


class _DeviceCache:
    """A constant tensor, copied once per ``(device, dtype)`` it is used with."""

    def __init__(self, value: Tensor) -> None:
        self.value = value
        self._copies: dict[tuple[torch.device, torch.dtype], Tensor] = {}

    def on(self, device: torch.device, dtype: torch.dtype) -> Tensor:
        key = (device, dtype)
        if key not in self._copies:
            self._copies[key] = self.value.to(device=device, dtype=dtype)
        return self._copies[key]


# --------------------------------------------------------------------------------------------
# kmask
# --------------------------------------------------------------------------------------------


class KMask(LinearOperator):
    """``A = M F``: sampled entries of the centred k-space of ``(..., H, W)`` images.

    Args:
        mask: boolean ``(H, W)`` sampling pattern on the centred k-space grid.
    """

    has_pinv = True
    has_pinv_real = True

    def __init__(self, mask: Tensor) -> None:
        if not isinstance(mask, Tensor) or mask.ndim != 2 or mask.dtype != torch.bool:
            raise TypeError(f"kmask needs a 2D bool tensor, got {getattr(mask, 'dtype', mask)!r}"
                            f" of shape {tuple(getattr(mask, 'shape', ()))}")
        super().__init__(tuple(mask.shape), tuple(mask.shape))
        self.mask = mask.cpu()
        self._weights = _DeviceCache(self.mask)
        self._measured = _DeviceCache(self.mask)

    def weights(self, like: Tensor) -> Tensor:
        """The mask as 0/1 values of ``like``'s real dtype on ``like``'s device."""
        return self._weights.on(like.device, like.real.dtype)

    def _apply(self, x: Tensor) -> Tensor:
        z = fft2c(x)
        return z * self.weights(z)

    def _adjoint_operator(self) -> LinearOperator:
        return _KMaskAdjoint(self)

    def _normal_operator(self) -> LinearOperator:
        return _KMaskAdjoint(self) @ self

    def _pinv(self, y: Tensor) -> Tensor:
        return self.adjoint(y)

    def pinv_real(self, y: Tensor, maxiter: int = 100) -> Tensor:
        """Real least-squares inverse: mask, fill unpaired mirrors conjugately, ``Re F^H``."""
        self._check_input(y, self.oshape, "measurement")
        y = y if y.is_complex() else y.to(complex_dtype(y.dtype))
        measured = self._measured.on(y.device, torch.bool)
        return hermitian_fill_real_pinv(y * self.weights(y), measured)

    def selection_unitary(self) -> tuple[Tensor, LinearOperator]:
        return self.mask.clone(), FFT(self.ishape)

    def __repr__(self) -> str:
        rate = float(self.mask.float().mean())
        return f"KMask(shape={self.ishape}, sampled={rate:.3f})"


class _KMaskAdjoint(LinearOperator):
    """``A^H = F^H M`` for a :class:`KMask` ``A``."""

    has_pinv = True

    def __init__(self, kmask: KMask) -> None:
        super().__init__(kmask.oshape, kmask.ishape)
        self.kmask = kmask

    def _apply(self, y: Tensor) -> Tensor:
        y = y if y.is_complex() else y.to(complex_dtype(y.dtype))
        return ifft2c(y * self.kmask.weights(y))

    def _adjoint_operator(self) -> LinearOperator:
        return self.kmask

    def _pinv(self, x: Tensor) -> Tensor:
        return self.kmask(x)  # (A^H)^+ = (A^+)^H = A since A^+ = A^H

    def __repr__(self) -> str:
        return f"KMaskAdjoint({self.kmask!r})"


def cartesian_mask(
    shape: Shape, accel: float, acs: int, pattern: str = "random",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Boolean ``(H, W)`` mask of fully sampled rows (phase-encode lines along ``H``).

    The ``acs`` central rows (start ``H // 2 - acs // 2``) are always sampled. ``"uniform"`` adds
    every ``accel``-th row counted from the centre row ``H // 2`` (rounded positions); ``"random"``
    adds rows drawn without replacement until ``max(round(H / accel), acs)`` rows are sampled.

    Args:
        shape: ``(H, W)``.
        accel: acceleration ``R >= 1``.
        acs: number of fully sampled central rows, ``0 <= acs <= H``.
        pattern: ``"random"`` or ``"uniform"``.
        generator: random source for ``"random"``.
    """
    h, w = check_shape(shape, "mask shape")
    if not (math.isfinite(accel) and accel >= 1):
        raise ValueError(f"kmask: accel must be a finite number >= 1, got {accel}")
    if not 0 <= acs <= h:
        raise ValueError(f"kmask: acs must be in [0, {h}] (image height), got {acs}")
    rows = torch.zeros(h, dtype=torch.bool)
    start = h // 2 - acs // 2
    rows[start : start + acs] = True
    if pattern == "uniform":
        reach = int(np.ceil(h / accel))
        pos = h // 2 + np.round(np.arange(-reach, reach + 1) * accel).astype(int)
        rows[torch.from_numpy(pos[(pos >= 0) & (pos < h)])] = True
    elif pattern == "random":
        extra = max(round(h / accel) - acs, 0)
        free = torch.nonzero(~rows).flatten()
        order = torch.randperm(free.numel(), generator=generator)
        rows[free[order[:extra]]] = True
    else:
        raise ValueError(f"kmask: pattern must be 'random' or 'uniform', got {pattern!r}")
    return rows[:, None].expand(h, w).clone()


_NPY_MAGIC = b"\x93NUMPY"


def load_npy(path: str | Path, what: str) -> np.ndarray:
    """A numeric array from a ``.npy`` file, never unpickled; one-line errors naming the file.

    Args:
        path: the file.
        what: what the file holds, for error messages (e.g. ``"kmask file"``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found")
    with path.open("rb") as f:
        magic = f.read(len(_NPY_MAGIC))
    if magic != _NPY_MAGIC:
        raise ValueError(f"{what} {path} is not a .npy file (write it with numpy.save)")
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as err:  # object arrays need pickle; truncated files
        raise ValueError(f"{what} {path}: cannot read a numeric array "
                         f"({str(err).splitlines()[0]})") from None
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"{what} {path}: expected a numeric array, got dtype {arr.dtype}")
    return arr


def load_mask(path: str | Path, shape: Shape) -> Tensor:
    """Load a 0/1 mask from ``.npy``: shape ``(H, W)``, or ``(H,)`` for whole rows."""
    arr = load_npy(path, "kmask file")
    h, w = shape
    if arr.shape == (h,):
        arr = np.broadcast_to(arr[:, None], (h, w))
    if arr.shape != (h, w):
        raise ValueError(f"kmask file {path}: expected shape {(h, w)} (or {(h,)}), "
                         f"got {arr.shape}")
    if not np.isin(arr, (0, 1)).all():
        raise ValueError(f"kmask file {path}: values must be 0/1 or boolean")
    return torch.from_numpy(np.ascontiguousarray(arr).astype(bool))


def kmask_from_spec(args: str, image_shape: tuple[int, int]) -> LinearOperator:
    """kmask:accel=R,acs=N,seed=S,pattern=random|uniform or kmask:file=mask.npy: masked FFT."""
    opts = parse_options(args, "kmask", {"accel": float, "acs": int, "seed": int,
                                         "pattern": str, "file": str})
    if "file" in opts:
        if len(opts) > 1:
            raise ValueError(f"kmask: 'file' excludes other options, got {sorted(opts)}")
        return KMask(load_mask(str(opts["file"]), image_shape))
    if "accel" not in opts:
        raise ValueError(f"kmask: expected 'accel=R' (or 'file=mask.npy'), got {args!r}")
    acs = int(opts.get("acs", round(0.08 * image_shape[0])))
    gen = torch.Generator().manual_seed(int(opts.get("seed", 0)))
    mask = cartesian_mask(image_shape, float(opts["accel"]), acs,
                          str(opts.get("pattern", "random")), gen)
    return KMask(mask)


# --------------------------------------------------------------------------------------------
# sense
# --------------------------------------------------------------------------------------------


class Sense(LinearOperator):
    """``S``: coil-weighted copies ``(..., H, W) -> (..., C, H, W)`` of the image.

    Args:
        maps: complex coil sensitivities ``(C, H, W)``.
    """

    has_pinv = True
    has_pinv_real = True

    def __init__(self, maps: Tensor) -> None:
        if not isinstance(maps, Tensor) or maps.ndim != 3:
            raise ValueError(f"sense maps must be a (C, H, W) tensor, got shape "
                             f"{tuple(getattr(maps, 'shape', ()))}")
        maps = maps if maps.is_complex() else maps.to(complex_dtype(maps.dtype))
        super().__init__(tuple(maps.shape[1:]), tuple(maps.shape))
        self.maps = maps.detach().cpu().to(torch.complex128)
        self._maps = _DeviceCache(self.maps)
        self._power = _DeviceCache(self.maps.abs().square().sum(0))
        power = self._power.value
        self._inv_power = _DeviceCache(torch.where(power > 0, 1 / power, 0.0))

    def coil_maps(self, like: Tensor) -> Tensor:
        """The maps in ``like``'s precision (complex) and device."""
        return self._maps.on(like.device, complex_dtype(like.real.dtype))

    def inverse_power(self, like: Tensor) -> Tensor:
        """``1 / sum_c |S_c|^2`` (0 where no coil sees the pixel) in ``like``'s real dtype."""
        return self._inv_power.on(like.device, like.real.dtype)

    def _apply(self, x: Tensor) -> Tensor:
        return x.unsqueeze(-3) * self.coil_maps(x)

    def _adjoint_operator(self) -> LinearOperator:
        return _SenseAdjoint(self)

    def _normal_operator(self) -> LinearOperator:
        return _Diagonal(self._power, self.ishape)

    def _pinv(self, y: Tensor) -> Tensor:
        return self.adjoint(y) * self.inverse_power(y)

    def pinv_real(self, y: Tensor, maxiter: int = 100) -> Tensor:
        """``Re(S^H y) / sum_c |S_c|^2``: ``Re(S^H S)`` is the same diagonal."""
        self._check_input(y, self.oshape, "measurement")
        return self.adjoint(y).real * self.inverse_power(y)

    def __repr__(self) -> str:
        return f"Sense(coils={self.oshape[0]}, image={self.ishape})"


class _SenseAdjoint(LinearOperator):
    """``S^H y = sum_c conj(S_c) y_c``."""

    has_pinv = True

    def __init__(self, sense: Sense) -> None:
        super().__init__(sense.oshape, sense.ishape)
        self.sense = sense

    def _apply(self, y: Tensor) -> Tensor:
        return (self.sense.coil_maps(y).conj() * y).sum(dim=-3)

    def _adjoint_operator(self) -> LinearOperator:
        return self.sense

    def _pinv(self, x: Tensor) -> Tensor:
        return self.sense(x * self.sense.inverse_power(x))  # (S^+)^H

    def __repr__(self) -> str:
        return f"SenseAdjoint({self.sense!r})"


class _Diagonal(LinearOperator):
    """Pixel-wise multiplication by a fixed real non-negative image (a normal operator)."""

    def __init__(self, weights: _DeviceCache, shape: Shape) -> None:
        super().__init__(shape, shape)
        self.weights = weights

    def _apply(self, x: Tensor) -> Tensor:
        return x * self.weights.on(x.device, x.real.dtype)

    def _adjoint_operator(self) -> LinearOperator:
        return _Diagonal(self.weights, self.ishape)


def birdcage_maps(ncoil: int, shape: Shape) -> Tensor:
    """Simulated birdcage coil maps ``(ncoil, H, W)`` from ``sigpy.mri.birdcage_maps``."""
    import sigpy.mri

    if int(ncoil) != ncoil or ncoil < 1:
        raise ValueError(f"sense: birdcage coil count must be a positive integer, got {ncoil}")
    maps = sigpy.mri.birdcage_maps((int(ncoil), *shape), dtype=np.complex128)
    return torch.from_numpy(np.ascontiguousarray(maps))


def espirit_maps(
    kspace: Tensor | np.ndarray, calib: int = 24, thresh: float = 0.02, kernel: int = 6,
    crop: float = 0.95,
) -> Tensor:
    """ESPIRiT coil maps ``(C, H, W)`` from centred multi-coil k-space ``(C, H, W)``.

    Uses ``sigpy.mri.app.EspiritCalib`` (Uecker et al., ESPIRiT, MRM 2014) with a ``calib`` wide
    calibration region, eigenvalue threshold ``thresh``, ``kernel`` kernel width and ``crop``
    eigenvalue cut-off (maps are zero where the eigenvalue is below ``crop``).
    """
    import sigpy.mri

    ksp = kspace.detach().cpu().numpy() if isinstance(kspace, Tensor) else np.asarray(kspace)
    if ksp.ndim != 3:
        raise ValueError(f"espirit: expected multi-coil k-space (C, H, W), got shape {ksp.shape}")
    if calib > min(ksp.shape[1:]):
        raise ValueError(f"espirit: calib {calib} larger than the k-space {ksp.shape[1:]}")
    app = sigpy.mri.app.EspiritCalib(ksp.astype(np.complex128), calib_width=calib, thresh=thresh,
                                     kernel_width=kernel, crop=crop, show_pbar=False)
    return torch.from_numpy(np.ascontiguousarray(app.run()))


def load_maps(path: str | Path, shape: Shape, what: str = "sense maps") -> Tensor:
    """Load a complex ``(C, H, W)`` array from ``.npy`` and check its image shape."""
    arr = load_npy(path, f"{what} file")
    if arr.ndim != 3 or tuple(arr.shape[1:]) != tuple(shape):
        raise ValueError(f"{what} file {path}: expected shape (C, {shape[0]}, {shape[1]}), "
                         f"got {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(arr))


def sense_from_spec(args: str, image_shape: tuple[int, int]) -> LinearOperator:
    """sense:maps.npy | sense:birdcage=C | sense:espirit=ksp.npy[,calib=24]: coil sensitivities."""
    text = args.strip()
    if text and "=" not in text:
        return Sense(load_maps(text, image_shape))
    opts = parse_options(text, "sense", {"file": str, "birdcage": int, "espirit": str,
                                         "calib": int, "thresh": float, "kernel": int,
                                         "crop": float})
    sources = [k for k in ("file", "birdcage", "espirit") if k in opts]
    if len(sources) != 1:
        raise ValueError("sense: give exactly one of a maps file, 'birdcage=C' or "
                         f"'espirit=kspace.npy', got {args!r}")
    if sources[0] != "espirit" and set(opts) != {sources[0]}:
        raise ValueError(f"sense: calib/thresh/kernel/crop only apply to espirit, got {args!r}")
    if sources[0] == "file":
        return Sense(load_maps(str(opts["file"]), image_shape))
    if sources[0] == "birdcage":
        return Sense(birdcage_maps(int(opts["birdcage"]), image_shape))
    ksp = load_maps(str(opts["espirit"]), image_shape, "espirit k-space")
    settings = {k: opts[k] for k in ("calib", "thresh", "kernel", "crop") if k in opts}
    return Sense(espirit_maps(ksp, **settings))


__all__ = ["KMask", "Sense", "birdcage_maps", "cartesian_mask", "espirit_maps",
           "kmask_from_spec", "load_mask", "load_maps", "load_npy", "sense_from_spec"]
