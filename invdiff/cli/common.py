"""What every command shares: the ``--debug`` flag, one-line errors with exit code 2, consoles."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.console import Console

#: Exit status for bad input (the same as click's usage errors).
EXIT_BAD_INPUT = 2
#: Exit status after Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130

#: Errors that mean "bad input" and are reported in one line without a traceback (an
#: ImportError here is a plugin that fails to import).
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, TypeError, OSError, LookupError, ImportError
)
#: Exit status of a run that failed on valid input (e.g. NaN during sampling).
EXIT_FAILED = 1

Debug = Annotated[
    bool, typer.Option("--debug", help="Show the full traceback on errors.", show_default=False)
]

# soft_wrap: a message stays one line (for logs and grep) however narrow the terminal or pipe
console = Console(stderr=True, soft_wrap=True)
stdout = Console(soft_wrap=True)


def note(message: str) -> None:
    """Print ``message`` as one unwrapped line on stderr."""
    sys.stderr.write(" ".join(str(message).split()) + "\n")
    sys.stderr.flush()


def show_warnings_as_notes() -> None:
    """Print Python warnings (e.g. the pipeline's GeometryWarning) as one ``warning: ...`` line
    on stderr, without the source line Python adds."""
    import warnings

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        note(f"warning: {message}")

    warnings.showwarning = show


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print ``error: message`` as one line on stderr and return the exit to raise."""
    note(f"error: {message}")
    return typer.Exit(code)


@contextlib.contextmanager
def user_errors(
    debug: bool, memory_hint: str = "use fewer --samples or a smaller --batch"
) -> Iterator[None]:
    """Turn bad-input exceptions into one line on stderr and exit code 2 (re-raise with debug);
    out of memory is one line too, with ``memory_hint`` (the command's options that use less)."""
    try:
        yield
    except USER_ERRORS as exc:
        if debug:
            raise
        message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        raise fail(message or type(exc).__name__) from None
    except ArithmeticError as exc:  # e.g. solvers' SamplingError: NaN at a named step
        if debug:
            raise
        raise fail(f"{type(exc).__name__}: {exc}", EXIT_FAILED) from None
    except (MemoryError, RuntimeError) as exc:  # numpy's and torch's (CUDA) out-of-memory errors
        text = str(exc).lower()
        out_of_memory = (isinstance(exc, MemoryError) or "OutOfMemory" in type(exc).__name__
                         or "can't allocate memory" in text or "out of memory" in text)
        if debug or not out_of_memory:  # torch's CPU and MPS allocators raise RuntimeError
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise fail(f"out of memory ({first}); {memory_hint}", EXIT_FAILED) from None


def parse_shape(text: str) -> tuple[int, int]:
    """``"37x31"`` -> ``(37, 31)``; ``"32"`` -> ``(32, 32)``."""
    parts = text.lower().split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise typer.BadParameter(f"expected HxW such as 37x31, got {text!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise typer.BadParameter(f"expected HxW with positive sizes, got {text!r}")
    return values  # type: ignore[return-value]
