"""The ``invdiff`` command line: a typer app whose commands are thin wrappers over the library.

Each command lives in its own module of :mod:`invdiff.cli`; this module only assembles them.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from invdiff.allocator import keep_freed_memory
from invdiff.cli import demo, evaluate, listing, resample, simulate, solve, train
from invdiff.cli.common import EXIT_BAD_INPUT, note, show_warnings_as_notes

app = typer.Typer(
    name="invdiff",
    help="Inverse problems with diffusion priors: MR super-resolution from k-space and more.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from invdiff.manifest import environment

        env = environment()
        typer.echo(f"invdiff {env['invdiff']} (torch {env['torch']}, numpy {env['numpy']}, "
                   f"Python {env['python']}, git {env['git_commit'] or 'none'})")
        raise typer.Exit(0)


@app.callback()
def _options(
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="Show the versions a run manifest records, and exit.")] = False,
) -> None:
    """Inverse problems with diffusion priors: MR super-resolution from k-space and more."""


app.command("resample", epilog=resample.EPILOG)(resample.resample)
app.command("simulate", epilog=simulate.EPILOG)(simulate.simulate)
app.command("solve", epilog=solve.EPILOG)(solve.solve)
app.command("evaluate", epilog=evaluate.EPILOG)(evaluate.evaluate)
app.command("train", epilog=train.EPILOG)(train.train)
app.command("demo", epilog=demo.EPILOG)(demo.demo)

priors_app = typer.Typer(help="Diffusion priors.", no_args_is_help=True)
priors_app.command("list", epilog="Example: invdiff priors list")(listing.priors_list)
app.add_typer(priors_app, name="priors")

operators_app = typer.Typer(help="Forward operators.", no_args_is_help=True)
operators_app.command("list", epilog="Example: invdiff operators list")(listing.operators_list)
operators_app.command("check", epilog=listing.CHECK_EPILOG)(listing.operators_check)
app.add_typer(operators_app, name="operators")

solvers_app = typer.Typer(help="Solvers (posterior samplers and baselines).", no_args_is_help=True)
solvers_app.command("list", epilog="Example: invdiff solvers list")(listing.solvers_list)
app.add_typer(solvers_app, name="solvers")


def main() -> None:
    """Console-script entry point.

    Usage errors (a missing option, a value of the wrong type, an unknown command) are printed
    like every other bad input: one ``error: ...`` line on stderr, exit status 2, instead of
    typer's framed multi-line panel. Before any command runs, glibc is asked to keep freed memory
    (:func:`invdiff.allocator.keep_freed_memory`: network calls on the CPU up to 2.5x faster).
    """
    show_warnings_as_notes()
    try:
        keep_freed_memory()
    except ValueError as exc:
        note(f"error: {exc}")
        sys.exit(EXIT_BAD_INPUT)
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        note("error: aborted")
        sys.exit(1)
    except Exception as exc:  # click's UsageError and friends (typer vendors or re-exports click)
        exit_code = getattr(exc, "exit_code", None)
        if not (hasattr(exc, "format_message") and isinstance(exit_code, int)):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":  # `invdiff` or `invdiff operators` alone
            app()  # typer's own (rich) help text, exit status 2
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        note(f"error: {exc.format_message().rstrip('.')}{hint}")
        sys.exit(exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # python -m invdiff.cli.app (e.g. under torchrun)
    main()
