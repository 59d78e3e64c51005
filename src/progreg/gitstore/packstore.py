"""Writing new objects as one small pack: what a commit adds to the repository, in two files.

libgit2 writes every object as its own loose file (a commit that changes one
file of a tree three directories deep writes six). :func:`store_objects`
writes them instead as one pack and its ``.idx`` v2 under ``objects/pack``,
named as ``git`` names packs: the pack under its final name first, then the
index under a ``tmp_`` name renamed into place, so a reader sees no pack or
a whole one (readers only use packs that have an index). libgit2 and ``git``
look for new packs when an object is missing, so the objects are readable
as soon as the function returns. Automatic maintenance
(:mod:`progreg.gitstore.maintenance`) merges small packs.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from progreg.gitstore import pack as packs
from progreg.gitstore.durability import fsync_dir, fsync_dirs, make_dirs
from progreg.gitstore.permissions import adjust_path
from progreg.gitstore.settings import repository_settings

#: ``(id, type, data)`` of an object to store.
NewObject = tuple[bytes, int, bytes]
PACK_PREFIX = "pack-"


def store_objects(objects_dir: Path, objects: Sequence[NewObject], *, durable: bool) -> Path | None:
    """Write ``objects`` as one new pack in ``objects_dir/pack``; return its path.

    With ``durable``, both files and the directory are flushed to the disk
    before the function returns. Nothing to write: ``None``.
    """
    if not objects:
        return None
    data, entries = packs.pack_bytes(objects)
    checksum = data[-20:]
    index = io.BytesIO()
    packs.write_index(index, entries, checksum)
    return install_pack(objects_dir / "pack", data, index.getvalue(), checksum, durable=durable)


def install_pack(
    pack_dir: Path, data: bytes, index: bytes, checksum: bytes, *, durable: bool
) -> Path:
    """Put a finished pack and its index into ``pack_dir``: the pack first, the index last.

    The pack is written under its final name (readers ignore a pack without
    an index); the index is written under a temporary name and renamed, so it
    appears whole. A pack file left without an index by a crash is replaced.
    """
    shared = repository_settings(pack_dir.parent.parent).shared  # Git's modes, see permissions
    changed = [] if pack_dir.is_dir() else make_dirs(pack_dir, pack_dir.parent.parent, shared)
    directory = str(pack_dir)
    stem = os.path.join(directory, f"{PACK_PREFIX}{checksum.hex()}")
    final, final_index = stem + ".pack", stem + ".idx"
    try:
        _write(final, data, durable)
    except FileExistsError:
        if os.path.exists(final_index):
            return Path(final)  # the very same pack is already installed
        _replace(directory, final, data, durable)
    try:
        _replace(directory, final_index, index, durable)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(final)  # a pack without its index: nobody can be using it
        raise
    for path in (final, final_index):
        adjust_path(path, shared)
    if durable:
        fsync_dir(pack_dir)
        fsync_dirs(changed)
    return Path(final)


def _replace(directory: str, final: str, content: bytes, durable: bool) -> None:
    """Write ``content`` to a temporary file of ``directory`` and rename it to ``final``."""
    temporary = os.path.join(directory, f"tmp_pack_{secrets.token_hex(8)}")
    _write(temporary, content, durable)
    try:
        os.replace(temporary, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _write(path: str, content: bytes, durable: bool) -> None:
    """Create ``path`` (it must not exist) with ``content``, read-only as Git makes packs."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    try:
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)
