"""Training throughput, peak memory and eps-network latency of the VDM presets.

For each preset (default: ``default`` and ``large``), device (CPU, and CUDA where available) and
batch size (default 1, 2, 4, 8, 16, 32) it measures, on random 128x128 images:

* training images/s: full steps (VDM loss, backward, AdamW) after ``--warmup`` untimed steps;
* peak memory: on CUDA ``torch.cuda.max_memory_allocated`` of the step; on CPU the peak resident
  set size of a fresh process that ran only that configuration (so it includes the Python and
  torch baseline, reported separately as "baseline");
* eps latency: one ``VDM.eps`` forward under ``no_grad``, in milliseconds per image.

Each CPU configuration runs in its own process (peak RSS cannot be reset), with glibc's allocator
set as the ``invdiff`` command sets it (``--malloc keep``, :mod:`invdiff.allocator`) and/or left at
glibc's defaults (``--malloc system``). Usage::

    python benchmarks/train.py                          # everything (slow on CPU for 'large')
    python benchmarks/train.py --presets default --batch-sizes 1,4,16 --steps 3 --bf16
    python benchmarks/train.py --presets default --batch-sizes 8,16,32 --malloc keep,system
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import time

import torch
from rich.console import Console
from rich.table import Table

from invdiff.allocator import ENV_VAR, keep_freed_memory
from invdiff.priors.config import VDMConfig
from invdiff.priors.vdm import VDM


def measure(preset: str, device: str, batch: int, steps: int, warmup: int, bf16: bool,
            image_size: int) -> dict[str, float]:
    """Train-step images/s, peak memory (MiB) and eps latency (ms/image) of one configuration."""
    dev = torch.device(device)
    torch.manual_seed(0)
    cfg = VDMConfig.preset(preset, image_size=image_size)
    model = VDM(cfg).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator(dev).manual_seed(0)
    x = torch.rand(batch, *cfg.image_shape, generator=g, device=dev) * 2 - 1
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16)

    def step() -> None:
        with autocast:
            loss = model.loss(x, g).objective.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    _sync(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(dev)
    train_ips = batch * steps / (time.perf_counter() - t0)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    model.eval()
    t = torch.full((batch,), 0.5, device=dev)
    with torch.no_grad(), autocast:
        for _ in range(max(1, warmup)):
            model.eps(x, t)
        _sync(dev)
        t0 = time.perf_counter()
        for _ in range(steps):
            model.eps(x, t)
        _sync(dev)
    eps_ms = (time.perf_counter() - t0) / (steps * batch) * 1e3
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return {"images_per_s": train_ips, "peak_mib": peak, "eps_ms_per_image": eps_ms,
            "params_m": params}


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _cpu_in_subprocess(args: argparse.Namespace, preset: str, batch: int,
                       malloc: str) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--one", json.dumps(
        {"preset": preset, "device": "cpu", "batch": batch, "steps": args.steps,
         "warmup": args.warmup, "bf16": args.bf16, "image_size": args.image_size}),
           "--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         env=dict(os.environ, **{ENV_VAR: malloc}))
    return json.loads(out.stdout.strip().splitlines()[-1])


def _baseline_rss_mib() -> float:
    code = ("import resource, torch, invdiff.priors.vdm; "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", default="default,large")
    p.add_argument("--batch-sizes", default="1,2,4,8,16,32")
    p.add_argument("--devices", default="auto", help="comma list of cpu,cuda or 'auto'")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--malloc", default="keep",
                   help="comma list of CPU allocator settings: keep (as invdiff sets it), system")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if not set(args.malloc.split(",")) <= {"keep", "system"}:
        p.error(f"--malloc takes keep and/or system, got {args.malloc!r}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:  # child process: one CPU configuration, allocator set by the parent's --malloc
        keep_freed_memory()
        print(json.dumps(measure(**json.loads(args.one))))
        return
    devices = (["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
               if args.devices == "auto" else args.devices.split(","))
    console = Console()
    table = Table(title=f"VDM training at {args.image_size}x{args.image_size}"
                        f"{' (bf16 autocast)' if args.bf16 else ''}, {torch.get_num_threads()} "
                        "CPU threads")
    for col in ("preset", "params (M)", "device", "malloc", "batch", "train img/s",
                "peak memory (MiB)",
                "eps ms/image"):
        table.add_column(col, justify="right")
    for preset in args.presets.split(","):
        for device in devices:
            mallocs = args.malloc.split(",") if device == "cpu" else ["-"]
            for batch, malloc in itertools.product(
                    (int(b) for b in args.batch_sizes.split(",")), mallocs):
                if device == "cpu":
                    r = _cpu_in_subprocess(args, preset, batch, malloc)
                else:
                    r = measure(preset, device, batch, args.steps, args.warmup, args.bf16,
                                args.image_size)
                table.add_row(preset, f"{r['params_m']:.1f}", device, malloc, str(batch),
                              f"{r['images_per_s']:.1f}", f"{r['peak_mib']:.0f}",
                              f"{r['eps_ms_per_image']:.1f}")
                console.print(f"{preset} {device} {malloc} batch {batch}: {r}", highlight=False)
    console.print(table)
    if "cpu" in devices:
        console.print(f"CPU peak memory is the peak RSS of a process that ran one "
                      f"configuration; the baseline (python + torch + invdiff) is "
                      f"{_baseline_rss_mib():.0f} MiB.")


if __name__ == "__main__":
    main()
