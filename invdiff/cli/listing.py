"""``invdiff priors|operators|solvers list`` and ``invdiff operators check``."""

from __future__ import annotations

import re
from typing import Annotated

import typer
from rich.table import Table

from invdiff.cli.common import Debug, fail, parse_shape, stdout, user_errors

CHECK_EPILOG = """\
Example: invdiff operators check "kcrop:16" --shape 37x31
"""


def operators_list() -> None:
    """List the registered operators (built-ins and plugins) with their descriptions."""
    from invdiff.operators import list_operators

    stdout.print(_table("operator", list_operators()))


def solvers_list() -> None:
    """List the registered solvers (built-ins and plugins) with their descriptions."""
    from invdiff.solvers.registry import get_solver, list_solvers

    rows = {}
    for name in list_solvers():
        try:
            rows[name] = summary(get_solver(name).__doc__)
        except Exception as exc:  # noqa: BLE001 (a broken plugin is listed, not fatal)
            rows[name] = f"[red]fails to load: {type(exc).__name__}: {exc}[/red]"
    stdout.print(_table("solver", rows))


def priors_list() -> None:
    """List the priors that can be named with --prior (built-ins and plugins)."""
    from invdiff.priors.registry import list_priors

    priors = list_priors()
    rows = priors if isinstance(priors, dict) else {name: "" for name in priors}
    rows = dict(rows)
    rows.setdefault("PATH", "a checkpoint file written by invdiff train (e.g. vdm.ckpt)")
    stdout.print(_table("prior", rows))


def operators_check(
    spec: Annotated[str, typer.Argument(help="Operator spec, e.g. kcrop:32 or a plugin's name.")],
    shape: Annotated[str, typer.Option(help="Image shape HxW the operator acts on.")],
    batch: Annotated[int, typer.Option(help="Leading batch size of the test inputs.")] = 2,
    seed: Annotated[int, typer.Option(help="Seed of the random test inputs.")] = 0,
    pinv: Annotated[bool, typer.Option(help="Also check pinv (slow for CG fallbacks).")] = True,
    debug: Debug = False,
) -> None:
    """Run the operator conformance kit (adjoint, linearity, normal, pinv, CPU/CUDA)."""
    import torch

    from invdiff.operators import from_spec
    from invdiff.operators.testing import check_operator

    hw = parse_shape(shape)
    if batch < 1:
        raise fail(f"--batch must be >= 1, got {batch}")
    with user_errors(debug):
        op = from_spec(spec, hw)
    stdout.print(f"{spec} on {hw[0]}x{hw[1]}: ishape {op.ishape} -> oshape {op.oshape}")
    try:
        check_operator(op, batches=((), (batch,)),
                       generator=torch.Generator().manual_seed(seed), pinv=pinv)
    except AssertionError as exc:
        if debug:
            raise
        stdout.print(f"[red]FAIL[/red] {exc}")
        raise typer.Exit(1) from None
    except Exception as exc:  # the operator itself raised: a failure of the operator, one line
        if debug:
            raise
        stdout.print(f"[red]FAIL[/red] the operator raised {type(exc).__name__}: {exc}")
        raise typer.Exit(1) from None
    cuda = torch.cuda.is_available()
    stdout.print("[green]PASS[/green] adjoint, linearity, normal, selection-unitary"
                 + (", pinv" if pinv else "") + (", CPU/CUDA agreement" if cuda else "")
                 + " in float32/complex64/float64/complex128"
                 + ("" if cuda else "; CPU/CUDA agreement not checked (no CUDA device)"))


def summary(doc: str | None) -> str:
    """The first paragraph of a docstring on one line, without reST roles (``:func:`f``` -> f).

    A summary that wraps onto a second docstring line is kept whole rather than cut mid-sentence.
    """
    paragraph = (doc or "").strip().split("\n\n")[0]
    text = " ".join(paragraph.split())
    return re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)


def _table(kind: str, rows: dict[str, str]) -> Table:
    table = Table()
    table.add_column(kind)
    table.add_column("description")
    for name, doc in rows.items():
        table.add_row(name, doc.replace("``", ""))
    return table
