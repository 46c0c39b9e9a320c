"""Slice orientation: present stored slices to the prior in the orientation it was trained on.

The built-in priors were trained on *display-oriented* slices of RAS volumes
(``scripts/build_dataset.py``: ``flipud(take(vol_ras, k, axis).T)``, superior/anterior at the top).
A slice of a user's volume, in the file's voxel order, may be transposed or flipped relative to
that. Rather than reorienting the data (a flip of an even-sized grid is not an exact operation on
centred k-space: it moves the unpaired frequency ``-n/2`` to ``+n/2``), the pipeline reorients the
*prior*: for a pixel permutation ``P`` taking stored slices to display orientation, the prior of
stored slices has density ``p(P x)`` and noise prediction

    eps'(x_t, t) = P^{-1} eps(P x_t, t),

exact for every permutation, so the operator and the measurement stay in the file's voxel order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from invdiff.priors.base import Prior


@dataclass(frozen=True)
class SliceOrientation:
    """``display = flip(transpose?(stored))`` on the last two axes.

    Attributes:
        transpose: swap the two in-plane axes first.
        flip_rows: then reverse the row axis (-2).
        flip_cols: then reverse the column axis (-1).
    """

    transpose: bool = False
    flip_rows: bool = False
    flip_cols: bool = False

    @property
    def is_identity(self) -> bool:
        return not (self.transpose or self.flip_rows or self.flip_cols)

    def to_display(self, x: Tensor) -> Tensor:
        if self.transpose:
            x = x.transpose(-2, -1)
        dims = [d for d, f in ((-2, self.flip_rows), (-1, self.flip_cols)) if f]
        return x.flip(dims) if dims else x

    def from_display(self, x: Tensor) -> Tensor:
        dims = [d for d, f in ((-2, self.flip_rows), (-1, self.flip_cols)) if f]
        if dims:
            x = x.flip(dims)
        return x.transpose(-2, -1) if self.transpose else x

    def stored_shape(self, display_shape: tuple[int, int]) -> tuple[int, int]:
        """In-plane shape in the file's voxel order of a display-oriented ``(H, W)``."""
        return (display_shape[1], display_shape[0]) if self.transpose else tuple(display_shape)


def display_orientation(affine: np.ndarray | None, axis: int | None) -> SliceOrientation:
    """The orientation taking stored slices along ``axis`` to the training data's display order.

    With the volume's axis codes from ``nibabel.io_orientation`` (stored axis -> RAS axis and
    sign), the display slice is ``flipud(C.T)`` of the RAS slice ``C[p, q]`` (``p < q`` the in-plane
    RAS axes). For stored in-plane axes ``(a, b)``, stored axis ``sp`` holding RAS axis ``p`` with
    sign ``fp`` and ``sq`` holding ``q`` with sign ``fq``:
    ``transpose = (a == sp)``, ``flip_rows = (fq > 0)``, ``flip_cols = (fp < 0)``.

    2D images without an affine (PNG, ``.npy``) are taken as already display-oriented. 3D arrays
    without an affine are taken as RAS (identity affine). A 2D NIfTI is a slice along axis 2.
    """
    import nibabel as nib

    if affine is None and axis is None:
        return SliceOrientation()
    affine = np.eye(4) if affine is None else affine
    axis = 2 if axis is None else axis
    ornt = nib.io_orientation(affine)  # row i: (RAS axis of stored axis i, +1/-1)
    a, b = (i for i in range(3) if i != axis)
    ras = {int(ornt[i, 0]): (i, float(ornt[i, 1])) for i in (a, b)}
    p, q = sorted(ras)
    sp, fp = ras[p]
    _, fq = ras[q]
    return SliceOrientation(transpose=(a == sp), flip_rows=(fq > 0), flip_cols=(fp < 0))


class ReorientedPrior(Prior):
    """``prior`` seen through a slice permutation: ``eps'(x, t) = P^{-1} eps(P x, t)``."""

    def __init__(self, prior: Prior, orientation: SliceOrientation) -> None:
        self.inner = prior
        self.orientation = orientation
        c, h, w = prior.image_shape
        self.image_shape = (c, *orientation.stored_shape((h, w)))
        self.data_range = prior.data_range

    def gamma(self, t: Tensor) -> Tensor:
        return self.inner.gamma(t)

    def eps(self, x_t: Tensor, t: Tensor) -> Tensor:
        o = self.orientation
        return o.from_display(self.inner.eps(o.to_display(x_t), t))

    def bits_per_dim(self, x: Tensor) -> Tensor:
        return self.inner.bits_per_dim(self.orientation.to_display(x))

    @property
    def device(self) -> torch.device:
        return self.inner.device


def oriented_prior(prior: Prior, orientation: SliceOrientation) -> Prior:
    """``prior`` itself for the identity orientation, else a :class:`ReorientedPrior`."""
    return prior if orientation.is_identity else ReorientedPrior(prior, orientation)
