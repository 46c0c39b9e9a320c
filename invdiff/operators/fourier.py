"""Centred orthonormal 2D Fourier transform and the Fourier crop ``kcrop`` (MR super-resolution).

- ``F``: the centred, orthonormal 2D DFT over the last two axes,
  ``F x = fftshift(fft2(ifftshift(x), norm="ortho"))``, identical to
  ``sigpy.fft(x, axes=(-2, -1), center=True, norm="ortho")``. ``F`` is unitary: ``F^H = F^-1``.
- ``kcrop``: ``A = C F`` keeps the central ``n x m`` block of centred k-space; ``C`` is the centred
  crop of ``sigpy.resize`` (start index ``N // 2 - n // 2`` on each axis, so the DC sample stays at
  index ``n // 2``). ``A A^H = I``, hence ``A^+ = A^H = F^H C^T`` (zero-pad, inverse FFT).
- Real images: ``F x`` is conjugate symmetric, ``X[k] = conj(X[-k])``. With an even crop the row and
  column at ``-n/2`` are measured but their mirrors ``+n/2`` are not, so ``Re(A^H y)`` is *not* the
  real least-squares solution. :func:`hermitian_fill_real_pinv` fills the unmeasured mirrors by
  conjugate symmetry before the inverse FFT, which is (see ``MATH-NOTES.md``).
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from invdiff.operators.base import LinearOperator, Shape, check_shape, complex_dtype, real_dtype
from invdiff.operators.image import Identity

_DIMS = (-2, -1)


def fft2c(x: Tensor) -> Tensor:
    """Centred orthonormal 2D FFT over the last two axes (sigpy ``center=True, norm='ortho'``)."""
    return centred_fft_crop(x, tuple(x.shape[-2:]))


def ifft2c(y: Tensor) -> Tensor:
    """Inverse of :func:`fft2c` (also its adjoint)."""
    return centred_pad_ifft(y, tuple(y.shape[-2:]))


def centred_fft_crop(x: Tensor, crop: Shape) -> Tensor:
    """``crop(fft2c(x))`` without shifting whole arrays.

    With ``F_c = P_out F P_in`` (``P_in = ifftshift``, ``P_out = fftshift``) the shift theorem
    gives ``F P_in x = D F x`` with ``D[k] = exp(2 pi i k (N // 2) / N)``, so
    ``C F_c x = (D F x)[idx]``: one plain FFT per axis, the centred block gathered from (at most
    two) contiguous runs of unshifted frequencies, then a phase ramp on the kept samples only. The
    last axis is transformed and cropped first, so the second FFT runs on the cropped columns.
    """
    (h, w), (n, m) = x.shape[-2:], crop
    rows, cols = _axis_plan(h, n), _axis_plan(w, m)
    z = _gather(torch.fft.fft(x, dim=-1, norm="ortho"), cols, -1)
    z = _gather(torch.fft.fft(z, dim=-2, norm="ortho"), rows, -2)
    return z * _phase(h, n, w, m, z.device, z.dtype)


def centred_pad_ifft(y: Tensor, full: Shape) -> Tensor:
    """``ifft2c(pad(y))``, the adjoint of :func:`centred_fft_crop`: ``F^H D^* C^T`` per axis."""
    y = y if y.is_complex() else y.to(complex_dtype(y.dtype))
    (n, m), (h, w) = y.shape[-2:], full
    rows, cols = _axis_plan(h, n), _axis_plan(w, m)
    z = _scatter(y * _phase(h, n, w, m, y.device, y.dtype).conj(), rows, h, -2)
    z = _scatter(torch.fft.ifft(z, dim=-2, norm="ortho"), cols, w, -1)
    return torch.fft.ifft(z, dim=-1, norm="ortho")


Runs = tuple[tuple[int, int, int], ...]


@functools.cache
def _axis_plan(full: int, part: int) -> Runs:
    """Runs ``(src, dst, length)``: unshifted FFT indices of the centred block of ``part``."""
    start = centre_start(full, part)
    src = [(start + j - full // 2) % full for j in range(part)]  # fftshift(arange)[start + j]
    runs, dst = [], 0
    while dst < part:
        length = 1
        while dst + length < part and src[dst + length] == src[dst] + length:
            length += 1
        runs.append((src[dst], dst, length))
        dst += length
    return tuple(runs)


@functools.lru_cache(maxsize=64)
def _phase(h: int, n: int, w: int, m: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Outer product of the per-axis ramps ``exp(2 pi i k (N // 2) / N)`` on the kept ``k``."""
    def ramp(full: int, part: int) -> Tensor:
        k = torch.tensor([(centre_start(full, part) + j - full // 2) % full for j in range(part)],
                         dtype=torch.float64)
        return torch.polar(torch.ones_like(k), 2 * math.pi * k * (full // 2) / full)

    return (ramp(h, n)[:, None] * ramp(w, m)[None, :]).to(device=device, dtype=dtype)


def _gather(z: Tensor, runs: Runs, dim: int) -> Tensor:
    if len(runs) == 1 and runs[0][2] == z.shape[dim]:
        return z
    return torch.cat([z.narrow(dim, src, length) for src, _, length in runs], dim=dim)


def _scatter(y: Tensor, runs: Runs, full: int, dim: int) -> Tensor:
    if len(runs) == 1 and runs[0][2] == full:
        return y
    shape = list(y.shape)
    shape[dim] = full
    out = y.new_zeros(shape)
    for src, dst, length in runs:
        out.narrow(dim, src, length).copy_(y.narrow(dim, dst, length))
    return out


def centre_start(full: int, part: int) -> int:
    """Start index of the centred block of length ``part`` in ``full`` (as ``sigpy.resize``)."""
    return full // 2 - part // 2


def centred_mirror(z: Tensor) -> Tensor:
    """``z[-k]`` on the centred grid of the last two axes (``k -> -k`` modulo the size).

    On a centred axis of length ``N`` index ``j`` holds frequency ``j - N // 2``; its mirror is
    index ``N - 1 - j`` for odd ``N`` and ``(N - j) mod N`` for even ``N`` (a flip then a roll).
    """
    for dim in _DIMS:
        z = torch.flip(z, dims=(dim,))
        if z.shape[dim] % 2 == 0:
            z = torch.roll(z, 1, dims=dim)
    return z


def hermitian_fill_real_pinv(z: Tensor, measured: Tensor) -> Tensor:
    """Real minimum-norm least-squares image from zero-filled centred k-space ``z``.

    ``measured`` (bool, the grid of ``z``) marks measured samples; ``z`` is zero elsewhere. Each
    unmeasured sample whose mirror is measured gets ``conj(z[-k])``; then ``Re F^H`` takes the
    Hermitian part, which averages the two measurements of mirrored pairs, keeps the real part of
    self-mirrored samples (DC, Nyquist) and reproduces unpaired samples exactly.
    """
    filled = torch.where(measured, z, centred_mirror(z).conj())
    return ifft2c(filled).real


class FFT(LinearOperator):
    """The centred orthonormal 2D FFT ``F`` on images ``(..., H, W)``; unitary."""

    has_pinv = True
    has_pinv_real = True

    def __init__(self, image_shape: Shape) -> None:
        shape = check_shape(image_shape, "image shape")
        super().__init__(shape, shape)

    def _apply(self, x: Tensor) -> Tensor:
        return fft2c(x)

    def _adjoint_operator(self) -> LinearOperator:
        return IFFT(self.ishape)

    def _normal_operator(self) -> LinearOperator:
        return Identity(self.ishape)

    def _pinv(self, y: Tensor) -> Tensor:
        return ifft2c(y)

    def pinv_real(self, y: Tensor, maxiter: int = 100) -> Tensor:
        """``Re(F^H y)``: since ``F`` is unitary, ``|F x - y| = |x - F^H y|``."""
        self._check_input(y, self.oshape, "measurement")
        return ifft2c(y).real

    def selection_unitary(self) -> tuple[Tensor, LinearOperator]:
        return torch.ones(self.oshape, dtype=torch.bool), self

    def __repr__(self) -> str:
        return f"FFT({self.ishape})"


class IFFT(LinearOperator):
    """The inverse centred orthonormal 2D FFT ``F^H`` (the adjoint of :class:`FFT`)."""

    has_pinv = True

    def __init__(self, image_shape: Shape) -> None:
        shape = check_shape(image_shape, "image shape")
        super().__init__(shape, shape)

    def _apply(self, y: Tensor) -> Tensor:
        return ifft2c(y)

    def _adjoint_operator(self) -> LinearOperator:
        return FFT(self.ishape)

    def _normal_operator(self) -> LinearOperator:
        return Identity(self.ishape)

    def _pinv(self, x: Tensor) -> Tensor:
        return fft2c(x)

    def __repr__(self) -> str:
        return f"IFFT({self.ishape})"


class KCrop(LinearOperator):
    """``A = C F``: the central ``crop`` block of the centred k-space of ``(..., H, W)`` images.

    Args:
        image_shape: ``(H, W)``.
        crop: ``(n, m)`` with ``1 <= n <= H`` and ``1 <= m <= W``.
    """

    has_pinv = True
    has_pinv_real = True

    def __init__(self, image_shape: Shape, crop: Shape) -> None:
        image_shape = check_shape(image_shape, "image shape")
        crop = check_shape(crop, "kcrop size")
        if len(image_shape) != 2 or len(crop) != 2:
            raise ValueError(f"kcrop needs 2D shapes, got image {image_shape} and crop {crop}")
        if any(c > s for c, s in zip(crop, image_shape, strict=True)):
            raise ValueError(f"kcrop size {crop} is larger than the image {image_shape}")
        super().__init__(image_shape, crop)
        self.starts = tuple(centre_start(s, c) for s, c in zip(image_shape, crop, strict=True))

    def _apply(self, x: Tensor) -> Tensor:
        return centred_fft_crop(x, self.oshape)

    def _adjoint_operator(self) -> LinearOperator:
        return KPad(self)

    def _pinv(self, y: Tensor) -> Tensor:
        return self.adjoint(y)

    def measured(self, device: torch.device | str | None = None) -> Tensor:
        """Boolean mask of the measured block on the full ``(H, W)`` k-space grid."""
        mask = torch.zeros(self.ishape, dtype=torch.bool, device=device)
        (r, c), (n, m) = self.starts, self.oshape
        mask[r : r + n, c : c + m] = True
        return mask

    def pinv_real(self, y: Tensor, maxiter: int = 100) -> Tensor:
        """Real least-squares inverse: zero-pad, fill unpaired mirrors conjugately, ``Re F^H``."""
        self._check_input(y, self.oshape, "measurement")
        z = pad_centre(y, self.starts, self.ishape)
        return hermitian_fill_real_pinv(z, self.measured(y.device))

    def selection_unitary(self) -> tuple[Tensor, LinearOperator]:
        return self.measured(), FFT(self.ishape)

    def __repr__(self) -> str:
        return f"KCrop(image={self.ishape}, crop={self.oshape})"


class KPad(LinearOperator):
    """``A^H = F^H C^T`` for a :class:`KCrop` ``A``: zero-pad the block, inverse FFT."""

    has_pinv = True

    def __init__(self, kcrop: KCrop) -> None:
        super().__init__(kcrop.oshape, kcrop.ishape)
        self.kcrop = kcrop

    def _apply(self, y: Tensor) -> Tensor:
        return centred_pad_ifft(y, self.oshape)

    def _adjoint_operator(self) -> LinearOperator:
        return self.kcrop

    def _normal_operator(self) -> LinearOperator:
        return Identity(self.ishape)  # C F F^H C^T = C C^T = I

    def _pinv(self, x: Tensor) -> Tensor:
        return self.kcrop(x)  # an isometry's pseudo-inverse is its adjoint

    def __repr__(self) -> str:
        return f"KPad(crop={self.ishape}, image={self.oshape})"


def pad_centre(y: Tensor, starts: Shape, full: Shape) -> Tensor:
    """Zero-pad ``y`` of trailing shape ``(n, m)`` into ``full`` at ``starts`` (adjoint of crop)."""
    (r, c), (n, m) = starts, y.shape[-2:]
    dtype = y.dtype if y.is_complex() else complex_dtype(y.dtype)
    out = y.new_zeros((*y.shape[:-2], *full), dtype=dtype)
    out[..., r : r + n, c : c + m] = y
    return out


def parse_size(args: str, what: str) -> Shape:
    """``"32"`` -> ``(32, 32)``, ``"64x48"`` -> ``(64, 48)``; positive ints only."""
    parts = args.strip().lower().split("x")
    if len(parts) not in (1, 2) or not all(p.strip().lstrip("+-").isdigit() for p in parts):
        raise ValueError(f"{what}: expected a size 'N' or 'NxM' of integers, got {args!r}")
    size = tuple(int(p) for p in parts)
    size = size * 2 if len(size) == 1 else size
    if any(s <= 0 for s in size):
        raise ValueError(f"{what}: sizes must be positive, got {size}")
    return size


def fft_from_spec(args: str, image_shape: tuple[int, int]) -> LinearOperator:
    """fft: centred orthonormal 2D FFT over the last two axes (no arguments)."""
    if args.strip():
        raise ValueError(f"fft takes no arguments, got {args!r}")
    return FFT(image_shape)


def kcrop_from_spec(args: str, image_shape: tuple[int, int]) -> LinearOperator:
    """kcrop:N or kcrop:NxM: keep the central N x M block of centred k-space."""
    return KCrop(image_shape, parse_size(args, "kcrop"))


__all__ = ["FFT", "IFFT", "KCrop", "KPad", "centred_mirror", "fft2c", "fft_from_spec",
           "hermitian_fill_real_pinv", "ifft2c", "kcrop_from_spec", "parse_size", "real_dtype"]
