"""glibc told to keep freed memory (invdiff.allocator): checked in fresh processes, since the
setting is process-wide and cannot be undone."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import subprocess
import sys

import pytest

from invdiff.allocator import keep_freed_memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Where a live 256 MiB block sits: glibc's mallinfo2 counts mmapped blocks in ``hblkhd`` and the
# heap in ``arena``.
PROBE = r"""
import ctypes, ctypes.util, json, sys
from invdiff.allocator import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
changed = keep_freed_memory()
block = libc.malloc(256 << 20)
ctypes.memset(block, 1, 256 << 20)
live = libc.mallinfo2()
libc.free(block)
after = libc.mallinfo2()
print(json.dumps({"changed": changed, "live_mmap": live.hblkhd, "live_heap": live.arena,
                  "kept": after.arena}))
"""


def _probe(malloc: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "INVDIFF_MALLOC"}
    if malloc is not None:
        env["INVDIFF_MALLOC"] = malloc
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, check=True,
                         capture_output=True, text=True)
    import json

    return json.loads(out.stdout)


needs_mallinfo2 = pytest.mark.skipif(
    not GLIBC or not hasattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"),
                             "mallinfo2"),
    reason="needs glibc >= 2.33 (mallinfo2)")


@needs_mallinfo2
def test_large_blocks_come_from_the_heap_and_stay_there():
    r = _probe(None)
    assert r["changed"] is True
    assert r["live_mmap"] < (1 << 20)  # not mmapped ...
    assert r["live_heap"] >= 256 << 20  # ... but on the heap,
    assert r["kept"] >= 256 << 20  # which is not trimmed when the block is freed


@needs_mallinfo2
def test_system_setting_leaves_glibc_alone():
    r = _probe("system")
    assert r["changed"] is False
    assert r["live_mmap"] >= 256 << 20  # glibc's default: a block this large is mmapped


def test_unknown_setting_is_an_error(monkeypatch):
    monkeypatch.setenv("INVDIFF_MALLOC", "jemalloc")
    with pytest.raises(ValueError, match="INVDIFF_MALLOC must be 'keep' or 'system'"):
        keep_freed_memory()


def test_cli_refuses_unknown_setting_in_one_line():
    env = dict(os.environ, INVDIFF_MALLOC="bogus")
    out = subprocess.run([sys.executable, "-m", "invdiff.cli.app", "solvers", "list"], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: INVDIFF_MALLOC must be 'keep' or 'system', got 'bogus'"]
