"""Reflog entries as Git writes them (refs/files-backend.c ``log_ref_write``).

A ref's reflog is ``logs/<ref>``; each update appends one line::

    <old id> <new id> <name> <<email>> <seconds> <+hhmm>\\t<message>\\n

with the id of nothing (forty zeros) for a created or deleted ref, and the
message's whitespace runs squeezed to single spaces. Whether an update is
logged follows Git: an existing reflog is always appended to; a missing one is
created when ``core.logAllRefUpdates`` is ``always``, or ``true`` and the ref
is a branch, a remote-tracking ref, a note or ``HEAD`` (``false``, the default
of bare repositories, creates none). When the ref is the branch ``HEAD``
names, the entry is appended to ``HEAD``'s reflog too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from progreg.git.durability import make_dirs
from progreg.git.objects.identity import Identity
from progreg.git.permissions import FILE_MODE, adjust_path
from progreg.git.settings import LOG_ALWAYS, LOG_NORMAL

#: The id Git writes for "no object" (a ref created or deleted).
ZERO_ID = "0" * 40
#: Refs whose reflog ``core.logAllRefUpdates=true`` creates.
NORMAL_PREFIXES = ("refs/heads/", "refs/remotes/", "refs/notes/")


@dataclass(frozen=True)
class RefLogEntry:
    """Who moved a ref, why, and when (``None``: now): the reflog entry of one update."""

    who: Identity
    message: str
    when: datetime | None = None

    def line(self, old: str | None, new: str | None) -> bytes:
        """The reflog line for a move from ``old`` to ``new`` (``None``: no object)."""
        person = self.who.raw(self.who.signature(self.when))
        text = " ".join(self.message.split())  # Git's copy_reflog_msg
        tail = f"\t{text}" if text else ""
        return f"{old or ZERO_ID} {new or ZERO_ID} {person}{tail}\n".encode()


def creates_reflog(ref: str, log_refs: str) -> bool:
    """Whether Git creates a missing reflog for ``ref`` (``should_autocreate_reflog``)."""
    if log_refs == LOG_ALWAYS:
        return True
    if log_refs == LOG_NORMAL:
        return ref.startswith(NORMAL_PREFIXES) or ref == "HEAD"
    return False


def wants_reflog(gitdir: Path, ref: str, log_refs: str) -> bool:
    """Whether Git might log an update of ``ref``: its reflog (or ``HEAD``'s) exists or
    would be created. :func:`append_reflog` then decides for each of the two."""
    if creates_reflog(ref, log_refs):
        return True
    logs = gitdir / "logs"
    if not os.path.isdir(logs):  # a bare repository's usual state: one stat per update
        return False
    return os.path.isfile(logs / ref) or (
        ref.startswith("refs/heads/") and os.path.isfile(logs / "HEAD")
    )


def head_branch(gitdir: Path) -> str | None:
    """The branch ``HEAD`` names (``ref: refs/heads/main``), or ``None``."""
    try:
        with open(gitdir / "HEAD", "rb") as head:
            content = head.read(512).decode("utf-8", "replace").strip()
    except OSError:
        return None
    return content[5:].strip() if content.startswith("ref: ") else None


def append_reflog(
    gitdir: Path, ref: str, line: bytes, *, log_refs: str, shared: int, durable: bool
) -> list[Path]:
    """Append ``line`` to the reflog of ``ref`` (and of ``HEAD`` if it names ``ref``).

    Logs only what Git would (see the module). Returns the directories that
    got a new entry, for a durable writer to flush. Raises :class:`OSError`.
    """
    changed: list[Path] = []
    refs = [ref]
    if ref != "HEAD" and head_branch(gitdir) == ref:
        refs.append("HEAD")
    for name in refs:
        changed += _append(gitdir, name, line, log_refs, shared, durable)
    return changed


def _append(
    gitdir: Path, ref: str, line: bytes, log_refs: str, shared: int, durable: bool
) -> list[Path]:
    path = gitdir / "logs" / ref
    changed: list[Path] = []
    if creates_reflog(ref, log_refs):
        if not path.parent.is_dir():
            changed = make_dirs(path.parent, gitdir, shared)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    else:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        except (FileNotFoundError, IsADirectoryError):
            return []
    try:
        adjust_path(path, shared)
        os.write(fd, line)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    return [*changed, path.parent]
