"""Prior discovery: built-ins and plugins through the ``invdiff.priors`` entry-point group.

An entry point names a callable ``(device: str) -> Prior``. The group is read once and cached
(:func:`reload_plugins` re-reads it after installing a plugin). A duplicate name warns; a
built-in wins over a plugin, else the first found (:mod:`invdiff.plugins`). A plugin whose
module fails to import warns and is skipped by :func:`list_priors`, and naming it in
:func:`resolve_prior` raises the import failure.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from functools import cache, lru_cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from invdiff import plugins
from invdiff.plugins import by_name
from invdiff.priors.base import Prior
from invdiff.priors.checkpoint import load_prior

GROUP = "invdiff.priors"
DEFAULT = "default"


class UnknownPriorError(ValueError):
    """Neither an existing checkpoint file nor a registered prior name."""


class PriorPluginError(ImportError):
    """A registered prior plugin could not be imported."""


@lru_cache(maxsize=1)
def _entry_points() -> dict[str, EntryPoint]:
    return by_name(entry_points(group=GROUP), "prior")


@cache
def _load(name: str) -> Callable[[str], Prior]:
    return plugins.load(_entry_points()[name], "prior", PriorPluginError)


def reload_plugins() -> None:
    """Forget the cached entry points (after installing or removing a plugin)."""
    _entry_points.cache_clear()
    _load.cache_clear()


def list_priors() -> dict[str, str]:
    """``{name: description}`` of the priors that import; broken plugins warn and are skipped.

    The description is the first line of the entry point's docstring (its ``module:attr`` when
    it has none), as :func:`invdiff.operators.list_operators` does for operators.
    """
    out: dict[str, str] = {}
    for name, ep in sorted(_entry_points().items()):
        try:
            factory = _load(name)
        except PriorPluginError as err:
            warnings.warn(f"skipping {err}", stacklevel=2)
            continue
        doc = (getattr(factory, "__doc__", None) or "").strip()
        out[name] = doc.splitlines()[0] if doc else ep.value
    return out


def resolve_prior(name_or_path: str | os.PathLike[str] | None, device: str = "cpu") -> Prior:
    """Turn a user's prior argument into a :class:`Prior` on ``device``.

    ``None`` or ``"default"`` give the shipped default prior; an existing file is loaded with
    :func:`~invdiff.priors.checkpoint.load_prior`; any other string is an entry-point name in
    the ``invdiff.priors`` group.

    Raises:
        UnknownPriorError: not a file and not a registered name (the message lists the names).
        PriorPluginError: the named plugin fails to import.
        TypeError: the plugin returned something that is not a :class:`Prior`.
    """
    if name_or_path is None:
        name_or_path = DEFAULT
    if Path(name_or_path).is_file():
        return load_prior(name_or_path, device=device)
    name = str(name_or_path)
    if name not in _entry_points():
        known = ", ".join(sorted(_entry_points())) or "(none)"
        raise UnknownPriorError(
            f"{name!r} is neither an existing checkpoint file nor a registered prior; "
            f"known priors: {known}"
        )
    prior = _load(name)(device)
    if not isinstance(prior, Prior):
        raise TypeError(
            f"prior plugin {name!r} returned {type(prior).__name__}, expected an invdiff Prior"
        )
    return prior
