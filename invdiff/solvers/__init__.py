"""Solvers for ``y = A x + n`` with a diffusion prior, and baselines, behind one signature.

See :mod:`invdiff.solvers.result` for the shared signature and conventions (measurements and
results in the prior's intensity range), :mod:`invdiff.solvers.registry` to pick a solver by name,
and :func:`invdiff.solvers.phase.solve_with_phase` for complex measurements with a phase.
"""

from invdiff.solvers.problem import SamplingError, SolverInputError
from invdiff.solvers.registry import get_solver, list_solvers
from invdiff.solvers.result import Solver, SolveResult

__all__ = [
    "SamplingError",
    "SolveResult",
    "Solver",
    "SolverInputError",
    "get_solver",
    "list_solvers",
]
