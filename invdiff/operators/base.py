"""The ``LinearOperator`` base: forward, cached adjoint, composition, sums and scalar multiples.

Conventions (shared by every operator in :mod:`invdiff.operators`):

- Shapes: an operator declares the *trailing* shapes it acts on, ``ishape`` (e.g. ``(H, W)``) and
  ``oshape`` (e.g. ``(ncoil, H, W)``); any leading dimensions (batch ``B``, channel ``C``, ...) are
  carried through unchanged: ``A`` maps ``(..., *ishape) -> (..., *oshape)``.
- Inner product: ``<u, v> = sum(conj(u) * v)``; the adjoint satisfies ``<A x, y> = <x, A^H y>``.
  For a real input ``x`` the identity ``Re<A x, y> = <x, Re(A^H y)>`` defines the adjoint of ``A``
  seen as a map from real images.
- Dtypes: the precision of the input is kept. Operators into k-space return complex output
  (``float32 -> complex64``, ``float64 -> complex128``); image-domain operators keep real input
  real.
- No host synchronisation in ``__call__`` (no ``.item()``, no Python branching on tensor values),
  so operators run asynchronously on CUDA and inside compiled graphs.

Modelled on ``sigpy.linop`` (Ong & Lustig, SigPy, ISMRM 2019): ``*``/``@`` compose, ``.H`` is the
cached adjoint, the adjoint of a composition is the reversed composition of the adjoints.
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod

import torch
from torch import Tensor

from invdiff.operators.cg import conjugate_gradient

Shape = tuple[int, ...]


def check_shape(shape: Shape, what: str) -> Shape:
    """Validate a shape of positive ints and return it as a tuple."""
    out = tuple(int(s) for s in shape)
    if any(s <= 0 for s in out) or any(int(s) != s for s in shape):
        raise ValueError(f"{what} must be positive integers, got {tuple(shape)}")
    return out


def _trailing_dims(n: int) -> tuple[int, ...]:
    return tuple(range(-n, 0))


class LinearOperator(ABC):
    """A linear map ``A: (..., *ishape) -> (..., *oshape)`` on real or complex torch tensors.

    Subclasses implement :meth:`_apply` and :meth:`_adjoint_operator`; they may override
    :meth:`_normal_operator`, :meth:`_pinv` (then set ``has_pinv = True``), :meth:`pinv_real` and
    :meth:`selection_unitary`.
    """

    #: True when :meth:`pinv` is a closed form (exact and cheap); otherwise it runs CG.
    has_pinv: bool = False
    #: True when :meth:`pinv_real` is a closed form; otherwise it runs CG.
    has_pinv_real: bool = False

    def __init__(self, ishape: Shape, oshape: Shape) -> None:
        self.ishape: Shape = check_shape(ishape, "ishape")
        self.oshape: Shape = check_shape(oshape, "oshape")
        self._adjoint_cache: LinearOperator | None = None

    # -- to implement ------------------------------------------------------------------------
    @abstractmethod
    def _apply(self, x: Tensor) -> Tensor:
        """Forward map on ``x`` of shape ``(..., *ishape)`` (already validated)."""

    @abstractmethod
    def _adjoint_operator(self) -> LinearOperator:
        """A new operator representing ``A^H`` (cached by :attr:`H`)."""

    def _normal_operator(self) -> LinearOperator:
        """``A^H A``; override when a cheaper form exists."""
        return Compose(self.H, self)

    # -- public API --------------------------------------------------------------------------
    def __call__(self, x: Tensor) -> Tensor:
        """Apply ``A`` to ``x`` of shape ``(..., *ishape)``; returns ``(..., *oshape)``."""
        self._check_input(x, self.ishape, "input")
        return self._apply(x)

    @property
    def H(self) -> LinearOperator:  # noqa: N802 (mathematical name, as in sigpy)
        """The adjoint ``A^H``, built once and cached; ``A.H.H is A``."""
        if self._adjoint_cache is None:
            adj = self._adjoint_operator()
            adj._adjoint_cache = self
            self._adjoint_cache = adj
        return self._adjoint_cache

    def adjoint(self, y: Tensor) -> Tensor:
        """``A^H y``, the same as ``A.H(y)``."""
        return self.H(y)

    @property
    def normal(self) -> LinearOperator:
        """The normal operator ``A^H A``."""
        return self._normal_operator()

    def pinv(self, y: Tensor, maxiter: int = 100) -> Tensor:
        """Moore-Penrose pseudo-inverse ``A^+ y`` over complex images.

        Closed form when :attr:`has_pinv`; otherwise the minimum-norm least-squares solution of
        ``A^H A x = A^H y`` by ``maxiter`` conjugate-gradient steps started at zero (CG from zero
        stays in the range of ``A^H``, hence converges to the minimum-norm solution).

        Args:
            y: measurements ``(..., *oshape)``.
            maxiter: CG iterations for the fallback (ignored by closed forms).
        """
        self._check_input(y, self.oshape, "measurement")
        if self.has_pinv:
            return self._pinv(y)
        return conjugate_gradient(self.normal, self.adjoint(y), len(self.ishape), maxiter)

    def _pinv(self, y: Tensor) -> Tensor:
        """Closed-form pseudo-inverse; subclasses with ``has_pinv = True`` override it."""
        raise TypeError(f"{self!r} declares no closed-form pseudo-inverse")

    def pinv_real(self, y: Tensor, maxiter: int = 100) -> Tensor:
        """Minimum-norm least-squares solution over *real* images: ``argmin_{x real} |A x - y|``.

        Generic fallback: CG on the real normal equations ``Re(A^H A) x = Re(A^H y)``. Fourier
        operators override it with the closed form (conjugate-symmetric fill, see MATH-NOTES).

        Args:
            y: measurements ``(..., *oshape)``.
            maxiter: CG iterations.
        """
        self._check_input(y, self.oshape, "measurement")
        normal = self.normal

        def real_normal(x: Tensor) -> Tensor:
            out = normal(x)
            return out.real if out.is_complex() else out

        rhs = self.adjoint(y)
        rhs = rhs.real if rhs.is_complex() else rhs
        return conjugate_gradient(real_normal, rhs, len(self.ishape), maxiter)

    def makes_complex(self, device: torch.device | str | None = None) -> bool:
        """Whether the operator maps real images to complex values (k-space), probed on one
        zero image on ``device``."""
        return bool(self(torch.zeros(1, *self.ishape, device=device)).is_complex())

    def selection_unitary(self) -> tuple[Tensor, LinearOperator] | None:
        """The decomposition ``A = S U`` (``S`` a 0/1 selection, ``U`` unitary), if one exists.

        Returns ``(mask, U)`` with ``mask`` a boolean tensor of shape ``U.oshape`` such that
        ``A^H A = U^H diag(mask) U`` and ``A A^H`` is a 0/1 projection (identity for a pure row
        selection). The measured entries embed into U's grid by ``S^T y = U(A^H y)``. ``None``
        when the operator has no such structure (e.g. SENSE, downsampling).
        """
        return None

    # -- algebra -----------------------------------------------------------------------------
    def __matmul__(self, other: LinearOperator) -> LinearOperator:
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return Compose(self, other)

    def __mul__(self, other: object) -> LinearOperator | Tensor:
        if isinstance(other, LinearOperator):
            return Compose(self, other)
        if isinstance(other, Tensor):
            return self(other)
        if isinstance(other, numbers.Number):
            return Scaled(self, other)
        return NotImplemented

    def __rmul__(self, other: object) -> LinearOperator:
        if isinstance(other, numbers.Number):
            return Scaled(self, other)
        return NotImplemented

    def __add__(self, other: LinearOperator) -> LinearOperator:
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return Sum(self, other)

    def __sub__(self, other: LinearOperator) -> LinearOperator:
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return Sum(self, Scaled(other, -1))

    def __neg__(self) -> LinearOperator:
        return Scaled(self, -1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(ishape={self.ishape}, oshape={self.oshape})"

    # -- helpers -----------------------------------------------------------------------------
    def _check_input(self, x: Tensor, shape: Shape, what: str) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"{self!r}: {what} must be a torch.Tensor, got {type(x).__name__}")
        if not (x.is_floating_point() or x.is_complex()):
            raise TypeError(f"{self!r}: {what} must be a real or complex float, got {x.dtype}")
        n = len(shape)
        if x.ndim < n or tuple(x.shape[x.ndim - n :]) != shape:
            raise ValueError(
                f"{self!r}: expected {what} of trailing shape {shape}, got shape {tuple(x.shape)}"
            )


class Compose(LinearOperator):
    """``outer @ inner``: apply ``inner`` first, then ``outer``.

    Trailing shapes compose by broadcasting over leading axes: if ``inner.oshape`` ends with
    ``outer.ishape`` (e.g. an FFT on ``(H, W)`` after SENSE's ``(ncoil, H, W)``), the extra leading
    axes pass through ``outer``; if ``outer.ishape`` ends with ``inner.oshape`` (e.g. the adjoint
    SENSE after an inverse FFT), the extra leading axes pass through ``inner``.
    """

    def __init__(self, outer: LinearOperator, inner: LinearOperator) -> None:
        o_in, i_out = outer.ishape, inner.oshape
        if _endswith(i_out, o_in):
            ishape, oshape = inner.ishape, i_out[: len(i_out) - len(o_in)] + outer.oshape
        elif _endswith(o_in, i_out):
            ishape, oshape = o_in[: len(o_in) - len(i_out)] + inner.ishape, outer.oshape
        else:
            raise ValueError(
                f"cannot compose: {outer!r} expects trailing shape {o_in}, "
                f"but {inner!r} produces {i_out}"
            )
        super().__init__(ishape, oshape)
        self.outer, self.inner = outer, inner

    def _apply(self, x: Tensor) -> Tensor:
        return self.outer(self.inner(x))

    def _adjoint_operator(self) -> LinearOperator:
        return Compose(self.inner.H, self.outer.H)

    def _normal_operator(self) -> LinearOperator:
        # (A B)^H (A B) = B^H (A^H A) B reuses the outer operator's cheap normal form.
        return Compose(self.inner.H, Compose(self.outer.normal, self.inner))

    def __repr__(self) -> str:
        return f"({self.outer!r} @ {self.inner!r})"


class Sum(LinearOperator):
    """``A + B`` for operators with equal ``ishape`` and ``oshape``."""

    def __init__(self, a: LinearOperator, b: LinearOperator) -> None:
        if a.ishape != b.ishape or a.oshape != b.oshape:
            raise ValueError(
                f"cannot add {a!r} and {b!r}: shapes {a.ishape}->{a.oshape} "
                f"and {b.ishape}->{b.oshape} differ"
            )
        super().__init__(a.ishape, a.oshape)
        self.a, self.b = a, b

    def _apply(self, x: Tensor) -> Tensor:
        return self.a(x) + self.b(x)

    def _adjoint_operator(self) -> LinearOperator:
        return Sum(self.a.H, self.b.H)

    def __repr__(self) -> str:
        return f"({self.a!r} + {self.b!r})"


class Scaled(LinearOperator):
    """``c * A`` for a Python scalar ``c`` (real or complex)."""

    def __init__(self, op: LinearOperator, scale: numbers.Number) -> None:
        super().__init__(op.ishape, op.oshape)
        self.op, self.scale = op, scale
        self.has_pinv = op.has_pinv and scale != 0
        self.has_pinv_real = op.has_pinv_real and scale != 0 and not _is_complex(scale)

    def _apply(self, x: Tensor) -> Tensor:
        return self.op(x) * self.scale

    def _adjoint_operator(self) -> LinearOperator:
        return Scaled(self.op.H, self.scale.conjugate())

    def _normal_operator(self) -> LinearOperator:
        return Scaled(self.op.normal, abs(self.scale) ** 2)

    def _pinv(self, y: Tensor) -> Tensor:
        return self.op.pinv(y) / self.scale

    def pinv_real(self, y: Tensor, maxiter: int = 100) -> Tensor:
        """``(c A)^+ y = A^+ y / c`` for real ``c``; CG fallback otherwise."""
        if not _is_complex(self.scale) and self.scale != 0:
            return self.op.pinv_real(y, maxiter) / self.scale
        return super().pinv_real(y, maxiter)

    def __repr__(self) -> str:
        return f"({self.scale!r} * {self.op!r})"


def _is_complex(c: numbers.Number) -> bool:
    return isinstance(c, numbers.Complex) and not isinstance(c, numbers.Real)


def _endswith(shape: Shape, suffix: Shape) -> bool:
    return len(shape) >= len(suffix) and shape[len(shape) - len(suffix) :] == suffix


def real_dtype(dtype: torch.dtype) -> torch.dtype:
    """The real dtype of the same precision (``complex64 -> float32``)."""
    return torch.empty((), dtype=dtype).real.dtype


def complex_dtype(dtype: torch.dtype) -> torch.dtype:
    """The complex dtype of the same precision (``float32 -> complex64``)."""
    if dtype.is_complex:
        return dtype
    return {torch.float16: torch.complex32, torch.bfloat16: torch.complex64,
            torch.float32: torch.complex64, torch.float64: torch.complex128}[dtype]


__all__ = ["Compose", "LinearOperator", "Scaled", "Shape", "Sum", "check_shape", "complex_dtype",
           "real_dtype"]
