"""Entry points by name, shared by the operator, prior and solver registries.

A name registered twice is resolved the same way everywhere: invdiff's own entry points win (a
plugin cannot silently replace a built-in such as ``kcrop`` or the ``default`` prior, which run
manifests identify by name and file digest); between two plugins the first found wins. Either
way a warning names both.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from importlib.metadata import EntryPoint
from typing import Any

#: The distribution whose entry points are the built-ins.
BUILTIN_DISTRIBUTION = "invdiff"


def by_name(entry_points: Iterable[EntryPoint], what: str) -> dict[str, EntryPoint]:
    """``{name: entry point}``, duplicates resolved as the module docstring says.

    Args:
        entry_points: the entry points of one group, in discovery order.
        what: ``"operator"``, ``"prior"`` or ``"solver"`` (for the warning).
    """
    found: dict[str, EntryPoint] = {}
    for ep in entry_points:
        old = found.get(ep.name)
        if old is None:
            found[ep.name] = ep
            continue
        if old.value == ep.value:  # the same package seen twice on the path
            continue
        keep = ep if is_builtin(ep) and not is_builtin(old) else old
        drop = old if keep is ep else ep
        why = "a plugin cannot replace a built-in" if is_builtin(keep) else "the first found wins"
        warnings.warn(f"{what} {ep.name!r} registered twice: using {keep.value}, ignoring "
                      f"{drop.value} ({why})", RuntimeWarning, stacklevel=3)
        found[ep.name] = keep
    return found


def is_builtin(ep: EntryPoint) -> bool:
    """Whether ``ep`` comes from invdiff's own distribution."""
    dist = getattr(ep, "dist", None)
    return dist is not None and (dist.name or "").lower() == BUILTIN_DISTRIBUTION


def load(ep: EntryPoint, what: str, error: type[Exception], verb: str = "failed to import") -> Any:
    """``ep.load()``; any exception while loading becomes one ``error`` line naming the plugin
    (``"<what> plugin 'name' (module:attr) <verb>: Type: message"``), a broken plugin's traceback
    kept as the cause."""
    try:
        return ep.load()
    except Exception as err:
        raise error(f"{what} plugin {ep.name!r} ({ep.value}) {verb}: "
                    f"{type(err).__name__}: {err}") from err
