"""Git pack files, by hand: writing, indexing and thin-pack completion.

The formats are those of ``gitformat-pack``: a pack is ``PACK``, a version
(2 or 3), an object count, the entries and the SHA-1 of everything before it.
Each entry is a type-and-size header followed by zlib data; deltas are either
``OFS_DELTA`` (base given by a negative offset in the same pack) or
``REF_DELTA`` (base given by its id, possibly outside the pack: a *thin*
pack). An index (``.idx`` version 2) maps ids to offsets.

pygit2 exposes no pack indexer, and its ``PackBuilder`` recomputes every delta
and can only write a pack to a directory; this module does what progreg needs
in Python with ``zlib`` and ``hashlib`` doing the heavy work in C.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

from progreg.errors import BundleError
from progreg.gitstore.delta import apply_delta
from progreg.gitstore.objects import TYPE_NAMES, object_id

OFS_DELTA = 6
REF_DELTA = 7

#: Longest delta chain the writer makes (``pack.depth`` in Git defaults to 50).
MAX_DELTA_DEPTH = 50
#: Objects smaller than this are stored whole: a delta would save little.
MIN_DELTA_SIZE = 256
#: zlib level of written entries (Git's default ``core.compression`` is 6, but
#: level 1 is 2-3x faster on program documents for a few percent more bytes).
DEFAULT_LEVEL = 1
_TRAILER = 20


def entry_header(kind: int, size: int) -> bytes:
    """The type-and-size header of a pack entry."""
    out = bytearray()
    byte = (kind << 4) | (size & 0x0F)
    size >>= 4
    while size:
        out.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    out.append(byte)
    return bytes(out)


def offset_encoding(distance: int) -> bytes:
    """Git's encoding of an ``OFS_DELTA`` base distance."""
    out = bytearray([distance & 0x7F])
    distance >>= 7
    while distance:
        distance -= 1
        out.insert(0, 0x80 | (distance & 0x7F))
        distance >>= 7
    return bytes(out)


# -- writing --------------------------------------------------------------------


class PackWriter:
    """Stream a pack into a seekable binary file.

    The object count is patched into the header and the SHA-1 trailer
    computed by :meth:`finish`, so objects can be written as they are found
    without holding them all in memory.
    """

    def __init__(self, out: BinaryIO, level: int = DEFAULT_LEVEL) -> None:
        self._out = out
        self._level = level
        self._start = out.tell()
        self._position = 0
        self.count = 0
        self.offsets: dict[bytes, int] = {}
        self._write(b"PACK" + struct.pack(">II", 2, 0))

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self._position += len(data)

    def add(self, oid: bytes, kind: int, data: bytes) -> None:
        """Add a whole object."""
        self.offsets[oid] = self._position
        self._write(entry_header(kind, len(data)) + zlib.compress(data, self._level))
        self.count += 1

    def add_delta(self, oid: bytes, base: bytes, delta: bytes) -> None:
        """Add an object as ``delta`` against ``base`` (in this pack: OFS, else REF: thin)."""
        start = self._position
        self.offsets[oid] = start
        base_offset = self.offsets.get(base)
        if base_offset is not None:
            head = entry_header(OFS_DELTA, len(delta)) + offset_encoding(start - base_offset)
        else:
            head = entry_header(REF_DELTA, len(delta)) + base
        self._write(head + zlib.compress(delta, self._level))
        self.count += 1

    def finish(self) -> bytes:
        """Patch the object count, append the SHA-1 trailer; return the pack's checksum."""
        out = self._out
        out.flush()
        out.seek(self._start + 8)
        out.write(struct.pack(">I", self.count))
        out.flush()
        out.seek(self._start)
        digest = hashlib.sha1()
        remaining = self._position
        while remaining:
            chunk = out.read(min(remaining, 1 << 20))
            if not chunk:
                raise OSError("the pack being written was truncated underneath")
            digest.update(chunk)
            remaining -= len(chunk)
        checksum = digest.digest()
        out.seek(self._start + self._position)
        out.write(checksum)
        self._position += len(checksum)
        return checksum

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._position


def compress(data: bytes, level: int = DEFAULT_LEVEL) -> bytes:
    """``data`` as a zlib stream, with a window and memory sized to it.

    ``zlib.compress`` sets up 256 KB of state for any input, which costs more
    than compressing an object of a few hundred bytes; any zlib stream is
    valid in a pack or a loose object.
    """
    window = max(9, min(15, (len(data) - 1).bit_length()))
    deflate = zlib.compressobj(level, zlib.DEFLATED, window, max(1, min(8, window - 6)))
    return deflate.compress(data) + deflate.flush()


def pack_bytes(
    objects: Iterable[tuple[bytes, int, bytes]], level: int = DEFAULT_LEVEL
) -> tuple[bytes, list[IndexEntry]]:
    """A whole pack of ``(id, type, data)`` objects, each stored whole, and its index entries.

    For the few objects of one commit, built in memory; an id given twice is
    stored once. The pack's checksum is its last 20 bytes.
    """
    body = bytearray(b"PACK\x00\x00\x00\x02\x00\x00\x00\x00")
    entries: list[IndexEntry] = []
    seen: set[bytes] = set()
    for oid, kind, data in objects:
        if oid in seen:
            continue
        seen.add(oid)
        entry = entry_header(kind, len(data)) + compress(data, level)
        entries.append(IndexEntry(oid, len(body), zlib.crc32(entry)))
        body += entry
    body[8:12] = struct.pack(">I", len(entries))
    body += hashlib.sha1(body).digest()
    return bytes(body), entries


# -- reading --------------------------------------------------------------------


@dataclass
class IndexEntry:
    """One object of an indexed pack: its id, where it starts and the CRC-32 of its entry."""

    oid: bytes
    offset: int
    crc: int


@dataclass
class IndexedPack:
    """What :func:`index_pack` learnt: every object, and the external bases thin deltas used."""

    entries: list[IndexEntry]
    checksum: bytes
    version: int
    external: dict[bytes, tuple[int, bytes]] = field(default_factory=dict)


#: ``external(oid)`` returns ``(type, data)`` of an object outside the pack, or ``None``.
ExternalReader = Callable[[bytes], tuple[int, bytes] | None]
#: ``visit(oid, type, data)`` is called once for every object of the pack.
Visitor = Callable[[bytes, int, bytes], None]
#: ``progress(done, total)``: how far a long pack operation is, in its own units.
Progress = Callable[[int, int], None]


@dataclass
class _Delta:
    offset: int
    end: int
    base_offset: int | None
    base_oid: bytes | None
    data: bytes


def _inflate(pack: memoryview, pos: int, size: int, limit: int) -> tuple[bytes, int]:
    """Inflate the zlib stream at ``pos`` that must give exactly ``size`` bytes."""
    inflater = zlib.decompressobj()
    chunk = size + (size >> 6) + 64
    end = min(limit, pos + chunk)
    try:
        out = inflater.decompress(pack[pos:end], size + 1)
        while not inflater.eof and len(out) <= size:
            if inflater.unconsumed_tail:
                out += inflater.decompress(inflater.unconsumed_tail, size + 1 - len(out))
                continue
            if end >= limit:
                break
            start, end = end, min(limit, end + max(chunk, 65536))
            out += inflater.decompress(pack[start:end], size + 1 - len(out))
    except zlib.error as exc:
        raise BundleError(f"the pack is corrupt: bad zlib data at offset {pos} ({exc})") from exc
    if not inflater.eof or len(out) != size:
        raise BundleError(
            f"the pack is truncated or corrupt: the entry at offset {pos} does not inflate"
            f" to its {size} announced bytes"
        )
    return out, end - len(inflater.unused_data)


def _delta_limit(max_object_size: int) -> int:
    return max_object_size + (max_object_size >> 2) + 64


def _entry_header(
    pack: memoryview, pos: int, limit: int
) -> tuple[int, int, int | None, bytes | None, int]:
    """Parse an entry header at ``pos``: ``(type, size, base offset, base id, data start)``."""
    start = pos
    if pos >= limit:
        raise BundleError("the pack is truncated: fewer entries than announced")
    byte = pack[pos]
    pos += 1
    kind = (byte >> 4) & 7
    size = byte & 0x0F
    shift = 4
    while byte & 0x80:
        if pos >= limit or shift > 60:
            raise BundleError(f"the pack has a malformed entry header at offset {start}")
        byte = pack[pos]
        pos += 1
        size |= (byte & 0x7F) << shift
        shift += 7
    if kind == OFS_DELTA:
        distance = -1
        while distance < 0 or byte & 0x80:
            if pos >= limit or distance > 1 << 60:
                raise BundleError(f"the pack has a malformed delta at offset {start}")
            byte = pack[pos]
            pos += 1
            distance = (byte & 0x7F) if distance < 0 else ((distance + 1) << 7) | (byte & 0x7F)
        base_offset = start - distance
        if base_offset < 12 or base_offset >= start:
            raise BundleError(f"the delta at offset {start} names an invalid base offset")
        return kind, size, base_offset, None, pos
    if kind == REF_DELTA:
        if pos + 20 > limit:
            raise BundleError(f"the pack is truncated in the delta at offset {start}")
        return kind, size, None, bytes(pack[pos : pos + 20]), pos + 20
    if kind not in TYPE_NAMES:
        raise BundleError(f"the pack has an entry of unknown type {kind} at offset {start}")
    return kind, size, None, None, pos


def index_pack(
    pack: memoryview,
    *,
    external: ExternalReader,
    visit: Visitor,
    max_object_size: int,
) -> IndexedPack:
    """Parse and check a whole pack; resolve its deltas; return the index entries.

    Checks the signature, version, object count and SHA-1 trailer, inflates
    every entry (refusing objects over ``max_object_size`` bytes before
    inflating them), resolves ``OFS_DELTA`` and ``REF_DELTA`` chains (bases
    missing from the pack are asked of ``external``: a thin pack), and
    computes every object's id. Raises :class:`BundleError` on any defect.
    """
    total = len(pack)
    if total < 12 + _TRAILER or bytes(pack[:4]) != b"PACK":
        raise BundleError("the bundle's pack is missing or truncated (no PACK header)")
    version, count = struct.unpack(">II", pack[4:12])
    if version not in (2, 3):
        raise BundleError(f"the bundle's pack has unsupported version {version}")
    limit = total - _TRAILER
    if count > limit:
        raise BundleError(f"the pack announces {count} objects but is only {total} bytes long")
    if hashlib.sha1(pack[:limit]).digest() != bytes(pack[limit:]):
        raise BundleError(
            "the pack's SHA-1 checksum does not match: the bundle is truncated or corrupt"
        )
    entries: dict[int, IndexEntry] = {}
    resolved: dict[int, tuple[int, bytes]] = {}
    by_oid: dict[bytes, int] = {}
    deltas: list[_Delta] = []
    pos = 12
    for _ in range(count):
        start = pos
        kind, size, base_offset, base_oid, pos = _entry_header(pack, pos, limit)
        limit_for_kind = max_object_size if kind in TYPE_NAMES else _delta_limit(max_object_size)
        if size > limit_for_kind:
            raise BundleError(
                f"an object in the pack is {size} bytes, over the limit of {max_object_size}"
            )
        data, pos = _inflate(pack, pos, size, limit)
        entries[start] = IndexEntry(b"", start, zlib.crc32(pack[start:pos]))
        if base_offset is None and base_oid is None:
            oid = object_id(kind, data)
            entries[start].oid = oid
            resolved[start] = (kind, data)
            by_oid.setdefault(oid, start)
            visit(oid, kind, data)
        else:
            deltas.append(_Delta(start, pos, base_offset, base_oid, data))
    if pos != limit:
        raise BundleError(f"the pack has {limit - pos} unexpected bytes after its last entry")
    keep: set[int] | None = None
    if all(delta.base_offset is not None for delta in deltas):
        # Only OFS_DELTA bases are needed from now on: free every other object.
        keep = {delta.base_offset for delta in deltas if delta.base_offset is not None}
        for offset in [offset for offset in resolved if offset not in keep]:
            del resolved[offset]
    external_used = _resolve_deltas(
        deltas, entries, resolved, by_oid, external, visit, max_object_size, keep
    )
    return IndexedPack(
        entries=list(entries.values()),
        checksum=bytes(pack[limit:]),
        version=version,
        external=external_used,
    )


def _resolve_deltas(
    deltas: list[_Delta],
    entries: dict[int, IndexEntry],
    resolved: dict[int, tuple[int, bytes]],
    by_oid: dict[bytes, int],
    external: ExternalReader,
    visit: Visitor,
    max_object_size: int,
    keep: set[int] | None,
) -> dict[bytes, tuple[int, bytes]]:
    external_used: dict[bytes, tuple[int, bytes]] = {}
    pending = {delta.offset: delta for delta in deltas}
    while pending:
        progress = False
        for offset in list(pending):
            delta = pending.get(offset)
            if delta is None:
                continue
            chain = [delta]
            base: tuple[int, bytes] | None = None
            while base is None:
                current = chain[-1]
                if current.base_offset is not None:
                    base = resolved.get(current.base_offset)
                    if base is None:
                        parent = pending.get(current.base_offset)
                        if parent is None:
                            raise BundleError(
                                f"the delta at offset {current.offset} refers to offset"
                                f" {current.base_offset}, which starts no entry"
                            )
                        chain.append(parent)
                        continue
                else:
                    assert current.base_oid is not None
                    where = by_oid.get(current.base_oid)
                    if where is not None:
                        base = resolved[where]
                    elif current.base_oid in external_used:
                        base = external_used[current.base_oid]
                    else:
                        break  # the base may be a delta still to resolve; retry later
            if base is None:
                continue
            for link in reversed(chain):
                kind, base_data = base
                data = apply_delta(base_data, link.data, max_object_size)
                oid = object_id(kind, data)
                entries[link.offset].oid = oid
                if keep is None or link.offset in keep:
                    resolved[link.offset] = (kind, data)
                by_oid.setdefault(oid, link.offset)
                del pending[link.offset]
                visit(oid, kind, data)
                base = (kind, data)
            progress = True
        if not progress:
            missing = next(d.base_oid for d in pending.values() if d.base_oid is not None)
            assert missing is not None
            found = external(missing)
            if found is None:
                raise BundleError(
                    f"the pack is thin and its delta base {missing.hex()} is neither in the"
                    " pack nor in the repository"
                )
            external_used[missing] = found
    return external_used


def complete_thin(
    pack: bytes, external: dict[bytes, tuple[int, bytes]], level: int = DEFAULT_LEVEL
) -> tuple[bytes, list[IndexEntry]]:
    """Append the external delta bases to a thin pack; return the new pack and their entries.

    This is ``git index-pack --fix-thin``: the result is self-contained, so
    it can sit in a repository's ``objects/pack`` like any other pack.
    """
    if not external:
        return pack, []
    body = bytearray(pack[:-_TRAILER])
    count = struct.unpack(">I", body[8:12])[0] + len(external)
    body[8:12] = struct.pack(">I", count)
    added = []
    for oid, (kind, data) in external.items():
        entry = entry_header(kind, len(data)) + zlib.compress(data, level)
        added.append(IndexEntry(oid, len(body), zlib.crc32(entry)))
        body += entry
    body += hashlib.sha1(body).digest()
    return bytes(body), added


def write_index(out: BinaryIO, entries: Iterable[IndexEntry], pack_checksum: bytes) -> None:
    """Write a version-2 pack index (``.idx``) for ``entries``."""
    unique: dict[bytes, IndexEntry] = {}
    for entry in entries:
        unique.setdefault(entry.oid, entry)
    ordered = [unique[oid] for oid in sorted(unique)]
    digest = hashlib.sha1()

    def write(data: bytes) -> None:
        out.write(data)
        digest.update(data)

    write(b"\xfftOc" + struct.pack(">I", 2))
    fanout = [0] * 256
    for entry in ordered:
        fanout[entry.oid[0]] += 1
    running = 0
    for index in range(256):
        running += fanout[index]
        fanout[index] = running
    write(struct.pack(">256I", *fanout))
    write(b"".join(entry.oid for entry in ordered))
    write(struct.pack(f">{len(ordered)}I", *(entry.crc for entry in ordered)))
    small: list[int] = []
    large: list[int] = []
    for entry in ordered:
        if entry.offset < 0x80000000:
            small.append(entry.offset)
        else:
            small.append(0x80000000 | len(large))
            large.append(entry.offset)
    write(struct.pack(f">{len(small)}I", *small))
    if large:
        write(struct.pack(f">{len(large)}Q", *large))
    write(pack_checksum)
    out.write(digest.digest())
