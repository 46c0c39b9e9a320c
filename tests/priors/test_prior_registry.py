"""Prior registry: default entry point, checkpoint paths, an installed plugin, broken plugins."""

from __future__ import annotations

import importlib
import importlib.metadata
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from invdiff.priors import default as default_module
from invdiff.priors import registry
from invdiff.priors.base import Prior
from invdiff.priors.checkpoint import save_prior
from invdiff.priors.default import DefaultPriorMissingError
from invdiff.priors.vdm import VDMPrior

PLUGIN_SRC = Path(__file__).resolve().parents[1] / "plugins" / "tiny_prior_plugin"


@pytest.fixture(scope="session")
def tiny_plugin(tmp_path_factory) -> Iterator[str]:
    """Install the tiny plugin distribution into a temporary folder put on ``sys.path``.

    ``pip install --target`` keeps the interpreter's environment untouched (a plugin installed
    into the venv would show up in every user's ``invdiff priors list``); ``importlib.metadata``
    finds the distribution's entry points through ``sys.path`` like any installed plugin.
    """
    src = tmp_path_factory.mktemp("plugin") / "tiny_prior_plugin"  # keep build files out
    shutil.copytree(PLUGIN_SRC, src)
    target = tmp_path_factory.mktemp("site")
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
           "--no-index", "--target", str(target), str(src)]
    subprocess.run(cmd, check=True, capture_output=True)
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    registry.reload_plugins()
    try:
        yield "tiny-test-prior"
    finally:
        sys.path.remove(str(target))
        sys.modules.pop("tiny_prior_plugin", None)
        importlib.invalidate_caches()
        registry.reload_plugins()


@pytest.fixture
def fresh_registry():
    registry.reload_plugins()
    yield
    registry.reload_plugins()


def test_installed_plugin_resolves_by_name(tiny_plugin, fresh_registry):
    assert registry.list_priors()[tiny_plugin].startswith("Standard normal data on 4 x 4 images")
    prior = registry.resolve_prior(tiny_plugin)
    assert isinstance(prior, Prior) and prior.image_shape == (1, 4, 4)
    x_t = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    _, sigma = prior.alpha_sigma(torch.tensor(0.5))
    torch.testing.assert_close(prior.eps(x_t, torch.tensor(0.5)), sigma * x_t)


def test_builtin_default_is_listed_with_its_description(fresh_registry):
    assert registry.list_priors()["default"].startswith("The shipped default prior: a VDM")


def test_missing_default_weights_give_clear_error(fresh_registry, monkeypatch, tmp_path):
    monkeypatch.setattr(default_module, "DEFAULT_WEIGHTS", tmp_path / "default.safetensors")
    for name in (None, "default"):
        with pytest.raises(DefaultPriorMissingError, match="not shipped yet"):
            registry.resolve_prior(name)


def test_default_loads_shipped_weights(fresh_registry, monkeypatch, tmp_path, tiny_vdm):
    weights = tmp_path / "default.safetensors"
    save_prior(weights, tiny_vdm)
    monkeypatch.setattr(default_module, "DEFAULT_WEIGHTS", weights)
    prior = registry.resolve_prior(None)
    assert isinstance(prior, VDMPrior) and prior.config == tiny_vdm.config


def test_checkpoint_path_resolves(tmp_path, tiny_vdm, fresh_registry):
    path = tmp_path / "vdm.ckpt"
    save_prior(path, tiny_vdm)
    for arg in (path, str(path)):
        prior = registry.resolve_prior(arg)
        assert isinstance(prior, VDMPrior) and prior.image_shape == (1, 16, 16)


def test_unknown_name_lists_known_priors(fresh_registry):
    with pytest.raises(registry.UnknownPriorError, match=r"known priors: .*default"):
        registry.resolve_prior("no-such-prior")


def _with_extra(monkeypatch, *extra: importlib.metadata.EntryPoint) -> None:
    real = registry.entry_points

    def fake(group: str):
        return [*real(group=group), *extra]

    monkeypatch.setattr(registry, "entry_points", fake)
    registry.reload_plugins()


def test_broken_plugin_warns_and_is_skipped(monkeypatch, fresh_registry):
    broken = importlib.metadata.EntryPoint(
        name="broken", value="invdiff_no_such_module_xyz:load", group=registry.GROUP
    )
    _with_extra(monkeypatch, broken)
    with pytest.warns(UserWarning, match="'broken'.*failed to import"):
        names = registry.list_priors()
    assert "broken" not in names and "default" in names
    with pytest.raises(registry.PriorPluginError, match="ModuleNotFoundError"):
        registry.resolve_prior("broken")


def test_duplicate_plugin_warns_first_wins(monkeypatch, fresh_registry):
    dup = importlib.metadata.EntryPoint(
        name="default", value="invdiff_other:load", group=registry.GROUP
    )
    _with_extra(monkeypatch, dup)
    with pytest.warns(RuntimeWarning, match="registered twice"):
        names = registry.list_priors()
    assert names["default"].startswith("The shipped default prior")


def test_a_plugin_found_first_cannot_replace_the_default_prior(monkeypatch, fresh_registry):
    impostor = importlib.metadata.EntryPoint(name="default", value="invdiff_other:load",
                                             group=registry.GROUP)
    real = list(importlib.metadata.entry_points(group=registry.GROUP))
    monkeypatch.setattr(registry, "entry_points", lambda group: [impostor, *real])
    registry.reload_plugins()
    with pytest.warns(RuntimeWarning, match="a plugin cannot replace a built-in"):
        names = registry.list_priors()
    assert names["default"].startswith("The shipped default prior")


def test_plugin_returning_non_prior_is_a_type_error(monkeypatch, fresh_registry):
    odd = importlib.metadata.EntryPoint(name="odd", value="builtins:str", group=registry.GROUP)
    _with_extra(monkeypatch, odd)
    with pytest.raises(TypeError, match="expected an invdiff Prior"):
        registry.resolve_prior("odd")


def test_listing_falls_back_to_the_entry_point_without_a_docstring(
    monkeypatch, fresh_registry, tmp_path
):
    (tmp_path / "nodoc_prior_mod.py").write_text("def load(device='cpu'):\n    raise SystemExit\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = importlib.metadata.EntryPoint(name="nodoc", value="nodoc_prior_mod:load",
                                       group=registry.GROUP)
    _with_extra(monkeypatch, ep)
    assert registry.list_priors()["nodoc"] == "nodoc_prior_mod:load"
