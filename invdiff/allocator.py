"""Keep freed CPU memory inside the process, so that network calls stop page-faulting (glibc).

glibc's ``malloc`` serves large blocks with fresh ``mmap`` pages and returns them to the system on
``free``; its threshold for that adapts but never exceeds 32 MiB. A U-Net call on a batch of
128x128 images allocates many tensors larger than that, so on every call the kernel hands out and
zeroes those pages again: on a 2-core machine the default prior's network took 33 ms per image at
a batch of 8 and 53 ms at 32, and 23 ms at both once freed memory is kept
(``python benchmarks/cpu_eval.py``). PyTorch's CPU performance guide recommends a caching
allocator (jemalloc, tcmalloc) for the same reason; this asks glibc for the same behaviour with
``mallopt``: no ``mmap`` for large blocks (``M_MMAP_MAX = 0``) and no trimming of the heap
(``M_TRIM_THRESHOLD``). CPU training of the default prior at its batch of 16 went from 9.1 to
14.1 images/s in fp32 (``benchmarks/train.py --malloc keep,system``; with bf16 autocast, whose
activations are half as large, 18.9 to 19.7). Memory a process frees is reused by
it rather than given back before it ends; peak memory moved by -3 % (training batch 16) to +14 %
(batch 32).

The ``invdiff`` command applies it at start. Scripts that import the library can call
:func:`keep_freed_memory` themselves. ``INVDIFF_MALLOC=system`` leaves the allocator as it is.
Off Linux/glibc nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

#: ``mallopt`` parameters from glibc's ``malloc.h``.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
#: Largest value ``M_TRIM_THRESHOLD`` takes (an ``int``): never trim in practice.
NEVER_TRIM = 2**31 - 1
#: The environment variable (value ``system``) that turns the tuning off.
ENV_VAR = "INVDIFF_MALLOC"


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (see the module docstring).

    Returns:
        ``True`` when the allocator was changed; ``False`` off glibc, when ``INVDIFF_MALLOC=system``
        or when glibc refused a setting.

    Raises:
        ValueError: ``INVDIFF_MALLOC`` holds something other than ``system`` or ``keep``.
    """
    choice = os.environ.get(ENV_VAR, "keep").strip().lower()
    if choice not in ("keep", "system"):
        raise ValueError(f"{ENV_VAR} must be 'keep' or 'system', got {choice!r}")
    if choice == "system" or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    # mallopt returns 1 on success. Both settings are needed: without mmap the heap top is still
    # trimmed after each call, and a fixed trim threshold alone pins the mmap threshold at its
    # 128 KiB start (slower than glibc's default). M_MMAP_MAX goes first, so that a refusal leaves
    # glibc as it was.
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
