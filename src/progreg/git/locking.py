"""The registry's write lock, recovery of ref locks left by killed writers, and Git's
maintenance lock.

Writers serialise on an advisory ``flock`` of ``<gitdir>/progreg.lock``. The
kernel releases it when a process dies, so the lock itself can never wedge a
registry. While it holds the lock a writer records ``held pid=... since=...``
in the file and replaces that with ``released`` before unlocking (each record
is one fixed-size ``pwrite``, so it is never seen half written); a writer that
finds ``held`` on acquiring knows the previous holder died inside its critical
section, and that any ref ``*.lock`` file that holder's Git updates created
since then is stale: it removes those before going on.

The lock is re-entrant within a thread: a writer already holding it (a save
creating its tags, say) takes it again at no cost.

Where ``fcntl`` is unavailable (Windows) the lock is a no-op and the
compare-and-swap on refs alone keeps writers correct.

**Git's maintenance lock.** ``git maintenance run`` (``builtin/gc.c``,
``maintenance_run_tasks``, Git 2.39) creates ``objects/maintenance.lock``
with ``O_EXCL`` before it runs any task, and skips the whole run when the
file exists ("another process is running maintenance"). Its
``incremental-repack`` task cannot run safely beside another process that
deletes packs: ``git multi-pack-index expire`` deletes every pack to which
the multi-pack-index *it read at its start* assigns no object, and a pack
whose objects the index assigns to packs deleted since loses its objects
with it. So progreg's own maintenance, which deletes the packs it merges,
holds this lock for as long as it works (:func:`git_maintenance_lock`), and
Git's maintenance waits its turn (it runs again on its schedule).

Git never reads the file; progreg writes ``progreg <pid> on <host>`` into
its own, so that one a killed progreg process left is recognised and
removed (the holder named is not running on this host) instead of stopping
``git maintenance`` for good. A lock Git left behind is Git's: progreg
waits for it, then says which file to remove if no Git process is running.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from progreg import events
from progreg.errors import RegistryBusyError
from progreg.git.failures import write_failure
from progreg.git.permissions import FILE_MODE, PERM_UMASK, shared_mode
from progreg.git.processes import parse_writer_label, process_gone, writer_label
from progreg.git.settings import repository_settings

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = "progreg.lock"
#: Every record is padded to this many bytes (newline included) and written at offset 0.
RECORD_SIZE = 64
#: Ref lock files a crashed writer may leave, relative to the Git directory
#: (besides every ``*.lock`` under ``refs/``).
TOP_LEVEL_REF_LOCKS = ("packed-refs.lock", "HEAD.lock")

_held = threading.local()


@dataclass(frozen=True)
class LockGrant:
    """What a writer learns when it takes the lock."""

    previous_holder_crashed: bool
    previous_since: float


@dataclass(frozen=True)
class LockRecord:
    """What ``progreg.lock`` says: ``state`` is held, released, missing or unknown."""

    state: str
    pid: int | None = None
    since: float | None = None


def _record(text: str) -> bytes:
    return text.encode().ljust(RECORD_SIZE - 1) + b"\n"


_RELEASED = _record("released")


def parse_record(data: bytes) -> LockRecord:
    """The record in the bytes of a lock file (any version's layout; empty: released)."""
    fields = data.split()
    if not fields or fields[0] == b"released":
        return LockRecord("released")
    if fields[0] != b"held":
        return LockRecord("unknown")
    pid: int | None = None
    since: float | None = None
    for field in fields[1:]:
        name, _, value = field.partition(b"=")
        with contextlib.suppress(ValueError):
            if name == b"pid":
                pid = int(value)
            elif name == b"since":
                since = float(value)
    return LockRecord("held", pid, since)


def read_record(gitdir: Path) -> LockRecord:
    """The record in ``<gitdir>/progreg.lock`` (``missing`` when there is no such file)."""
    try:
        with open(gitdir / LOCK_FILE, "rb") as file:
            return parse_record(file.read(4096))
    except FileNotFoundError:
        return LockRecord("missing")
    except OSError:
        return LockRecord("unknown")


def lock_is_free(gitdir: Path) -> bool | None:
    """Whether no process holds the write lock right now (``None``: cannot tell).

    Takes and at once releases the lock without waiting; never writes.
    """
    if fcntl is None:  # pragma: no cover - Windows
        return None
    try:
        fd = os.open(gitdir / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return True
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return None
    finally:
        os.close(fd)  # closing releases the lock if it was taken
    return True


def _open(gitdir: Path) -> int:
    path = gitdir / LOCK_FILE
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except OSError as exc:
        raise write_failure(gitdir, exc) from exc


def _share(fd: int, mode: int, shared: int) -> None:
    """Give the lock file the mode Git would give it, so that the group can write it too."""
    wanted = shared_mode(mode, shared)
    if wanted != mode:
        with contextlib.suppress(PermissionError):  # another user's file: theirs to fix
            os.fchmod(fd, stat.S_IMODE(wanted))


def _held_keys() -> set[tuple[int, int, int]]:
    keys: set[tuple[int, int, int]] | None = getattr(_held, "keys", None)
    if keys is None:
        keys = _held.keys = set()
    return keys


@contextlib.contextmanager
def write_lock(gitdir: Path, timeout: float, shared: int | None = None) -> Iterator[LockGrant]:
    """Hold the registry's write lock for the duration of the ``with`` block.

    ``shared`` is the registry's ``core.sharedRepository`` when the caller
    knows it (else it is read from the config).
    """
    fd = _open(gitdir)
    try:
        info = os.fstat(fd)
        key = (os.getpid(), info.st_dev, info.st_ino)
        held = _held_keys()
        if key in held:  # this thread holds it already
            yield LockGrant(False, 0.0)
            return
        if shared is None:
            shared = repository_settings(gitdir).shared
        if shared != PERM_UMASK:
            _share(fd, info.st_mode, shared)
        _acquire(fd, gitdir / LOCK_FILE, timeout)
        try:
            grant = _take(fd, gitdir)
            held.add(key)
            try:
                yield grant
            finally:
                held.discard(key)
                os.pwrite(fd, _RELEASED, 0)
        finally:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _take(fd: int, gitdir: Path) -> LockGrant:
    """Read the previous record, recover from a crashed holder, then record ourselves."""
    previous = os.pread(fd, RECORD_SIZE + 1, 0)
    record = parse_record(previous)
    crashed = record.state == "held"
    since = record.since or 0.0
    if crashed:  # before our own record: a crash here leaves theirs for the next writer
        for removed in remove_stale_ref_locks(gitdir, since):
            events.emit("progreg.lock.recovered", level=logging.WARNING, lock_path=str(removed))
    mine = _record(f"held pid={os.getpid()} since={time.time():.6f}")
    try:
        os.pwrite(fd, mine, 0)
        if len(previous) > RECORD_SIZE:  # a longer record of another layout
            os.ftruncate(fd, RECORD_SIZE)
    except OSError as exc:
        raise write_failure(gitdir, exc, f"write the lock record {gitdir / LOCK_FILE}") from exc
    return LockGrant(crashed, since)


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


def ref_lock_files(gitdir: Path) -> list[Path]:
    """Every ref lock file in the repository: ``packed-refs.lock``, ``HEAD.lock``, ``refs/**``."""
    found = [gitdir / name for name in TOP_LEVEL_REF_LOCKS if (gitdir / name).exists()]
    refs = gitdir / "refs"
    if refs.is_dir():
        found += sorted(refs.rglob("*.lock"))
    return found


def remove_stale_ref_locks(gitdir: Path, since: float) -> list[Path]:
    """Remove ref ``*.lock`` files created at or after ``since`` by a crashed holder.

    Only call this while holding the write lock, after :func:`write_lock`
    reported that the previous holder crashed (it does so itself). Returns
    the removed paths.
    """
    removed = []
    for lock in ref_lock_files(gitdir):
        try:
            if lock.stat().st_mtime >= since - 1.0:
                lock.unlink()
                removed.append(lock)
        except FileNotFoundError:
            continue
    return removed


def ref_locked_error(gitdir: Path, ref: str, problem: str) -> RegistryBusyError:
    """The error for a ref whose Git lock file (``<ref>.lock``) another process holds."""
    lock = gitdir / f"{ref}.lock"
    age = ""
    with contextlib.suppress(OSError):
        age = f", {max(0.0, time.time() - lock.stat().st_mtime):.0f} s old"
    return RegistryBusyError(
        f"could not update {ref} in {gitdir}: {problem}. Another Git process holds"
        f" {lock}{age}; if none is running, it crashed: run `progreg doctor` to see the"
        " registry's locks, then remove that file"
    )


# -- Git's maintenance lock ---------------------------------------------------------------

#: The file's name in ``objects/``: the lock of ``git maintenance run``.
GIT_MAINTENANCE_LOCK = "maintenance.lock"
_POLL = 0.05


def _git_lock_holder() -> bytes:
    return f"{writer_label()}\n".encode()


def _take_git_lock(path: Path) -> bool:
    """Create the lock file; whether it was created (a stale progreg one is replaced)."""
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # Git's lock files
        except FileExistsError:
            if not _stale_git_lock(path):
                return False
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            continue
        try:
            os.write(fd, _git_lock_holder())
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)  # not left behind, half written
            raise
        os.close(fd)
        return True
    return False


def _stale_git_lock(path: Path) -> bool:
    """Whether ``path`` is a lock a progreg process of this host left when it died."""
    try:
        text = path.read_bytes()[:200].decode(errors="replace")
    except OSError:
        return False
    writer = parse_writer_label(text)
    return writer is not None and process_gone(*writer)  # never this process (another thread)


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
            taken = _take_git_lock(path)
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
