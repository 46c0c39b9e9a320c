"""kcrop forward + adjoint: invdiff (torch) against the same sigpy.linop, in one run.

    .venv/bin/python benchmarks/operators.py [--batch 64] [--size 128] [--crop 64] [--repeats 7]
                                             [--threads 1,2]

Both sides get the same complex128 batch; the sigpy operator is
``Resize(crop) * FFT(axes=(-2, -1), center=True)`` and its ``.H`` (numpy's FFT, one thread).
Reports the median wall time of ``A.H(A(x))`` over ``repeats`` runs (after one warm-up) for each
torch thread count, and the ratio sigpy / torch. The load average is printed because on a shared
machine torch's multi-threaded FFT suffers most from competing processes: OpenMP threads that
spin-wait for a descheduled partner; run with ``OMP_WAIT_POLICY=PASSIVE`` there.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import sigpy
import torch
from rich.console import Console
from rich.table import Table

from invdiff.operators import from_spec


def median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (FFT plans, allocator)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dtype", choices=["complex64", "complex128"], default="complex128")
    parser.add_argument("--threads", default="1,2", help="torch thread counts, comma separated")
    args = parser.parse_args()

    shape, crop = (args.batch, args.size, args.size), (args.batch, args.crop, args.crop)
    rng = np.random.default_rng(0)
    x_np = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(args.dtype)
    x_t = torch.from_numpy(x_np)

    op = from_spec(f"kcrop:{args.crop}", (args.size, args.size))
    ref = sigpy.linop.Resize(crop, shape) * sigpy.linop.FFT(shape, axes=(-2, -1), center=True)
    np.testing.assert_allclose(op.H(op(x_t)).numpy(), ref.H(ref(x_np)), atol=1e-4)

    t_sigpy = median_time(lambda: ref.H(ref(x_np)), args.repeats)
    rows = []
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        rows.append((f"invdiff (torch, {threads} thread{'s' * (threads > 1)})",
                     median_time(lambda: op.H(op(x_t)), args.repeats)))
    rows.append(("sigpy.linop (numpy)", t_sigpy))

    table = Table(title=f"kcrop:{args.crop} forward + adjoint, {args.batch} x {args.size}^2 "
                  f"{args.dtype}, torch {torch.__version__}, sigpy {sigpy.__version__}")
    table.add_column("implementation")
    table.add_column("median time [ms]", justify="right")
    table.add_column("images / s", justify="right")
    table.add_column("sigpy time / this", justify="right")
    for name, t in rows:
        table.add_row(name, f"{1e3 * t:.1f}", f"{args.batch / t:.0f}", f"{t_sigpy / t:.2f}x")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    table.caption = (f"{os.cpu_count()} CPU cores, 1-min load average {load:.1f}, "
                     f"OMP_WAIT_POLICY={policy}")
    Console().print(table)


if __name__ == "__main__":
    main()
