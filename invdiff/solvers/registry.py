"""Solver discovery through the ``invdiff.solvers`` entry-point group (read once, cached).

A duplicate name warns and the first wins; a solver whose module fails to import raises its
ImportError when requested by name (the other solvers stay usable).
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points

from invdiff.solvers.result import Solver

GROUP = "invdiff.solvers"


class UnknownSolverError(KeyError):
    """No solver of that name is registered."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


@lru_cache(maxsize=1)
def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        if ep.name in found and found[ep.name].value != ep.value:
            warnings.warn(
                f"solver {ep.name!r} registered twice ({found[ep.name].value}, {ep.value}); "
                "using the first",
                stacklevel=2,
            )
            continue
        found.setdefault(ep.name, ep)
    return found


def list_solvers() -> list[str]:
    """Names of the registered solvers, sorted."""
    return sorted(_entry_points())


def get_solver(name: str) -> Solver:
    """The solver function registered as ``name``.

    Raises:
        UnknownSolverError: unknown name (the message lists the known ones).
        ImportError: the solver's module fails to import.
    """
    eps = _entry_points()
    if name not in eps:
        raise UnknownSolverError(
            f"unknown solver {name!r}; known solvers: {', '.join(sorted(eps)) or '(none)'}"
        )
    return eps[name].load()
