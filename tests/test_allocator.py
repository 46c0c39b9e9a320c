"""glibc told to keep freed memory (invdiff.allocator): checked in fresh processes, since the
setting is process-wide and cannot be undone."""

from __future__ import annotations

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
import ctypes, json
from invdiff.allocator import keep_freed_memory

NAMES = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
         "fordblks", "keepcost")
libc = ctypes.CDLL("libc.so.6")
# mallinfo2 (glibc >= 2.33) has size_t fields; older glibc's mallinfo has int ones, enough here
info = getattr(libc, "mallinfo2", None) or libc.mallinfo
field = ctypes.c_size_t if hasattr(libc, "mallinfo2") else ctypes.c_int
info.restype = type("MallInfo", (ctypes.Structure,), {"_fields_": [(n, field) for n in NAMES]})
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
changed = keep_freed_memory()
block = libc.malloc(256 << 20)
ctypes.memset(block, 1, 256 << 20)
live = info()
libc.free(block)
after = info()
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


# glibc's own defaults are what the probe compares against: another allocator or tuned glibc
# settings in the environment would change them.
_TUNED = [k for k in os.environ if k in ("LD_PRELOAD", "GLIBC_TUNABLES") or k.startswith("MALLOC_")]
needs_plain_glibc = pytest.mark.skipif(
    not GLIBC or bool(_TUNED),
    reason=f"needs glibc with default malloc settings (environment sets {_TUNED})")


@needs_plain_glibc
def test_large_blocks_come_from_the_heap_and_stay_there():
    r = _probe(None)
    assert r["changed"] is True
    assert r["live_mmap"] < (1 << 20)  # not mmapped ...
    assert r["live_heap"] >= 256 << 20  # ... but on the heap,
    assert r["kept"] >= 256 << 20  # which is not trimmed when the block is freed


@needs_plain_glibc
def test_system_setting_leaves_glibc_alone():
    r = _probe("system")
    assert r["changed"] is False
    assert r["live_mmap"] >= 256 << 20  # glibc's default: a block this large is mmapped


def test_unknown_setting_is_an_error(monkeypatch):
    monkeypatch.setenv("INVDIFF_MALLOC", "JEmalloc")
    with pytest.raises(ValueError, match="must be 'keep' or 'system', got 'JEmalloc'"):
        keep_freed_memory()


def test_nothing_changes_off_glibc(monkeypatch):
    monkeypatch.delenv("INVDIFF_MALLOC", raising=False)
    monkeypatch.setattr(platform, "libc_ver", lambda: ("musl", "1.2"))
    assert keep_freed_memory() is False


def test_cli_refuses_unknown_setting_in_one_line():
    env = dict(os.environ, INVDIFF_MALLOC="bogus")
    out = subprocess.run([sys.executable, "-m", "invdiff.cli.app", "solvers", "list"], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: INVDIFF_MALLOC must be 'keep' or 'system', got 'bogus'"]
