"""CPU cost of the prior's network per image: glibc's allocator as it is versus told to keep freed
memory (:mod:`invdiff.allocator`), one network call versus the solvers' chunked calls
(:func:`invdiff.solvers.loop.predict_eps`), over batch sizes.

Each configuration runs in a fresh process (the allocator setting is process-wide and cannot be
undone), times ``--calls`` calls after one untimed call and prints milliseconds per image; the
last column of the table is the speed-up of the ``invdiff`` command's setting (kept memory,
chunked) over a plain script's (system allocator, one call). Usage::

    python benchmarks/cpu_eval.py                       # batches 1, 8, 32, 2 threads
    python benchmarks/cpu_eval.py --batches 4,16,64 --threads 8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from rich.console import Console
from rich.table import Table


def child(malloc: str, batch: int, chunked: bool, threads: int, calls: int) -> None:
    """Time the default prior's eps network in this process and print ``{"ms": ...}``."""
    os.environ["INVDIFF_MALLOC"] = malloc
    from invdiff.allocator import keep_freed_memory

    keep_freed_memory()
    import torch

    from invdiff.priors.registry import resolve_prior
    from invdiff.solvers.loop import predict_eps
    from invdiff.solvers.steps import schedule

    torch.set_num_threads(threads)
    prior = resolve_prior("default", "cpu")
    step = schedule(prior, 2, "uniform")[0]
    x = torch.randn(batch, 1, 128, 128, generator=torch.Generator().manual_seed(0))
    t = torch.tensor(step.t)
    call = (lambda: predict_eps(prior, x, step)) if chunked else (lambda: prior.eps(x, t))
    with torch.no_grad():
        call()
        t0 = time.perf_counter()
        for _ in range(calls):
            call()
    print(json.dumps({"ms": (time.perf_counter() - t0) / calls / batch * 1000}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", default="1,8,32", help="comma-separated batch sizes")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calls", type=int, default=3, help="timed calls per configuration")
    ap.add_argument("--child", nargs=3, metavar=("MALLOC", "BATCH", "CHUNKED"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        malloc, batch, chunked = args.child
        child(malloc, int(batch), chunked == "1", args.threads, args.calls)
        return
    configs = [("system", False), ("system", True), ("keep", False), ("keep", True)]
    table = Table(title=f"eps network, default prior, 128x128, {args.threads} CPU threads "
                        "(ms per image)")
    table.add_column("batch", justify="right")
    for malloc, chunked in configs:
        table.add_column(f"{malloc} malloc, {'chunked' if chunked else 'one call'}",
                         justify="right")
    table.add_column("speed-up", justify="right")
    for batch in (int(b) for b in args.batches.split(",")):
        ms = []
        for malloc, chunked in configs:
            out = subprocess.run(
                [sys.executable, __file__, "--threads", str(args.threads), "--calls",
                 str(args.calls), "--child", malloc, str(batch), "1" if chunked else "0"],
                check=True, capture_output=True, text=True)
            ms.append(json.loads(out.stdout.strip().splitlines()[-1])["ms"])
        table.add_row(str(batch), *(f"{m:.1f}" for m in ms), f"{ms[0] / ms[3]:.2f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
