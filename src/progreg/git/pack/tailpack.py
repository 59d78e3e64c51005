"""The writer's open pack: each commit's objects are appended to it, as deltas where they can be.

A commit changes one path of a tree several directories deep, so it writes
new versions of the trees along that path, and the top ones (the root, the
directory of all programs) are large. :class:`TailPack` keeps the latest
pack a handle wrote open in memory: the next commit writes a new pack made of
that pack's entries (copied as they are: offsets inside do not move) followed
by its own objects, trees stored as deltas against their previous versions
when those are in the pack. The new pack is installed with Git's protocol
(temporary names, a ``.keep`` until the refs are written: see
:mod:`progreg.git.pack.packstore`); the writer deletes the pack it replaces
only after that (:func:`~progreg.git.pack.packdir.delete_packs`: never one
a multi-pack-index lists, nor one with someone else's ``.keep``). Readers
see the old pack or the new one, and both hold every object written before.
A pack that a multi-pack-index lists is not replaced: the next commit starts
a new one, and maintenance merges it. Unlike a merged pack, a new open pack
need not be made newer than the one it replaces
(:func:`~progreg.git.pack.packdir.outrank`): it holds a commit no other pack
holds, so no multi-pack-index leaves it without objects, and ``git
multi-pack-index expire`` never deletes the last of the chain it knows.

Once the pack holds :data:`MAX_OBJECTS` objects or :data:`MAX_BYTES` bytes
it is left as it is for maintenance to merge (see
:mod:`progreg.git.maintenance`), and the next commit starts a new one.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import os
import struct
import threading
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

from progreg.git.objects.delta import make_delta
from progreg.git.objects.encoding import OBJ_TREE
from progreg.git.pack import format as packs
from progreg.git.pack.packdir import MIDX, heal_midx, midx_packs
from progreg.git.pack.packstore import InstalledPack, NewObject, install_pack

#: A pack stays open until it holds this many objects...
MAX_OBJECTS = 256
#: ... or this many bytes.
MAX_BYTES = 256 * 1024


class TailPack:
    """The pack a handle appends to; see the module. Use under the registry's write lock."""

    def __init__(self, pack_dir: Path) -> None:
        self.pack_dir = pack_dir
        self._lock = threading.Lock()
        self._midx_path = os.path.join(pack_dir, MIDX)
        self._midx_stamp: tuple[int, int, int] | None = None
        self._midx_names: set[str] = set()
        self._reset()

    def _reset(self) -> None:
        self.path: Path | None = None
        self._body = bytearray()  # the entries, without header and trailer
        self._entries: dict[bytes, tuple[int, int]] = {}  # id -> (offset, CRC-32)
        self._sorted: list[bytes] = []  # the ids, in index order
        self._fanout = [0] * 256  # how many ids start with each byte
        self._depths: dict[bytes, int] = {}
        self._trees: dict[bytes, bytes] = {}  # raw data of the trees, as delta bases

    @property
    def name(self) -> str | None:
        """The file name of the open pack, if there is one."""
        return self.path.name if self.path is not None else None

    def fits(self, objects: Sequence[NewObject]) -> bool:
        """Whether ``objects`` are few and small enough to go into an open pack."""
        size = sum(len(data) for _, _, data in objects)
        return len(objects) <= MAX_OBJECTS // 4 and size <= MAX_BYTES // 4

    def write(
        self, objects: Sequence[NewObject], previous: Mapping[bytes, bytes], *, durable: bool
    ) -> tuple[InstalledPack, Path | None]:
        """Write the open pack's entries and ``objects`` as a new pack; return it and the old one.

        ``previous`` maps new trees to their previous versions (delta bases
        when those are in the pack). The caller releases the new pack's keep
        once its refs are written, then deletes the replaced pack.
        """
        with self._lock:
            size = sum(len(data) for _, _, data in objects)
            if (
                self.path is None
                or len(self._entries) + len(objects) > MAX_OBJECTS
                or len(self._body) + size // 2 > MAX_BYTES
                or not self.path.with_suffix(".idx").exists()  # merged away meanwhile
                or self._in_midx(self.path)  # Git reads it through the multi-pack-index
            ):
                self._reset()
            old = self.path
            mark = len(self._body)
            added: list[bytes] = []
            try:
                for oid, kind, data in objects:
                    if oid not in self._entries:
                        self._append(oid, kind, data, previous.get(oid))
                        added.append(oid)
                installed = self._install(durable)
            except BaseException:
                del self._body[mark:]
                for oid in added:
                    if self._entries.pop(oid, None) is not None:
                        self._sorted.remove(oid)
                        self._fanout[oid[0]] -= 1
                    self._depths.pop(oid, None)
                    self._trees.pop(oid, None)
                raise
            self.path = installed.path
            return installed, old if old != installed.path else None

    def _in_midx(self, pack: Path) -> bool:
        """Whether the multi-pack-index lists ``pack``."""
        return pack.stem in self.midx_names()

    def midx_names(self) -> set[str]:
        """The packs the multi-pack-index lists (read again when the file changed).

        A file that names a pack that is gone (written by a ``git
        multi-pack-index write`` that listed a pack deleted since) is removed.
        """
        try:
            stat = os.stat(self._midx_path)
        except OSError:
            self._midx_stamp = None
            return set()
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp != self._midx_stamp:
            names = midx_packs(self.pack_dir) or set()
            if any(not (self.pack_dir / f"{stem}.pack").exists() for stem in names):
                heal_midx(self.pack_dir)
                names = midx_packs(self.pack_dir) or set()
            self._midx_names = names
            self._midx_stamp = stamp
        return self._midx_names

    def _append(self, oid: bytes, kind: int, data: bytes, base: bytes | None) -> None:
        offset = len(self._body) + 12
        entry: bytes | None = None
        depth = 0
        base_data = self._trees.get(base) if base is not None else None
        if kind == OBJ_TREE and base is not None and base_data is not None:
            depth = self._depths[base] + 1
            if len(data) >= packs.MIN_DELTA_SIZE and depth <= packs.MAX_DELTA_DEPTH:
                delta = make_delta(base_data, data)
                if delta is not None:
                    distance = offset - self._entries[base][0]
                    entry = (
                        packs.entry_header(packs.OFS_DELTA, len(delta))
                        + packs.offset_encoding(distance)
                        + packs.compress(delta)
                    )
        if entry is None:
            depth = 0
            entry = packs.entry_header(kind, len(data)) + packs.compress(data, packs.level_of(kind))
        self._body += entry
        self._entries[oid] = (offset, zlib.crc32(entry))
        bisect.insort(self._sorted, oid)
        self._fanout[oid[0]] += 1
        self._depths[oid] = depth
        if kind == OBJ_TREE:
            self._trees[oid] = data

    def _install(self, durable: bool) -> InstalledPack:
        header = b"PACK" + struct.pack(">II", 2, len(self._entries))
        digest = hashlib.sha1(header)
        digest.update(self._body)
        checksum = digest.digest()
        data = b"".join((header, self._body, checksum))
        return install_pack(self.pack_dir, data, self._index(checksum), checksum, durable=durable)

    def _index(self, checksum: bytes) -> bytes:
        """The ``.idx`` v2 of the pack (what
        :func:`~progreg.git.pack.format.write_index` writes)."""
        ids = self._sorted
        count = len(ids)
        located = [self._entries[oid] for oid in ids]
        index = b"".join(
            (
                b"\xfftOc\x00\x00\x00\x02",
                struct.pack(">256I", *itertools.accumulate(self._fanout)),
                b"".join(ids),
                struct.pack(f">{count}I", *[crc for _, crc in located]),
                struct.pack(f">{count}I", *[offset for offset, _ in located]),
                checksum,
            )
        )
        return index + hashlib.sha1(index).digest()

    def close(self) -> None:
        """Leave the open pack as it is: the next write starts a new one."""
        with self._lock:
            self._reset()
