"""Solver discovery through the ``invdiff.solvers`` entry-point group (read once, cached).

A duplicate name warns; a built-in wins over a plugin, else the first found
(:mod:`invdiff.plugins`); a solver whose module fails to import raises its
ImportError when requested by name (the other solvers stay usable).
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points

from invdiff import plugins
from invdiff.plugins import by_name
from invdiff.solvers.result import Solver

GROUP = "invdiff.solvers"


class SolverPluginError(ImportError):
    """A registered solver could not be loaded (its module fails to import, or has no such
    attribute)."""


class UnknownSolverError(KeyError):
    """No solver of that name is registered."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


@lru_cache(maxsize=1)
def _entry_points() -> dict[str, EntryPoint]:
    return by_name(entry_points(group=GROUP), "solver")


def list_solvers() -> list[str]:
    """Names of the registered solvers, sorted."""
    return sorted(_entry_points())


def get_solver(name: str) -> Solver:
    """The solver function registered as ``name``.

    Raises:
        UnknownSolverError: unknown name (the message lists the known ones).
        SolverPluginError: the solver's module fails to import (any exception while loading).
    """
    eps = _entry_points()
    if name not in eps:
        raise UnknownSolverError(
            f"unknown solver {name!r}; known solvers: {', '.join(sorted(eps)) or '(none)'}"
        )
    return plugins.load(eps[name], "solver", SolverPluginError, verb="failed to load")
