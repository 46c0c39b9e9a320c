"""Forward operators for inverse problems: ``y = A x`` with batched torch tensors.

Built-ins (registered through the ``invdiff.operators`` entry-point group like any plugin):
``identity``, ``fft``, ``kcrop:N[xM]``, ``kmask:...``, ``sense:...``, ``downsample:K``.
Build one with :func:`from_spec`; see :mod:`invdiff.operators.base` for conventions,
:mod:`invdiff.operators.spec` for the spec grammar and :mod:`invdiff.operators.testing` for the
conformance kit.
"""

from invdiff.operators.base import Compose, LinearOperator, Scaled, Sum
from invdiff.operators.fourier import FFT, IFFT, KCrop, fft2c, ifft2c
from invdiff.operators.image import Downsample, Identity
from invdiff.operators.noise import GaussianNoise
from invdiff.operators.spec import from_spec, list_operators

__all__ = ["FFT", "IFFT", "Compose", "Downsample", "GaussianNoise", "Identity", "KCrop",
           "LinearOperator", "Scaled", "Sum", "fft2c", "from_spec", "ifft2c", "list_operators"]
