"""Safe writing of users' files: never over an input, never a partial output.

Every output is written to a temporary file in the destination folder and moved into place with
:func:`os.replace`, which is atomic on POSIX and Windows within one file system. An interrupted run
(Ctrl-C, kill) therefore leaves either the previous state or the complete new file, never a
truncated one; the temporary file is removed on any exception.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path


class OutputExistsError(FileExistsError):
    """An output file exists and ``overwrite`` was not given."""


class OutputIsInputError(ValueError):
    """An output path names one of the run's input files."""


def check_outputs(
    outputs: Sequence[str | os.PathLike], inputs: Sequence[str | os.PathLike], overwrite: bool
) -> None:
    """Refuse outputs that are inputs (always) or that already exist (unless ``overwrite``).

    Paths are compared after resolving symlinks, so ``./a.nii`` and ``a.nii`` are the same file.
    """
    resolved_inputs = {Path(p).resolve() for p in inputs}
    seen: set[Path] = set()
    probed: set[Path] = set()
    for out in outputs:
        path = Path(out).resolve()
        if path in resolved_inputs:
            raise OutputIsInputError(f"output {out} is an input of this run; choose another --out")
        if path in seen:
            raise OutputIsInputError(f"output {out} is named twice")
        seen.add(path)
        if path.is_dir():
            raise IsADirectoryError(f"output {out} is a folder; name a file")
        if path.exists() and not overwrite:
            raise OutputExistsError(f"output {out} exists; pass --overwrite to replace it")
        if not path.parent.is_dir():
            raise FileNotFoundError(f"output folder {path.parent} does not exist")
        if path.parent not in probed:  # one probe per folder (a solve writes several files)
            _check_writable(path.parent)
            probed.add(path.parent)


def _check_writable(folder: Path) -> None:
    """Create and remove a temporary file in ``folder``: a run finds out that it cannot write
    its outputs before it works, not after (``os.access`` misses ACLs, read-only mounts, root)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".invdiff-write-check.", dir=folder)
    except OSError as exc:
        raise PermissionError(f"cannot write to output folder {folder}: "
                              f"{exc.strerror or exc}") from None
    os.close(fd)
    try:
        os.unlink(tmp)
    except OSError as exc:  # append-only or odd network mounts: say so rather than leave debris
        raise PermissionError(f"cannot remove files in output folder {folder} ({tmp} is left "
                              f"behind): {exc.strerror or exc}") from None


def full_suffix(path: str | os.PathLike) -> str:
    """``.nii.gz`` for gzipped NIfTI names in any letter case, else the last suffix."""
    name = Path(path).name
    return name[-7:] if name.lower().endswith(".nii.gz") else Path(path).suffix


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it onto ``path``.

    ``suffix`` defaults to the full suffix of ``path`` (``.nii.gz``), so writers that choose a
    format by extension write the right one. On any exception the temporary file is deleted and
    ``path`` is left untouched.
    """
    path = Path(path)
    tmp_path = _temporary(path, full_suffix(path) if suffix is None else suffix)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_outputs(
    paths: Sequence[str | os.PathLike], last_is_record: bool = False
) -> Iterator[list[Path]]:
    """Temporary paths for several outputs, all moved into place only if the block succeeds.

    The renames happen together at the end, in the given order (put a manifest last), so an
    interruption while writing leaves none of the outputs rather than some of them. Several
    renames are not one atomic step: with ``last_is_record`` (the last path describes the
    others, e.g. a run manifest) an existing file there is removed before the first rename, so
    an interruption between renames can leave new outputs beside old ones but never a record
    that describes files it did not write.
    """
    with contextlib.ExitStack() as stack:
        temps: list[Path] = []
        for path in paths:
            path = Path(path)
            tmp = _temporary(path, full_suffix(path))
            temps.append(tmp)
            stack.callback(_unlink_quietly, tmp)
        yield temps
        if last_is_record and len(paths) > 1:
            _unlink_quietly(Path(paths[-1]))
        for tmp, path in zip(temps, paths, strict=True):
            os.replace(tmp, path)


def _temporary(path: Path, suffix: str) -> Path:
    """An empty temporary file beside ``path`` (``suffix`` in lower case) with the permissions a
    new file would get.

    ``mkstemp`` creates files readable by their owner only (0600); outputs are ordinary files
    (``0666`` less the umask), so that e.g. a colleague's viewer can open them.
    """
    # lower-case suffix: writers (and nibabel) recognise ``.nii.gz``, not always ``.NII.GZ``
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{suffix.lower()}",
                               dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    finally:
        os.close(fd)
    return Path(tmp)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def write_atomic(path: str | os.PathLike, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` and move the result onto ``path`` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)
