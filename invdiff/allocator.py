"""Keep freed CPU memory inside the process, so that network calls stop page-faulting (glibc).

glibc's ``malloc`` serves large blocks with fresh ``mmap`` pages and returns them to the system on
``free``; its threshold for that adapts but never exceeds 32 MiB. A U-Net call on a batch of
128x128 images allocates many tensors larger than that, so on every call the kernel hands out and
zeroes those pages again. PyTorch's CPU performance guide recommends a caching allocator
(jemalloc, tcmalloc) for the same reason; this asks glibc for the same behaviour with
``mallopt``: no ``mmap`` for large blocks (``M_MMAP_MAX = 0``) and no trimming of the heap
(``M_TRIM_THRESHOLD = -1``). Measured on 2 cores (``python benchmarks/cpu_eval.py``): the default
prior's network took 30-34 ms per image at a batch of 8 and 61.0 at 32 in one call (33.0 in the
solvers' chunks of 8) with glibc's defaults, 25.2 and 24.8 with memory kept; CPU
training at its batch of 16 went from 9.1 to 14.1 images/s in fp32 and from 18.9 to 19.7 with
bf16 autocast, whose activations are half as large (``benchmarks/train.py --malloc keep,system``).

Costs and limits: memory the process frees (after a large volume is read, say) is reused by it
rather than given back before it exits; peak memory moved by -3 % to +14 % in the training
benchmark (batch 16 to 32). The settings govern the main thread's heap: other threads still
``mmap`` blocks larger than their 64 MiB heaps, and glibc still falls back to ``mmap`` when the
heap cannot grow, so no allocation that succeeded before can fail now. A preloaded allocator
(``LD_PRELOAD`` of jemalloc or tcmalloc) ignores the settings.

The ``invdiff`` command applies it at start. Scripts that import the library can call
:func:`keep_freed_memory` themselves. ``INVDIFF_MALLOC=system`` leaves the allocator as it is.
Off Linux/glibc nothing is changed.
"""

from __future__ import annotations

import ctypes
import os
import platform

#: ``mallopt`` parameters from glibc's ``malloc.h``.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
#: ``M_TRIM_THRESHOLD`` value that turns trimming off (``man mallopt``).
NEVER_TRIM = -1
#: The environment variable (value ``system``) that turns the tuning off.
ENV_VAR = "INVDIFF_MALLOC"


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (see the module docstring).

    Returns:
        ``True`` when glibc took both settings; ``False`` off glibc, when ``INVDIFF_MALLOC=system``,
        or when glibc refused one of them (it accepts both in every version this was tried on; the
        allocator could then be partly changed).

    Raises:
        ValueError: ``INVDIFF_MALLOC`` holds something other than ``system`` or ``keep``.
    """
    raw = os.environ.get(ENV_VAR, "keep")
    choice = raw.strip().lower()
    if choice not in ("keep", "system"):
        raise ValueError(f"{ENV_VAR} must be 'keep' or 'system', got {raw!r}")
    if choice == "system" or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL("libc.so.6")  # glibc's soname on every architecture it supports
    # Both settings are needed (mallopt returns 1 on success): without mmap alone the heap top is
    # still trimmed and re-faulted after each call; a fixed trim threshold alone pins glibc's
    # mmap threshold at its 128 KiB start, slower than its default.
    mmap_off = bool(libc.mallopt(M_MMAP_MAX, 0))
    return bool(libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM)) and mmap_off
