"""Resume files: round trip without pickle, clear errors for foreign, truncated, pickled files."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file

from invdiff.training.state import ResumeState, atomic_write, load_resume, save_resume


def _state() -> ResumeState:
    p = torch.nn.Parameter(torch.randn(3, 2))
    opt = torch.optim.AdamW([p], lr=1e-3, betas=(0.9, 0.95))
    p.grad = torch.ones_like(p)
    opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5)
    return ResumeState(
        model={"w": p.detach().clone()}, ema={"w": p.detach() * 0.5},
        optimizer=opt.state_dict(), scheduler=sched.state_dict(),
        rng={"gen_x": torch.Generator().manual_seed(3).get_state()},
        meta={"step": 7, "data": {"epoch": 1, "pos": 4, "n": 10}},
    )


def test_round_trip(tmp_path):
    s = _state()
    save_resume(tmp_path / "r.safetensors", s)
    t = load_resume(tmp_path / "r.safetensors")
    assert torch.equal(t.model["w"], s.model["w"]) and torch.equal(t.ema["w"], s.ema["w"])
    assert torch.equal(t.rng["gen_x"], s.rng["gen_x"])
    assert t.meta["step"] == 7 and t.meta["data"] == {"epoch": 1, "pos": 4, "n": 10}
    assert t.scheduler == s.scheduler
    assert t.optimizer["param_groups"] == s.optimizer["param_groups"]  # betas back to a tuple
    for k, v in s.optimizer["state"][0].items():
        assert torch.equal(t.optimizer["state"][0][k], v)
    q = torch.nn.Parameter(torch.zeros(3, 2))
    opt = torch.optim.AdamW([q], lr=0.1)
    opt.load_state_dict(t.optimizer)
    assert opt.param_groups[0]["lr"] == 1e-3 * 0.5 and opt.param_groups[0]["betas"] == (0.9, 0.95)


def test_pickle_truncated_and_foreign_files_are_refused(tmp_path):
    pk = tmp_path / "p.safetensors"
    pk.write_bytes(pickle.dumps({"w": torch.zeros(2)}))
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_resume(pk)
    save_resume(tmp_path / "r.safetensors", _state())
    data = (tmp_path / "r.safetensors").read_bytes()
    (tmp_path / "t.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_resume(tmp_path / "t.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "f.safetensors"))
    with pytest.raises(ValueError, match="not an invdiff resume file"):
        load_resume(tmp_path / "f.safetensors")


@pytest.mark.parametrize(("meta", "tensors"), [
    ("not json", {}),
    ('{"version": 99}', {}),
    ('{"version": 1}', {}),  # no optimiser settings
    ('{"version": 1, "optim_scalars": {}, "param_groups": [], "scheduler": {}}',
     {"odd.w": torch.zeros(1)}),
])
def test_malformed_resume_files_are_refused(tmp_path, meta, tensors):
    path = tmp_path / "r.safetensors"
    save_file(tensors or {"model.w": torch.zeros(1)}, str(path), metadata={"invdiff.resume": meta})
    with pytest.raises(ValueError, match="malformed invdiff resume file"):
        load_resume(path)


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "x.bin"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]
