"""Atomic writes: a reader, or a run interrupted mid-write, sees the old file (or directory) or the new one,
never half of one. Every writer of the project goes through these (objects on a remote store through
``adgan.sweep.storage``, where one PUT is atomic by itself)."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _read_umask() -> int:
    """The process's umask, read once at import (setting it to read it back is not thread-safe later)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp / mkdtemp create owner-only files and directories; what replaces ``path`` gets the mode a plain
# open() / mkdir() would have given (0666 / 0777 less the umask), so a shared report stays readable.
_UMASK = _read_umask()
FILE_MODE = 0o666 & ~_UMASK
DIR_MODE = 0o777 & ~_UMASK


@contextlib.contextmanager
def replacing(path: Path, tmp_dir: Path | None = None) -> Iterator[Path]:
    """Yield a temporary path to write the new ``path`` to; on success rename it over ``path``
    (``os.replace``: atomic within one filesystem), on failure remove it.

    ``tmp_dir``: where the temporary file lives (default: beside ``path``); give a directory of the same
    filesystem that readers of ``path``'s directory do not look into, when they must not see it either.
    """
    folder = tmp_dir if tmp_dir is not None else path.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:  # a file replaced keeps its mode (one its owner narrowed stays so)
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = FILE_MODE
    os.fchmod(fd, mode)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: str | bytes, tmp_dir: Path | None = None) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically (see ``replacing``)."""
    with replacing(path, tmp_dir) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


@contextlib.contextmanager
def replacing_dir(path: Path) -> Iterator[Path]:
    """Yield a temporary directory to fill with the new ``path``; on success swap it in (the old one, if
    any, renamed aside first and removed after), on failure remove it. A reader sees the old directory or
    the new one (between the two renames, none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    tmp.chmod(DIR_MODE)
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old)
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
