"""Conformance kit: property checks every :class:`LinearOperator` must pass (reusable by plugins).

Each ``check_*`` draws seeded random inputs, applies the operator and raises ``AssertionError``
with the measured error when a property fails. Tolerances depend on the dtype
(:func:`tolerance`). A plugin author runs the whole kit with one call::

    from invdiff.operators.testing import check_operator
    check_operator(MyOperator((37, 31)))

Properties (``<u, v> = sum(conj(u) v)``):

- adjoint: ``<A x, y> = <x, A^H y>`` (real part for real ``x``), ``A.H.H is A``, shapes swapped;
- linearity: ``A(a x1 + b x2) = a A x1 + b A x2``, output precision equals input precision;
- normal: ``A.normal(x) = A^H(A x)``;
- pinv (the Penrose conditions): ``A A+ A = A``, ``A+ A A+ = A+``, ``A A+`` and ``A+ A``
  self-adjoint; the same four over real images for ``pinv_real``;
- selection-unitary: ``U`` unitary and ``A^H A = U^H diag(mask) U``;
- CPU/CUDA agreement (raises ``unittest.SkipTest``, i.e. a pytest skip, without CUDA).
"""

from __future__ import annotations

import unittest
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from invdiff.operators.base import LinearOperator, real_dtype

Shape = tuple[int, ...]
DTYPES = (torch.float32, torch.complex64, torch.float64, torch.complex128)


def tolerance(dtype: torch.dtype) -> float:
    """Relative tolerance of exact (closed-form) identities in the precision of ``dtype``."""
    return 1e-10 if real_dtype(dtype) == torch.float64 else 2e-5


def cg_tolerance(dtype: torch.dtype) -> float:
    """Relative tolerance for results of the conjugate-gradient fallbacks."""
    return 1e-6 if real_dtype(dtype) == torch.float64 else 2e-3


def random_tensor(
    shape: Shape, dtype: torch.dtype, generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Standard normal tensor (complex: unit variance per entry), drawn on CPU then moved."""
    x = torch.randn(shape, dtype=dtype, generator=generator)
    return x.to(device)


def _gen(generator: torch.Generator | None) -> torch.Generator:
    return generator if generator is not None else torch.Generator().manual_seed(0)


def _inner(u: Tensor, v: Tensor) -> complex:
    return complex((u.conj() * v).sum()) if (u.is_complex() or v.is_complex()) else complex(
        (u * v).sum())


def _norm(u: Tensor) -> float:
    return float(torch.linalg.vector_norm(u))


def assert_close(a: Tensor, b: Tensor, rtol: float, what: str) -> None:
    """``|a - b| <= rtol * max(|a|, |b|)`` (2-norms), else ``AssertionError`` naming ``what``."""
    if a.shape != b.shape:
        raise AssertionError(f"{what}: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    err, scale = _norm(a - b), max(_norm(a), _norm(b), 1e-30)
    if not err <= rtol * scale:
        raise AssertionError(f"{what}: relative error {err / scale:.3e} > tolerance {rtol:.1e}")


def _setup(op: LinearOperator, dtype: torch.dtype, batch: Shape, generator, device):
    g = _gen(generator)
    x = random_tensor((*batch, *op.ishape), dtype, g, device)
    ax = op(x)
    y = random_tensor((*batch, *op.oshape), ax.dtype, g, device)
    return g, x, ax, y


def check_adjoint(
    op: LinearOperator, dtype: torch.dtype = torch.complex128, batch: Shape = (2,),
    device: torch.device | str = "cpu", generator: torch.Generator | None = None,
    rtol: float | None = None,
) -> None:
    """Dot-product test ``<A x, y> = <x, A^H y>``, plus ``A.H.H is A`` and swapped shapes."""
    rtol = tolerance(dtype) if rtol is None else rtol
    if op.H.H is not op:
        raise AssertionError(f"{op!r}: A.H.H is not A")
    if (op.H.ishape, op.H.oshape) != (op.oshape, op.ishape):
        raise AssertionError(f"{op!r}: adjoint shapes {op.H.ishape}->{op.H.oshape} not swapped")
    _, x, ax, y = _setup(op, dtype, batch, generator, device)
    if tuple(ax.shape) != (*batch, *op.oshape):
        raise AssertionError(f"{op!r}: output shape {tuple(ax.shape)}, expected "
                             f"{(*batch, *op.oshape)}")
    ahy = op.adjoint(y)
    if tuple(ahy.shape) != tuple(x.shape):
        raise AssertionError(f"{op!r}: adjoint output shape {tuple(ahy.shape)}, "
                             f"expected {tuple(x.shape)}")
    lhs, rhs = _inner(ax, y), _inner(x, ahy)
    if not x.is_complex():
        lhs, rhs = complex(lhs.real), complex(rhs.real)
    scale = max(_norm(ax) * _norm(y), _norm(x) * _norm(ahy), 1e-30)
    if not abs(lhs - rhs) <= rtol * scale:
        raise AssertionError(f"{op!r} ({dtype}): <Ax, y> = {lhs:.6g} but <x, A^H y> = {rhs:.6g}, "
                             f"relative error {abs(lhs - rhs) / scale:.3e} > {rtol:.1e}")


def check_linear(
    op: LinearOperator, dtype: torch.dtype = torch.complex128, batch: Shape = (2,),
    device: torch.device | str = "cpu", generator: torch.Generator | None = None,
    rtol: float | None = None,
) -> None:
    """``A(a x1 + b x2) = a A x1 + b A x2``; the output keeps the input's precision."""
    rtol = tolerance(dtype) if rtol is None else rtol
    g, x1, ax1, _ = _setup(op, dtype, batch, generator, device)
    x2 = random_tensor(x1.shape, dtype, g, device)
    a, b = (0.7 - 1.3j, -0.4 + 0.9j) if dtype.is_complex else (0.7, -1.3)
    if real_dtype(ax1.dtype) != real_dtype(dtype):
        raise AssertionError(f"{op!r}: input {dtype} gave output {ax1.dtype} (precision changed)")
    if dtype.is_complex and not ax1.is_complex():
        raise AssertionError(f"{op!r}: complex input {dtype} gave real output {ax1.dtype}")
    assert_close(op(a * x1 + b * x2), a * ax1 + b * op(x2), rtol, f"{op!r} linearity ({dtype})")


def check_normal(
    op: LinearOperator, dtype: torch.dtype = torch.complex128, batch: Shape = (2,),
    device: torch.device | str = "cpu", generator: torch.Generator | None = None,
    rtol: float | None = None,
) -> None:
    """``A.normal(x) = A^H(A x)`` and ``A.normal`` maps ``ishape -> ishape``."""
    rtol = tolerance(dtype) if rtol is None else rtol
    normal = op.normal
    if (normal.ishape, normal.oshape) != (op.ishape, op.ishape):
        raise AssertionError(f"{op!r}: normal operator shapes {normal.ishape}->{normal.oshape}")
    _, x, ax, _ = _setup(op, dtype, batch, generator, device)
    ref = op.adjoint(ax)
    out = normal(x)
    assert_close(out.to(ref.dtype) if out.dtype != ref.dtype else out, ref, rtol,
                 f"{op!r} normal ({dtype})")


def _penrose(
    forward: Callable[[Tensor], Tensor], pinv: Callable[[Tensor], Tensor], x: Tensor, y: Tensor,
    project: Callable[[Tensor], Tensor], rtol: float, what: str,
) -> None:
    """The four Penrose conditions probed on random ``x`` (input space) and ``y`` (output)."""
    ax = forward(x)
    assert_close(forward(pinv(ax)), ax, rtol, f"{what}: A A+ A x = A x")
    py = pinv(y)
    assert_close(pinv(forward(py)), py, rtol, f"{what}: A+ A A+ y = A+ y")
    y2, x2 = torch.randn_like(y), project(torch.randn_like(x))
    lhs, rhs = _inner(forward(pinv(y)), y2), _inner(y, forward(pinv(y2)))
    _close_scalar(lhs.real, rhs.real, rtol, _norm(y) * _norm(y2), f"{what}: A A+ self-adjoint")
    lhs, rhs = _inner(pinv(forward(x)), x2), _inner(x, pinv(forward(x2)))
    _close_scalar(lhs.real, rhs.real, rtol, _norm(x) * _norm(x2), f"{what}: A+ A self-adjoint")


def _close_scalar(a: float, b: float, rtol: float, scale: float, what: str) -> None:
    if not abs(a - b) <= rtol * max(scale, 1e-30):
        raise AssertionError(f"{what}: {a:.6g} vs {b:.6g} (relative {abs(a - b) / scale:.3e} "
                             f"> {rtol:.1e})")


def check_pinv(
    op: LinearOperator, dtype: torch.dtype = torch.complex128, batch: Shape = (2,),
    device: torch.device | str = "cpu", generator: torch.Generator | None = None,
    rtol: float | None = None, maxiter: int = 200, cg: bool = True,
) -> None:
    """Penrose conditions for ``pinv`` (complex images) and ``pinv_real`` (real images).

    Closed forms (``has_pinv`` / ``has_pinv_real``) are held to :func:`tolerance`; conjugate-
    gradient fallbacks (checked only when ``cg``) to :func:`cg_tolerance` after ``maxiter`` steps,
    which only well-conditioned operators meet (CG converges slowly on e.g. undersampled SENSE).
    For real images ``A pinv_real(A x) = A x`` is the first condition: the data-consistency
    ``lambda = 1`` step reproduces ``y``; ``pinv_real`` must return a real tensor.
    """
    g, x, _, y = _setup(op, dtype, batch, generator, device)
    if op.has_pinv or cg:
        tol = rtol if rtol is not None else (
            tolerance(dtype) * 10 if op.has_pinv else cg_tolerance(dtype))
        _penrose(op, lambda v: op.pinv(v, maxiter=maxiter), x, y, lambda v: v, tol,
                 f"{op!r} pinv ({dtype})")
    if op.has_pinv_real or cg:
        xr = random_tensor(x.shape, real_dtype(dtype), g, device)
        tol = rtol if rtol is not None else (
            tolerance(dtype) * 10 if op.has_pinv_real else cg_tolerance(dtype))
        pr = op.pinv_real(y, maxiter=maxiter)
        if pr.is_complex() or pr.dtype != real_dtype(dtype):
            raise AssertionError(f"{op!r}: pinv_real returned {pr.dtype}, expected "
                                 f"{real_dtype(dtype)}")
        _penrose(op, lambda v: op.pinv_real(v, maxiter=maxiter), xr, y, lambda v: v.real, tol,
                 f"{op!r} pinv_real ({dtype})")


def check_selection_unitary(
    op: LinearOperator, dtype: torch.dtype = torch.complex128, batch: Shape = (2,),
    device: torch.device | str = "cpu", generator: torch.Generator | None = None,
    rtol: float | None = None,
) -> None:
    """If ``A = S U`` is declared: ``U`` unitary, ``A^H A = U^H diag(mask) U``, ``A A^H A = A``."""
    decomposition = op.selection_unitary()
    if decomposition is None:
        return
    mask, unitary = decomposition
    rtol = tolerance(dtype) if rtol is None else rtol
    if mask.dtype != torch.bool or tuple(mask.shape) != unitary.oshape:
        raise AssertionError(f"{op!r}: mask must be bool of shape {unitary.oshape}, got "
                             f"{mask.dtype} {tuple(mask.shape)}")
    if unitary.ishape != op.ishape:
        raise AssertionError(f"{op!r}: U.ishape {unitary.ishape} != A.ishape {op.ishape}")
    g, x, ax, _ = _setup(op, dtype, batch, generator, device)
    ux = unitary(x)
    assert_close(unitary.adjoint(ux).to(ux.dtype), x.to(ux.dtype), rtol, f"{op!r}: U^H U = I")
    v = random_tensor(ux.shape, ux.dtype, g, device)
    assert_close(unitary(unitary.adjoint(v)), v, rtol, f"{op!r}: U U^H = I")
    ref = unitary.adjoint(ux * mask.to(device))
    assert_close(op.adjoint(ax).to(ref.dtype), ref, rtol, f"{op!r}: A^H A = U^H S^T S U")
    assert_close(op(op.adjoint(ax)), ax, rtol, f"{op!r}: A A^H A = A")


def check_cuda_agreement(
    op: LinearOperator, dtype: torch.dtype = torch.complex64, batch: Shape = (2,),
    generator: torch.Generator | None = None, rtol: float | None = None,
) -> None:
    """Forward, adjoint and pinv agree between CPU and CUDA inputs (the same operator object).

    Raises ``unittest.SkipTest`` (a skip under pytest and unittest) when CUDA is unavailable.
    """
    if not torch.cuda.is_available():
        raise unittest.SkipTest("CUDA is not available")
    rtol = 10 * tolerance(dtype) if rtol is None else rtol
    _, x, ax, y = _setup(op, dtype, batch, generator, "cpu")
    xc, yc = x.cuda(), y.cuda()
    axc = op(xc)
    if axc.device.type != "cuda":
        raise AssertionError(f"{op!r}: CUDA input gave output on {axc.device}")
    assert_close(axc.cpu(), ax, rtol, f"{op!r} CPU/CUDA forward ({dtype})")
    assert_close(op.adjoint(yc).cpu(), op.adjoint(y), rtol, f"{op!r} CPU/CUDA adjoint ({dtype})")
    if op.has_pinv:
        assert_close(op.pinv(yc).cpu(), op.pinv(y), rtol, f"{op!r} CPU/CUDA pinv ({dtype})")


def check_operator(
    op: LinearOperator, dtypes: Sequence[torch.dtype] = DTYPES,
    batches: Sequence[Shape] = ((), (3,), (2, 2)), device: torch.device | str = "cpu",
    generator: torch.Generator | None = None, pinv: bool = True, cg_pinv: bool = False,
) -> None:
    """Run every check on ``op`` for each dtype and batch shape (and on CUDA when present).

    Args:
        op: the operator under test.
        dtypes: input dtypes (real and complex, single and double precision by default).
        batches: leading batch shapes.
        device: device of the inputs.
        generator: seeded generator (default: seed 0).
        pinv: check the closed-form ``pinv`` / ``pinv_real`` (Penrose conditions).
        cg_pinv: also check conjugate-gradient fallbacks (only for well-conditioned operators).
    """
    g = _gen(generator)
    for dtype in dtypes:
        for batch in batches:
            for check in (check_adjoint, check_linear, check_normal, check_selection_unitary):
                check(op, dtype, batch, device, g)
        if pinv:
            check_pinv(op, dtype, batches[-1], device, g, cg=cg_pinv)
        if torch.cuda.is_available():
            check_cuda_agreement(op, dtype, batches[-1], g)


__all__ = ["DTYPES", "assert_close", "cg_tolerance", "check_adjoint", "check_cuda_agreement",
           "check_linear", "check_normal", "check_operator", "check_pinv",
           "check_selection_unitary", "random_tensor", "tolerance"]
