"""Writing new objects as one small pack: what a commit adds to the repository, in two files.

libgit2 writes every object as its own loose file (a commit that changes one
file of a tree three directories deep writes six). :func:`store_objects`
writes them instead as one pack and its ``.idx`` v2 under ``objects/pack``,
with Git's protocol (``pack-write.c`` ``finish_tmp_packfile``,
``builtin/index-pack.c`` with ``--keep``), so that Git's own tools running
at the same time never take the pack for garbage:

1. the pack and its index are written under temporary names
   (``tmp_pack_XXXXXX``, ``tmp_idx_XXXXXX``: no Git tool lists them as packs);
2. ``pack-<sha>.keep`` is created: ``git repack -a -d`` keeps such a pack;
3. the pack is linked to ``pack-<sha>.pack``, then the index renamed to
   ``pack-<sha>.idx`` (readers use a pack once its index exists); a pack of
   that name that is there already is left alone, with no keep
   (:func:`~progreg.git.pack.packdir.place_pack` says why);
4. the caller moves the refs that reach the objects, then releases the keep
   (:class:`~progreg.git.pack.packdir.PackKeep`), also when it failed and
   nothing names them.

libgit2 and ``git`` look for new packs when an object is missing, so the
objects are readable as soon as the function returns. Automatic maintenance
(:mod:`progreg.git.maintenance`) merges small packs.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from progreg.git.durability import fsync_dir, fsync_dirs, make_dirs
from progreg.git.pack import format as packs
from progreg.git.pack.packdir import PackKeep, place_pack, temporary_name
from progreg.git.permissions import adjust_path
from progreg.git.settings import repository_settings

#: ``(id, type, data)`` of an object to store.
NewObject = tuple[bytes, int, bytes]
PACK_PREFIX = "pack-"


@dataclass(frozen=True)
class InstalledPack:
    """A pack just put into ``objects/pack``, and the keep file its writer holds on it."""

    path: Path
    #: ``None`` when another writer (or a person) already held a keep on the same pack.
    keep: PackKeep | None
    #: The same pack was there already: a ``git repack -d`` that listed it may delete
    #: it, so it does not keep the objects safe (:func:`~progreg.git.pack.packdir.place_pack`).
    existed: bool = False


def store_objects(
    objects_dir: Path, objects: Sequence[NewObject], *, durable: bool
) -> InstalledPack | None:
    """Write ``objects`` as one new pack in ``objects_dir/pack``, kept; see the module.

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
) -> InstalledPack:
    """Put a finished pack and its index into ``pack_dir`` with Git's protocol (the module).

    The caller must release the returned keep once refs reach the objects
    (or the write failed). When the same pack is installed already, it is
    left in place, freshened, and ``existed`` says so (see
    :func:`~progreg.git.pack.packdir.place_pack`).
    """
    shared = repository_settings(pack_dir.parent.parent).shared  # Git's modes, see permissions
    changed = [] if pack_dir.is_dir() else make_dirs(pack_dir, pack_dir.parent.parent, shared)
    stem = os.path.join(pack_dir, f"{PACK_PREFIX}{checksum.hex()}")
    final = stem + ".pack"
    temporary = temporary_name(pack_dir, "pack")
    temporary_index = temporary_name(pack_dir, "idx")
    try:
        _write(temporary, data, durable)
        _write(temporary_index, index, durable)
        for path in (temporary, temporary_index):  # they appear with Git's modes
            adjust_path(path, shared)
        keep, existed = place_pack(temporary, temporary_index, final)
    except BaseException:
        for path in (temporary, temporary_index):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        raise
    if durable:
        fsync_dir(pack_dir)
        fsync_dirs(changed)
    return InstalledPack(Path(final), keep, existed)


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
