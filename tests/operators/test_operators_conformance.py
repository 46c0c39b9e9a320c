"""Every registered operator (and the usual compositions) through the conformance kit."""

import pytest
import torch

from invdiff.operators import from_spec, list_operators
from invdiff.operators.testing import (
    check_cuda_agreement,
    check_operator,
    check_pinv,
)

SHAPE = (37, 31)  # odd, non-square
# One example spec per built-in; a registered name without an example fails test_examples_cover.
EXAMPLES = {
    "identity": "identity",
    "fft": "fft",
    "kcrop": "kcrop:8x7",
    "kmask": "kmask:accel=2,acs=4,seed=1",
    "sense": "sense:birdcage=3",
    "downsample": "downsample:3",
}
MORE = ["kcrop:37x31", "kcrop:6", "kmask:accel=3,acs=5,pattern=uniform", "downsample:1"]
COMPOSITIONS = [
    "sense:birdcage=3|fft",
    "sense:birdcage=3|kcrop:8x7",
    "sense:birdcage=3|kmask:accel=2,acs=4",
    "downsample:2|kcrop:9x8",
]


def test_examples_cover_every_registered_operator():
    assert set(list_operators()) <= set(EXAMPLES), "add an example spec for each operator"


@pytest.mark.parametrize("spec", list(EXAMPLES.values()) + MORE)
def test_builtin_conformance(spec):
    check_operator(from_spec(spec, SHAPE), batches=((), (3,), (2, 2)))


@pytest.mark.parametrize("spec", COMPOSITIONS)
def test_composition_conformance(spec):
    op = from_spec(spec, SHAPE)
    check_operator(op, batches=((), (2,)), pinv=False)
    op_h = op.H
    check_operator(op_h, dtypes=(torch.complex64, torch.complex128), batches=((2,),), pinv=False)


@pytest.mark.parametrize("spec", ["kcrop:8x7|fft", "downsample:2|fft", "fft|kcrop:9x8"])
def test_cg_pinv_fallback_on_well_conditioned_compositions(spec):
    op = from_spec(spec, SHAPE)
    assert not op.has_pinv
    for dtype in (torch.float32, torch.complex128):
        check_pinv(op, dtype, (2,), maxiter=60)


def test_scaled_and_summed_operators_conform():
    a = from_spec("kcrop:8x7", SHAPE)
    b = from_spec("fft|kcrop:8x7", SHAPE)
    for op in ((2 - 1j) * a, a + 0.5 * b, a - b, -a):
        check_operator(op, batches=((2,),), pinv=True, cg_pinv=False)


@pytest.mark.parametrize("spec", list(EXAMPLES.values()) + COMPOSITIONS[:1])
def test_cuda_agreement(spec):
    check_cuda_agreement(from_spec(spec, SHAPE), torch.complex64)
