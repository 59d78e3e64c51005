"""Reading blobs straight from the object database's pack and loose backends.

Reading through a repository (``git_odb_read``) makes libgit2 recompute the
SHA-1 of every object it returns ("strict hash verification", on by
default), which for a program file of a few kilobytes costs about half as
much as reading it. :class:`BlobReader` asks libgit2's pack and loose
backends directly, as Git itself reads objects: the data still has to
inflate with a valid zlib checksum, and ``git fsck`` (or progreg's verify)
checks the hashes. The backends list the packs present when they were
opened: a miss rescans them once, and a blob still not found reads as
``None``, for the caller to read it through the repository instead.

Backends are opened per thread and per process, as libgit2 handles are.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pygit2
from pygit2.enums import ObjectType

from progreg.git.objects.encoding import RawObject


class BlobReader:
    """Reads blobs from the objects directory ``objects_dir`` of a repository."""

    def __init__(self, objects_dir: Path) -> None:
        self._objects = str(objects_dir)
        self._local = threading.local()

    def read(self, oid: pygit2.Oid) -> bytes | None:
        """The content of blob ``oid``, or ``None`` if it is not found (or not a blob)."""
        pack, loose = self._backends()
        for attempt in range(2):
            for backend in (pack, loose):
                try:
                    kind, data = backend.read(oid)
                except KeyError:
                    continue
                except pygit2.GitError:
                    return None
                return data if kind == ObjectType.BLOB else None
            if attempt == 0:
                try:
                    pack.refresh()
                except pygit2.GitError:
                    return None
        return None

    def release(self) -> None:
        """Close this thread's backends and the packs they hold open (reopened on use)."""
        self._local.backends = None

    def _backends(self) -> tuple[pygit2.OdbBackendPack, pygit2.OdbBackendLoose]:
        local = self._local
        backends: tuple[pygit2.OdbBackendPack, pygit2.OdbBackendLoose] | None = getattr(
            local, "backends", None
        )
        if backends is None or local.pid != os.getpid():
            backends = (
                pygit2.OdbBackendPack(self._objects),
                pygit2.OdbBackendLoose(self._objects, 1, False),
            )
            local.backends = backends
            local.pid = os.getpid()
        return backends


def raw_reader(*odbs: pygit2.Odb) -> Callable[[bytes], RawObject | None]:
    """``read(id)``: the object ``(type, data)`` from the first of ``odbs`` holding it, or None."""

    def read(oid: bytes) -> RawObject | None:
        key = pygit2.Oid(raw=oid)
        for odb in odbs:
            if key in odb:
                kind, data = odb.read(key)
                return int(kind), data
        return None

    return read


def packed_odb(objects_dir: str | os.PathLike[str]) -> pygit2.Odb:
    """A fresh object database that reads only the packs of ``objects_dir``."""
    odb = pygit2.Odb()
    odb.add_backend(pygit2.OdbBackendPack(os.fspath(objects_dir)), 1)
    return odb
