"""Image-domain operators: ``identity`` and ``downsample:K`` (average pooling, super-resolution).

Both act on real or complex images ``(..., H, W)`` and keep the dtype (real stays real).
"""

from __future__ import annotations

import torch
from torch import Tensor

from invdiff.operators.base import LinearOperator, Shape, check_shape


class Identity(LinearOperator):
    """``I`` on ``(..., *shape)``; its own adjoint and pseudo-inverse."""

    has_pinv = True
    has_pinv_real = True

    def __init__(self, shape: Shape) -> None:
        shape = check_shape(shape, "shape")
        super().__init__(shape, shape)

    def _apply(self, x: Tensor) -> Tensor:
        return x

    def _adjoint_operator(self) -> LinearOperator:
        return self

    def _normal_operator(self) -> LinearOperator:
        return self

    def _pinv(self, y: Tensor) -> Tensor:
        return y

    def pinv_real(self, y: Tensor, maxiter: int = 100) -> Tensor:
        """``Re(y)``: the nearest real image."""
        self._check_input(y, self.oshape, "measurement")
        return y.real if y.is_complex() else y

    def selection_unitary(self) -> tuple[Tensor, LinearOperator]:
        return torch.ones(self.oshape, dtype=torch.bool), self

    def __repr__(self) -> str:
        return f"Identity({self.ishape})"


class Downsample(LinearOperator):
    """``A``: mean over non-overlapping ``K x K`` blocks, ``(..., H, W) -> (..., H//K, W//K)``.

    As ``torch.nn.functional.avg_pool2d(x, K)`` (floor mode): when ``K`` does not divide ``H`` or
    ``W`` the last ``H mod K`` rows / ``W mod K`` columns are not observed. ``A^H`` spreads each
    value over its block divided by ``K^2`` (zero on the unobserved border). Blocks are disjoint, so
    ``A A^H = I / K^2`` and the pseudo-inverse is ``A^+ = K^2 A^H`` (nearest-neighbour upsampling).

    Args:
        image_shape: ``(H, W)``.
        factor: ``K >= 1`` with ``K <= min(H, W)``.
    """

    has_pinv = True
    has_pinv_real = True

    def __init__(self, image_shape: Shape, factor: int) -> None:
        image_shape = check_shape(image_shape, "image shape")
        if len(image_shape) != 2:
            raise ValueError(f"downsample needs a 2D image shape, got {image_shape}")
        if int(factor) != factor or factor < 1:
            raise ValueError(f"downsample factor must be a positive integer, got {factor!r}")
        if factor > min(image_shape):
            raise ValueError(f"downsample factor {factor} is larger than the image {image_shape}")
        self.factor = int(factor)
        super().__init__(image_shape, tuple(s // self.factor for s in image_shape))

    def _apply(self, x: Tensor) -> Tensor:
        (h, w), k = self.oshape, self.factor
        blocks = x[..., : h * k, : w * k].reshape(*x.shape[:-2], h, k, w, k)
        return blocks.mean(dim=(-3, -1))

    def _adjoint_operator(self) -> LinearOperator:
        return Upsample(self, 1.0 / self.factor**2)

    def _pinv(self, y: Tensor) -> Tensor:
        return _spread(y, self.factor, self.ishape)

    def pinv_real(self, y: Tensor, maxiter: int = 100) -> Tensor:
        """``A^+ Re(y)``: ``A`` is a real matrix."""
        self._check_input(y, self.oshape, "measurement")
        return _spread(y.real if y.is_complex() else y, self.factor, self.ishape)

    def __repr__(self) -> str:
        return f"Downsample(image={self.ishape}, factor={self.factor})"


class Upsample(LinearOperator):
    """The adjoint of :class:`Downsample`: ``scale *`` block replication, zero-padded."""

    has_pinv = True

    def __init__(self, down: Downsample, scale: float) -> None:
        super().__init__(down.oshape, down.ishape)
        self.down, self.scale = down, scale

    def _apply(self, y: Tensor) -> Tensor:
        return _spread(y, self.down.factor, self.oshape) * self.scale

    def _adjoint_operator(self) -> LinearOperator:
        return self.down

    def _pinv(self, x: Tensor) -> Tensor:
        # (A^H)^+ = (A^+)^H = K^2 A for A A^H = I / K^2.
        return self.down(x) * self.down.factor**2

    def __repr__(self) -> str:
        return f"Upsample(image={self.ishape}, factor={self.down.factor})"


def _spread(y: Tensor, k: int, full: Shape) -> Tensor:
    """Replicate each value of ``y`` over a ``k x k`` block, zero-padding up to ``full``."""
    h, w = y.shape[-2:]
    up = y[..., :, None, :, None].expand(*y.shape[:-2], h, k, w, k).reshape(
        *y.shape[:-2], h * k, w * k)
    if (h * k, w * k) == tuple(full):
        return up
    out = y.new_zeros((*y.shape[:-2], *full))
    out[..., : h * k, : w * k] = up
    return out


def identity_from_spec(args: str, image_shape: tuple[int, int]) -> LinearOperator:
    """identity: the identity on (H, W) images (no arguments)."""
    if args.strip():
        raise ValueError(f"identity takes no arguments, got {args!r}")
    return Identity(image_shape)


def downsample_from_spec(args: str, image_shape: tuple[int, int]) -> LinearOperator:
    """downsample:K: mean over K x K pixel blocks (super-resolution outside MRI)."""
    text = args.strip()
    if not text.lstrip("+-").isdigit():
        raise ValueError(f"downsample: expected an integer factor K, got {args!r}")
    return Downsample(image_shape, int(text))
