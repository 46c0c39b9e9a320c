"""Progress display (rich) and the JSON-lines training log.

On a terminal a rich progress bar shows step, loss, bits/dim, images/s, validation bits/dim and
the ETA (the sooner of the step limit and the time budget). When output is not a terminal (a
run under ``nohup``), one plain line is printed every ``log_every`` steps instead.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from invdiff.io.atomic import write_atomic


class JsonlLog:
    """Append-only log, one JSON object per line (``step``, ``loss``, ``bpd``, ``val_bpd``...).

    With ``replace`` (a run started with ``overwrite``) an existing file at ``path`` belongs to
    an earlier run: it is never appended to. Rows are held in memory until :meth:`commit` (called
    at the run's first checkpoint) writes them over it atomically; later rows are appended.
    """

    def __init__(self, path: Path, enabled: bool = True, replace: bool = False):
        self.path, self.enabled = path, enabled
        self._pending: list[str] | None = None
        if enabled:
            path.parent.mkdir(parents=True, exist_ok=True)
            if replace and (path.exists() or path.is_symlink()):
                self._pending = []

    def commit(self) -> None:
        """Write rows held back by ``replace`` over the old file (atomically); then append."""
        if self._pending is None:
            return
        text, self._pending = "".join(self._pending), None
        write_atomic(self.path, lambda tmp: tmp.write_text(text))

    def drop_after(self, step: int) -> None:
        """Remove rows with ``step`` beyond ``step`` (a resumed run will write them again)."""
        if not self.enabled or not self.path.exists():
            return
        lines = self.path.read_text().splitlines()
        kept = [ln for ln in lines if ln.strip() and json.loads(ln).get("step", 0) <= step]
        if len(kept) != len(lines):
            self.path.write_text("".join(ln + "\n" for ln in kept))

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if self._pending is not None:
            self._pending.append(json.dumps(row) + "\n")
            return
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")


class RunDisplay:
    """Live progress of a run; a no-op when ``enabled`` is false (non-zero ranks, tests)."""

    def __init__(self, start_step: int, max_steps: int, max_minutes: float | None,
                 enabled: bool = True, console: Console | None = None):
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self.max_steps, self.max_minutes = max_steps, max_minutes
        self.start_step, self.t0 = start_step, time.monotonic()
        self.val_bpd: float | None = None
        self._progress: Progress | None = None
        if enabled and self.console.is_terminal:
            self._progress = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"), TimeElapsedColumn(),
                TextColumn("ETA {task.fields[eta]}"), console=self.console,
            )
            self._task = self._progress.add_task("train", total=max_steps, completed=start_step,
                                                 stats="", eta="?")
            self._progress.start()

    def eta_seconds(self, step: int) -> float | None:
        """Seconds until the step limit or the time budget, whichever comes first."""
        elapsed = time.monotonic() - self.t0
        done = step - self.start_step
        out = None
        if done > 0:
            out = elapsed / done * (self.max_steps - step)
        if self.max_minutes is not None:
            left = max(self.max_minutes * 60.0 - elapsed, 0.0)
            out = left if out is None else min(out, left)
        return out

    def update(self, step: int, loss: float, bpd: float, images_per_s: float, lr: float) -> None:
        if not self.enabled:
            return
        val = f" val {self.val_bpd:.3f}" if self.val_bpd is not None else ""
        stats = f"loss {loss:.4f} bpd {bpd:.3f}{val} {images_per_s:.1f} img/s lr {lr:.2e}"
        eta = _fmt_seconds(self.eta_seconds(step))
        if self._progress is not None:
            self._progress.update(self._task, completed=step, stats=stats, eta=eta)
        else:
            self.console.print(f"step {step}/{self.max_steps} {stats} ETA {eta}", highlight=False)

    def validation(self, step: int, val_bpd: float) -> None:
        self.val_bpd = val_bpd
        self.message(f"step {step}: validation {val_bpd:.4f} bits/dim (EMA)")

    def message(self, text: str) -> None:
        if self.enabled:
            self.console.print(text, highlight=False)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"
