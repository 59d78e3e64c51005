"""Git's maintenance lock, ``objects/maintenance.lock``, held while progreg maintains packs.

``git maintenance run`` (``builtin/gc.c``, ``maintenance_run_tasks``, Git
2.39) creates ``objects/maintenance.lock`` with ``O_EXCL`` before it runs
any task, and skips the whole run when the file exists ("another process is
running maintenance"). Its ``incremental-repack`` task cannot run safely
beside another process that deletes packs: ``git multi-pack-index expire``
deletes every pack to which the multi-pack-index *it read at its start*
assigns no object, and a pack whose objects the index assigns to packs
deleted since loses its objects with it. So progreg's own maintenance,
which deletes the packs it merges, holds this lock for as long as it
works, and Git's maintenance waits its turn (it runs again on its schedule).

Git never reads the file; progreg writes ``progreg <pid> on <host>`` into
its own, so that one a killed progreg process left is recognised and
removed (the holder named is not running on this host) instead of stopping
``git maintenance`` for good. A lock Git left behind is Git's: progreg
waits for it, then says which file to remove if no Git process is running.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from progreg.errors import RegistryBusyError
from progreg.git.processes import parse_writer_label, process_gone, writer_label

#: The file's name in ``objects/``: the lock of ``git maintenance run``.
GIT_MAINTENANCE_LOCK = "maintenance.lock"
_POLL = 0.05


def _holder() -> bytes:
    return f"{writer_label()}\n".encode()


def _take(path: Path) -> bool:
    """Create the lock file; whether it was created (a stale progreg one is replaced)."""
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # Git's lock files
        except FileExistsError:
            if not _stale(path):
                return False
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            continue
        try:
            os.write(fd, _holder())
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)  # not left behind, half written
            raise
        os.close(fd)
        return True
    return False


def _stale(path: Path) -> bool:
    """Whether ``path`` is a lock a progreg process of this host left when it died."""
    try:
        text = path.read_bytes()[:200].decode(errors="replace")
    except OSError:
        return False
    writer = parse_writer_label(text)
    # this process holding it (another thread) is never gone
    return writer is not None and process_gone(*writer)


@contextlib.contextmanager
def git_maintenance_lock(objects_dir: Path, timeout: float | None) -> Iterator[bool]:
    """Hold ``objects/maintenance.lock``; yield whether it was taken.

    ``timeout=None`` does not wait: the block runs with ``False`` while Git's
    maintenance runs. Otherwise waits up to ``timeout`` seconds, then raises
    :class:`~progreg.RegistryBusyError`. A missing ``objects`` directory
    yields ``False``.
    """
    path = objects_dir / GIT_MAINTENANCE_LOCK
    deadline = time.monotonic() + (timeout or 0.0)
    while True:
        try:
            taken = _take(path)
        except (FileNotFoundError, NotADirectoryError):
            taken = False
            timeout = None
        if taken or timeout is None:
            break
        if time.monotonic() >= deadline:
            raise RegistryBusyError(
                f"git maintenance has held {path} for more than {timeout:g} s; retry once it"
                " ends (if no git process is running on this repository, remove that file)"
            )
        time.sleep(_POLL)
    try:
        yield taken
    finally:
        if taken:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
