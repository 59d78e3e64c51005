"""Compare-and-swap of a loose ref with Git's own lock-file protocol.

This is what ``git update-ref <ref> <new> <old>`` does: create
``<ref>.lock`` exclusively (a concurrent ``git`` or libgit2 writer holding it
makes the swap fail, never wait), check under it that the ref still holds
the expected value (a loose file first, else ``packed-refs``), write the new
value into the lock file and rename it over the ref. With ``durable`` the new
ref file and the directories that got new entries are flushed before
returning. Given a reflog entry, it is appended under the lock before the
rename, as Git does (see :mod:`progreg.git.refs.reflog`). Each file and
directory created gets the mode Git gives it in a shared repository. Refs
that need more (a symbolic ref) are left to libgit2: :func:`swap_ref` says so
by raising :class:`NeedsLibgit2`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from progreg.git.durability import fsync_dirs, make_dirs
from progreg.git.permissions import FILE_MODE, PERM_UMASK, adjust_fd
from progreg.git.refs.reflist import packed_value
from progreg.git.refs.reflog import RefLogEntry, append_reflog
from progreg.git.settings import LOG_NONE

_HEX = frozenset("0123456789abcdef")


class NeedsLibgit2(Exception):
    """The ref is not a plain loose or packed ref: update it through libgit2."""


def read_ref(gitdir: Path, ref: str) -> str | None:
    """The id ``ref`` holds (loose file, else ``packed-refs``), or ``None`` when it is absent."""
    try:
        with open(gitdir / ref, "rb") as handle:
            content = handle.read(256).decode("ascii", errors="replace").strip()
    except FileNotFoundError:
        return packed_value(gitdir, ref)
    except IsADirectoryError:
        return None
    if len(content) != 40 or not _HEX.issuperset(content):
        raise NeedsLibgit2(f"{ref} is not a plain ref ({content[:60]!r})")
    return content


def swap_ref(
    gitdir: Path,
    ref: str,
    expected: str | None,
    new: str,
    *,
    durable: bool,
    shared: int = PERM_UMASK,
    reflog: RefLogEntry | None = None,
    log_refs: str = LOG_NONE,
) -> str | None:
    """Move ``ref`` from ``expected`` (``None``: absent) to ``new``; return why not, or ``None``.

    ``shared`` is the registry's ``core.sharedRepository`` (as
    :func:`~progreg.git.permissions.parse_shared` reads it); ``reflog``,
    if given, is logged as ``core.logAllRefUpdates`` (``log_refs``) says.
    A concurrent writer (the lock file exists) or a moved ref is returned as
    a reason; a failure of the file system itself (a full disk, a read-only
    registry) is raised as the :class:`OSError` it is, the ref unchanged.
    """
    reasons = swap_refs(
        gitdir,
        [RefSwap(ref, expected, new, reflog)],
        durable=durable,
        shared=shared,
        log_refs=log_refs,
    )
    return reasons.get(ref)


@dataclass(frozen=True)
class RefSwap:
    """One ref of :func:`swap_refs`: from ``expected`` (``None``: absent) to ``new``."""

    ref: str
    expected: str | None
    new: str
    #: Logged as ``log_refs`` says, when given.
    reflog: RefLogEntry | None = None


def swap_refs(
    gitdir: Path,
    swaps: Sequence[RefSwap],
    *,
    durable: bool,
    shared: int = PERM_UMASK,
    log_refs: str = LOG_NONE,
) -> dict[str, str]:
    """Move every ref of ``swaps``, or none; ``{ref: why not}`` when none moved.

    Git's ref transaction: every lock file is created and written first,
    then every reflog line appended, then every lock renamed over its ref.
    A file system failure in the first two steps (a full disk, a read-only
    registry) is raised as the :class:`OSError` it is with no ref moved: the
    locks are removed and the reflogs cut back to their former length. The
    renames allocate nothing. A symbolic ref raises :class:`NeedsLibgit2`
    before anything changed.
    """
    locks: list[Path] = []
    logs: dict[Path, int | None] = {}
    changed: list[Path] = []
    renamed = 0
    try:
        for swap in swaps:
            path = gitdir / swap.ref
            lock = path.with_name(path.name + ".lock")
            if not path.parent.is_dir():
                changed += make_dirs(path.parent, gitdir, shared)
            try:
                fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            except FileExistsError:
                return {swap.ref: f"{lock} exists: another Git process is updating {swap.ref}"}
            locks.append(lock)
            try:
                adjust_fd(fd, shared)
                if read_ref(gitdir, swap.ref) != swap.expected:
                    return {swap.ref: "the ref moved"}
                os.write(fd, f"{swap.new}\n".encode())
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
        try:
            for swap in swaps:
                if swap.reflog is not None:
                    for log in (gitdir / "logs" / swap.ref, gitdir / "logs" / "HEAD"):
                        logs.setdefault(log, _size(log))
                    line = swap.reflog.line(swap.expected, swap.new)
                    changed += append_reflog(
                        gitdir, swap.ref, line, log_refs=log_refs, shared=shared, durable=durable
                    )
        except OSError:
            _cut_back(logs)
            raise
        for lock in locks:
            os.replace(lock, lock.with_name(lock.name[: -len(".lock")]))
            renamed += 1
    finally:
        for lock in locks[renamed:]:  # ours: not renamed
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)
    if durable:
        fsync_dirs([*{lock.parent for lock in locks}, *changed])
    return {}


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _cut_back(logs: dict[Path, int | None]) -> None:
    """Put reflogs back to their former length (``None``: remove the one created)."""
    for log, size in logs.items():
        with contextlib.suppress(OSError):
            if size is None:
                log.unlink()
            else:
                os.truncate(log, size)
