"""Write files and folders so that a crash never leaves a half-written one behind (temp + rename)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fulldit.errors import InputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    The temp file lives in the same directory so that `os.replace` is an atomic rename on POSIX.
    The suffix is kept, because writers such as PyAV pick the container from it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f"{path.suffix}.partial{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)  # mkstemp makes 0600 (and some writers recreate the file): use plain open()'s mode
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new hidden directory beside `path`; rename it onto `path` only if the block succeeds.

    `path` must not exist or be an empty directory (InputError otherwise: nothing is overwritten). On failure the
    temporary directory and any parent directories this call created are removed, so nothing is left behind.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: is a file; the output must be a new or empty directory")
    if path.is_dir() and any(path.iterdir()):
        raise InputError(f"{path}: directory exists and is not empty; choose a new --out")
    created = [p for p in path.parents if not p.exists()]  # deepest first
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        yield tmp
        umask = os.umask(0)  # mkdtemp makes 0700: use plain mkdir()'s mode
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        os.replace(tmp, path)  # replaces an empty directory atomically
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for parent in created:
            with contextlib.suppress(OSError):
                parent.rmdir()
        raise
