"""Spec strings, the entry-point registry, plugins and bad input."""

import warnings
from importlib.metadata import EntryPoint

import numpy as np
import pytest
import torch

from invdiff.operators import LinearOperator, from_spec, list_operators, spec
from invdiff.operators.fourier import KCrop
from invdiff.operators.testing import check_operator

BUILTINS = {"identity", "fft", "kcrop", "kmask", "sense", "downsample"}


def test_builtins_are_registered_through_entry_points():
    assert BUILTINS <= set(list_operators())
    assert all(list_operators()[name] for name in BUILTINS)  # one-line descriptions


def test_chain_applies_left_to_right():
    op = from_spec("sense:birdcage=2|kcrop:8x6", (16, 15))
    assert op.ishape == (16, 15) and op.oshape == (2, 8, 6)
    x = torch.randn(16, 15, dtype=torch.complex128, generator=torch.Generator().manual_seed(0))
    sense = from_spec("sense:birdcage=2", (16, 15))
    torch.testing.assert_close(op(x), KCrop((16, 15), (8, 6))(sense(x)))


def test_chain_passes_the_previous_output_shape():
    op = from_spec("downsample:2|kcrop:4", (16, 12))
    assert op.oshape == (4, 4) and op.ishape == (16, 12)
    with pytest.raises(ValueError, match=r"larger than the image \(8, 6\)"):
        from_spec("downsample:2|kcrop:7", (16, 12))


@pytest.mark.parametrize(("text", "message"), [
    ("blur:3", r"unknown operator 'blur'.*known: .*fft.*kcrop"),
    ("", "non-empty"),
    ("kcrop", "expected a size"),
    ("kcrop:", "expected a size"),
    ("kcrop:32x", "expected a size"),
    ("kcrop:axb", "expected a size"),
    ("kcrop:0", "positive"),
    ("kcrop:-4", "positive"),
    ("kcrop:17", r"kcrop size \(17, 17\) is larger than the image \(16, 16\)"),
    ("kcrop:8x17", "larger than the image"),
    ("fft:3", "takes no arguments"),
    ("identity:x", "takes no arguments"),
    ("downsample:0", "positive integer, got 0"),
    ("downsample:1.5", "integer factor"),
    ("downsample:17", "larger than the image"),
    ("kmask:acs=4", "expected 'accel=R'"),
    ("kmask:accel=four", "accel='four' is not a valid float"),
    ("kmask:accel=0.5", "accel must be a finite number >= 1, got 0.5"),
    ("kmask:accel=inf", "accel must be a finite number >= 1, got inf"),
    ("kmask:accel=nan", "accel must be a finite number >= 1, got nan"),
    ("kmask:accel=4,acs=40", r"acs must be in \[0, 16\]"),
    ("kmask:accel=4,speed=2", "unknown option 'speed'"),
    ("kmask:accel=4,accel=2", "given twice"),
    ("kmask:accel", "expected 'key=value'"),
    ("kmask:accel=2,pattern=spiral", "pattern must be"),
    ("sense:birdcage=0", "positive integer"),
    ("sense:birdcage=2,calib=4", "only apply to espirit"),
    ("sense:", "exactly one"),
    ("fft||kcrop:8", "empty stage in spec 'fft||kcrop:8'"),
    ("kcrop:8|", "empty stage"),
    ("|fft", "empty stage"),
])
def test_malformed_specs_raise_clear_errors(text, message):
    with pytest.raises(ValueError, match=message):
        from_spec(text, (16, 16))


@pytest.mark.parametrize("shape", [(0, 16), (16, -1), (16,), "16", "16x16", (16.5, 16),
                                   (16, None)])
def test_bad_image_shape(shape):
    with pytest.raises(ValueError, match="image_shape"):
        from_spec("fft", shape)


def test_wrong_trailing_shape_names_expected_and_actual():
    op = from_spec("kcrop:8", (16, 15))
    with pytest.raises(ValueError, match=r"trailing shape \(16, 15\), got shape \(2, 16, 16\)"):
        op(torch.zeros(2, 16, 16))
    with pytest.raises(ValueError, match=r"trailing shape \(8, 8\), got shape \(7, 8\)"):
        op.adjoint(torch.zeros(7, 8, dtype=torch.complex64))
    with pytest.raises(ValueError, match="measurement of trailing shape"):
        op.pinv(torch.zeros(8, 7, dtype=torch.complex64))
    with pytest.raises(TypeError, match="real or complex float"):
        op(torch.zeros(16, 15, dtype=torch.int64))


def test_incompatible_composition_and_sum():
    with pytest.raises(ValueError, match="cannot compose"):
        from_spec("kcrop:8", (16, 16)) @ from_spec("kcrop:8", (16, 16))
    with pytest.raises(ValueError, match="cannot add"):
        from_spec("kcrop:8", (16, 16)) + from_spec("fft", (16, 16))


def test_mask_and_maps_files(tmp_path):
    mask = np.zeros((16, 15), dtype=bool)
    mask[::2] = True
    np.save(tmp_path / "mask.npy", mask)
    op = from_spec(f"kmask:file={tmp_path / 'mask.npy'}", (16, 15))
    assert torch.equal(op.mask, torch.from_numpy(mask))
    np.save(tmp_path / "rows.npy", mask[:, 0].astype(np.uint8))
    assert torch.equal(from_spec(f"kmask:file={tmp_path / 'rows.npy'}", (16, 15)).mask, op.mask)
    wrong = r"expected shape \(16, 16\) \(or \(16,\)\), got \(16, 15\)"
    with pytest.raises(ValueError, match=wrong):
        from_spec(f"kmask:file={tmp_path / 'mask.npy'}", (16, 16))
    np.save(tmp_path / "bad.npy", np.full((16, 15), 0.5))
    with pytest.raises(ValueError, match="0/1"):
        from_spec(f"kmask:file={tmp_path / 'bad.npy'}", (16, 15))
    with pytest.raises(ValueError, match="excludes other options"):
        from_spec(f"kmask:file={tmp_path / 'mask.npy'},accel=2", (16, 15))
    maps = np.ones((3, 16, 15), dtype=np.complex64)
    np.save(tmp_path / "maps.npy", maps)
    assert from_spec(f"sense:{tmp_path / 'maps.npy'}", (16, 15)).oshape == (3, 16, 15)
    with pytest.raises(ValueError, match=r"expected shape \(C, 16, 16\), got \(3, 16, 15\)"):
        from_spec(f"sense:file={tmp_path / 'maps.npy'}", (16, 16))


class _Negate(LinearOperator):
    """A tiny plugin operator: x -> -x."""

    def __init__(self, shape):
        super().__init__(shape, shape)

    def _apply(self, x):
        return -x

    def _adjoint_operator(self):
        return _Negate(self.ishape)


def negate_from_spec(args, image_shape):
    """negate: multiply by -1 (test plugin)."""
    return _Negate(image_shape)


@pytest.fixture
def fake_entry_points(monkeypatch):
    """Simulate installed plugins by replacing the entry-point discovery function."""
    real = list(spec._entry_points())

    def install(*extra):
        monkeypatch.setattr(spec, "_entry_points", lambda: [*real, *extra])
        spec.registry.cache_clear()

    yield install
    monkeypatch.undo()
    spec.registry.cache_clear()


def test_plugin_operator_is_found_and_conforms(fake_entry_points):
    here = __name__
    fake_entry_points(EntryPoint("negate", f"{here}:negate_from_spec", spec.GROUP))
    assert list_operators()["negate"] == "negate: multiply by -1 (test plugin)."
    op = from_spec("negate|kcrop:4", (9, 8))
    x = torch.randn(9, 8, dtype=torch.complex128)
    torch.testing.assert_close(op(x), -from_spec("kcrop:4", (9, 8))(x))
    check_operator(from_spec("negate", (9, 8)), batches=((2,),))
    with pytest.raises(ValueError, match="known: .*negate"):
        from_spec("nonexistent", (9, 8))


def test_broken_and_duplicate_plugins_warn_and_are_skipped(fake_entry_points):
    fake_entry_points(EntryPoint("broken", "no_such_module_xyz:factory", spec.GROUP),
                      EntryPoint("fft", f"{__name__}:negate_from_spec", spec.GROUP))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = list_operators()
    messages = " ".join(str(w.message) for w in caught)
    assert "broken" not in names and "failed to load" in messages
    assert "registered twice" in messages and names["fft"].startswith("fft: centred")


def test_a_plugin_found_first_cannot_replace_a_built_in(monkeypatch):
    """Discovery order depends on sys.path; a plugin's 'kcrop' must never become kcrop."""
    real = list(spec._entry_points())
    impostor = EntryPoint("kcrop", f"{__name__}:negate_from_spec", spec.GROUP)
    monkeypatch.setattr(spec, "_entry_points", lambda: [impostor, *real])
    spec.registry.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="a plugin cannot replace a built-in"):
            op = from_spec("kcrop:4", (8, 8))
        assert tuple(op.oshape) == (4, 4)
    finally:
        monkeypatch.undo()
        spec.registry.cache_clear()


def test_registry_is_read_once(fake_entry_points, monkeypatch):
    calls = []
    real = list(spec._entry_points())
    monkeypatch.setattr(spec, "_entry_points", lambda: calls.append(1) or real)
    spec.registry.cache_clear()
    list_operators()
    from_spec("fft", (8, 8))
    assert len(calls) == 1


def test_unreadable_mask_and_maps_files_name_the_file(tmp_path):
    """Missing, non-.npy, pickled and non-numeric files: one-line errors naming the file."""
    (tmp_path / "text.npy").write_text("0 1 0 1")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}] * 16, dtype=object), allow_pickle=True)
    np.save(tmp_path / "str.npy", np.array(["1"] * 16))
    np.savez(tmp_path / "arch.npz", mask=np.ones(16))
    cases = [
        ("missing.npy", FileNotFoundError, "not found"),
        ("text.npy", ValueError, "is not a .npy file"),
        ("arch.npz", ValueError, "is not a .npy file"),
        ("obj.npy", ValueError, "cannot read a numeric array"),
        ("str.npy", ValueError, "expected a numeric array, got dtype <U1"),
    ]
    for name, error, message in cases:
        path = tmp_path / name
        for text, what in ((f"kmask:file={path}", "kmask file"), (f"sense:{path}", "sense maps"),
                           (f"sense:espirit={path}", "espirit k-space")):
            with pytest.raises(error, match=f"{what}.*{name}") as info:
                from_spec(text, (16, 16))
            assert message in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_makes_complex_tells_kspace_from_image_domain_operators():
    assert from_spec("kcrop:8", (16, 16)).makes_complex()
    assert from_spec("downsample:2|kcrop:4", (16, 16)).makes_complex()
    assert not from_spec("downsample:2", (16, 16)).makes_complex()
    assert not from_spec("identity", (16, 16)).makes_complex("cpu")
