"""The registry's write lock, and recovery of ref locks left by killed writers.

Writers serialise on an advisory ``flock`` of ``<gitdir>/progreg.lock``. The
kernel releases it when a process dies, so the lock itself can never wedge a
registry. While it holds the lock a writer records ``held pid=... since=...``
in the file and replaces that with ``released`` before unlocking; a writer
that finds ``held`` on acquiring knows the previous holder died inside its
critical section, and that any ``*.lock`` file that holder's Git updates
created since then is stale and safe to remove.

Where ``fcntl`` is unavailable (Windows) the lock is a no-op and the
compare-and-swap on refs alone keeps writers correct.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from progreg.errors import RegistryBusyError, RegistryError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = "progreg.lock"


@dataclass(frozen=True)
class LockGrant:
    """What a writer learns when it takes the lock."""

    previous_holder_crashed: bool
    previous_since: float


def _parse_since(record: bytes) -> float:
    for field in record.split():
        if field.startswith(b"since="):
            with contextlib.suppress(ValueError):
                return float(field[6:])
    return 0.0


@contextlib.contextmanager
def write_lock(gitdir: Path, timeout: float) -> Iterator[LockGrant]:
    """Hold the registry's write lock for the duration of the ``with`` block."""
    path = gitdir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError as exc:
        raise RegistryError(
            f"cannot write to the registry at {gitdir}: permission denied ({path})"
        ) from exc
    except OSError as exc:
        raise RegistryError(f"cannot open the registry's lock file {path}: {exc}") from exc
    try:
        _acquire(fd, path, timeout)
        record = os.pread(fd, 256, 0)
        grant = LockGrant(record.startswith(b"held"), _parse_since(record))
        _write_record(fd, f"held pid={os.getpid()} since={time.time():.6f}\n".encode())
        try:
            yield grant
        finally:
            _write_record(fd, b"released\n")
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _write_record(fd: int, record: bytes) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, record, 0)


def _acquire(fd: int, path: Path, timeout: float) -> None:
    if fcntl is None:  # pragma: no cover - Windows
        return
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise RegistryBusyError(
                    f"another writer held the registry lock {path} for more than"
                    f" {timeout:g} s; retry, or raise the lock timeout"
                ) from None
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.02)


def remove_stale_ref_locks(gitdir: Path, since: float) -> list[Path]:
    """Remove ref ``*.lock`` files created at or after ``since`` by a crashed holder.

    Only call this while holding the write lock, after :func:`write_lock`
    reported that the previous holder crashed. Returns the removed paths.
    """
    candidates = [gitdir / "packed-refs.lock", gitdir / "HEAD.lock"]
    refs = gitdir / "refs"
    if refs.is_dir():
        candidates += refs.rglob("*.lock")
    removed = []
    for lock in candidates:
        try:
            if lock.stat().st_mtime >= since - 1.0:
                lock.unlink()
                removed.append(lock)
        except FileNotFoundError:
            continue
    return removed
