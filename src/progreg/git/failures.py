"""What a failed Git read or write means, as an error a person can act on.

libgit2 (through pygit2) reports a full disk, a read-only file system or a
damaged object as a ``GitError`` or an ``OSError`` whose message carries the
operating system's words and, for objects, the object's id. These functions
turn such failures into :class:`~progreg.DiskFullError`,
:class:`~progreg.ReadOnlyRegistryError`, :class:`~progreg.DamagedObjectError`
or a plain :class:`~progreg.RegistryError`, naming the registry and what was
being done.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from progreg.errors import (
    DamagedObjectError,
    DiskFullError,
    ReadOnlyRegistryError,
    RegistryError,
)

_DISK_FULL = ("No space left on device", "Disk quota exceeded")
_READ_ONLY = ("Read-only file system", "Permission denied", "Operation not permitted")
_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_READ_ONLY_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM}
#: Words of libgit2's messages about objects it found damaged or missing.
_DAMAGE = (
    "zlib",
    "inflat",
    "incorrect data check",
    "incorrect header check",
    "incorrect length check",
    "invalid distance",
    "invalid code",  # zlib's messages for a damaged deflate stream, as libgit2 passes them on
    "invalid block type",
    "invalid stored block",
    "invalid literal",
    "too many length or distance symbols",
    "unknown compression method",
    "object not found",
    "corrupt",
    "hash mismatch",
    "failed to parse loose object",
    "packfile",
    "invalid header",
    "truncated",
)
#: Less free space than this when a write failed: the disk is full.
NEARLY_FULL = 1 << 20
_OBJECT_ID = re.compile(r"\b[0-9a-f]{40}\b")
_HINT = "`progreg verify` lists the damaged objects and the programs that need them"


def damaged_object(exc: BaseException) -> str | None:
    """The id of the object ``exc`` says is damaged or missing (``""``: unnamed), else ``None``."""
    text = str(exc)
    if isinstance(exc, KeyError) or any(word in text for word in _DAMAGE):
        found = _OBJECT_ID.search(text)
        return found.group(0) if found else ""
    return None


def read_failure(gitdir: Path, what: str, exc: BaseException) -> DamagedObjectError:
    """The error for a read of ``what`` that failed because an object is damaged or missing."""
    oid = damaged_object(exc) or None
    named = f" object {oid}" if oid else " object"
    detail = str(exc).strip("'\" ")
    return DamagedObjectError(
        f"cannot read {what}: the registry at {gitdir} has a damaged or missing{named}"
        f" ({detail}); {_HINT}",
        oid,
    )


def free_bytes(gitdir: Path) -> int | None:
    """Bytes this process may still write on the file system of ``gitdir`` (``None``: unknown)."""
    try:
        stat = os.statvfs(gitdir)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def write_failure(gitdir: Path, exc: BaseException, what: str = "") -> RegistryError:
    """The error for a write to the registry at ``gitdir`` that failed with ``exc``.

    libgit2 does not always pass the operating system's reason on (a full disk
    can surface as "object not found" or "no error"), so when its words say
    nothing the file system itself is asked: almost no space left means a full
    disk, no write access means a read-only registry.
    """
    doing = f"cannot {what}" if what else f"cannot write to the registry at {gitdir}"
    text = str(exc).strip("'\" ")
    code = exc.errno if isinstance(exc, OSError) else None
    free = free_bytes(gitdir)
    if (
        code in _DISK_FULL_ERRNOS
        or any(words in text for words in _DISK_FULL)
        or (free is not None and free < NEARLY_FULL)
    ):
        space = f", {free} bytes free" if free is not None else ""
        return DiskFullError(
            f"{doing}: the disk holding {gitdir} is full ({text}{space}); the registry is as"
            " it was: free some space and retry"
        )
    if (
        code in _READ_ONLY_ERRNOS
        or any(words in text for words in _READ_ONLY)
        or (gitdir.is_dir() and not os.access(gitdir / "objects", os.W_OK))
    ):
        return ReadOnlyRegistryError(
            f"{doing}: {gitdir} is read-only for this process ({text}); check the file"
            " system's mount options and the directory's owner and permissions"
        )
    if damaged_object(exc) is not None:
        return read_failure(gitdir, "what the write needed", exc)
    return RegistryError(f"{doing}: {text}")
