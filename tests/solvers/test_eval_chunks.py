"""Network calls on a CPU are split into chunks (invdiff.solvers.loop.predict_eps)."""

from __future__ import annotations

import pytest
import torch

from invdiff.pipeline.orientation import ReorientedPrior, SliceOrientation
from invdiff.solvers import loop
from invdiff.solvers.registry import get_solver
from invdiff.solvers.steps import schedule


class _Recording:
    """Wraps a prior and records the batch size of every ``eps`` call."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def eps(self, x, t):
        self.calls.append(x.shape[0])
        return self.inner.eps(x, t)


def test_chunk_size_follows_image_size():
    assert loop.eval_chunk(torch.zeros(32, 1, 128, 128)) == 8
    assert loop.eval_chunk(torch.zeros(32, 2, 128, 128)) == 4
    assert loop.eval_chunk(torch.zeros(32, 1, 256, 256)) == 2
    assert loop.eval_chunk(torch.zeros(3, 1, 1024, 1024)) == 1  # never fewer than one image
    assert loop.eval_chunk(torch.zeros(32, 1, 128, 128, device="meta")) == 32  # not a CPU


def test_chunks_give_the_one_call_result(prior, monkeypatch):
    wrapped = _Recording(prior)
    monkeypatch.setattr(loop, "CPU_EVAL_VALUES", 3 * 16 * 16)
    x = torch.randn(7, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    st = schedule(prior, 4)[1]
    got = loop.predict_eps(wrapped, x, st)
    assert wrapped.calls == [3, 3, 1]
    want = prior.eps(x, torch.tensor(st.t, dtype=x.dtype))
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("solver", ["kspace-mix", "ddnm", "diffpir", "dps"])
@pytest.mark.parametrize("reoriented", [False, True])
def test_solver_result_does_not_depend_on_the_chunking(solver, reoriented, prior, kcrop,
                                                       monkeypatch):
    """Every network-guided solver (dps through the gradient of the chunked calls), also with
    the prior seen through a slice reorientation as ``invdiff solve`` uses it."""
    op = kcrop(8)
    x = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    y = op(x)
    inner = (ReorientedPrior(prior, SliceOrientation(transpose=True, flip_rows=True))
             if reoriented else prior)

    def run():
        wrapped = _Recording(inner)
        out = get_solver(solver)(op, y, wrapped, steps=5, n_samples=4,
                                 generator=torch.Generator().manual_seed(0))
        return out.samples, wrapped.calls

    whole, calls_whole = run()
    monkeypatch.setattr(loop, "CPU_EVAL_VALUES", 5 * 16 * 16)
    split, calls_split = run()
    assert set(calls_whole) == {12} and set(calls_split) == {5, 2}
    torch.testing.assert_close(split, whole)
