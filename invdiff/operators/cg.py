"""Batched conjugate gradient for Hermitian positive semi-definite systems, without host syncs."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def conjugate_gradient(
    normal: Callable[[Tensor], Tensor], rhs: Tensor, ndim: int, maxiter: int = 100
) -> Tensor:
    """Solve ``M x = rhs`` for each batch element by ``maxiter`` CG steps from ``x = 0``.

    ``M`` is Hermitian positive semi-definite (a normal operator ``A^H A``). Started at zero, CG
    stays in the Krylov space of ``rhs = A^H y``, i.e. the range of ``A^H``, so it converges to the
    minimum-norm least-squares solution (Hestenes & Stiefel 1952; Paige & Saunders 1982, CGLS).
    The iteration count is fixed; a system whose squared residual fell below ``(100 eps)^2`` of its
    initial value is frozen by ``torch.where`` (further steps would divide round-off by round-off),
    so the loop never synchronises with the host.

    Args:
        normal: ``x -> M x`` on tensors shaped like ``rhs``.
        rhs: right-hand side ``(..., *ishape)``.
        ndim: number of trailing axes forming one system (``len(ishape)``).
        maxiter: number of CG iterations.
    """
    dims = tuple(range(-ndim, 0))

    def dot(a: Tensor, b: Tensor) -> Tensor:
        return (a.conj() * b).sum(dim=dims, keepdim=True).real if a.is_complex() else (
            a * b).sum(dim=dims, keepdim=True)

    x = torch.zeros_like(rhs)
    r = rhs.clone()
    p = r.clone()
    rs = dot(r, r)
    finfo = torch.finfo(rs.dtype)
    threshold = rs * (100 * finfo.eps) ** 2
    for _ in range(maxiter):
        mp = normal(p)
        pmp = dot(p, mp)
        active = (rs > threshold) & (pmp > 0)
        alpha = torch.where(active, rs / pmp.clamp_min(finfo.tiny), 0.0)
        x = x + alpha * p
        r = r - alpha * mp
        rs_new = dot(r, r)
        beta = torch.where(active, rs_new / rs.clamp_min(finfo.tiny), 0.0)
        p = r + beta * p
        rs = rs_new
    return x
