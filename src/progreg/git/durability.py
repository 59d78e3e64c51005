"""Making what a writer put on disk survive power loss: fsync of files and directories.

A file is durable once its data is flushed (``fsync`` of the file) and the
directory entry naming it is flushed too (``fsync`` of the directory, and of
each directory created on the way). A durable writer flushes the objects it
wrote before it moves the ref that points at them, then the ref file and its
directory, before it returns.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from progreg.git.permissions import PERM_UMASK, make_dir


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush the data of the file at ``path`` to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush the entries of directory ``path`` (new, renamed and removed names)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        if os.name == "nt":  # directories cannot be opened (nor flushed) there
            return
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dirs(paths: Iterable[Path]) -> None:
    """:func:`fsync_dir` each directory of ``paths`` once, deepest first."""
    for directory in sorted(set(paths), key=lambda p: len(p.parts), reverse=True):
        fsync_dir(directory)


def make_dirs(directory: Path, stop: Path, shared: int = PERM_UMASK) -> list[Path]:
    """Create ``directory`` and missing parents below ``stop``; return the parents that changed.

    The returned directories are those that got a new entry (the parent of
    each directory created), for :func:`fsync_dirs`. Each directory created
    gets the mode Git gives it (``shared``: see :mod:`progreg.git.permissions`).
    """
    missing: list[Path] = []
    current = directory
    while current != stop and not current.is_dir():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        make_dir(path, shared)  # another writer may create it meanwhile: flush it anyway
    return [path.parent for path in missing]
