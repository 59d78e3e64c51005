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
import io
import mmap
import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO, NamedTuple

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
#: ``release(start, end)``: the pack's bytes ``start`` to ``end`` need not stay in memory
#: (see :class:`~progreg.gitstore.mapped.MappedFile`); reading them again must still work.
Release = Callable[[int, int], None]

#: Bytes of a pack read between two calls of a ``release`` callback.
RELEASE_STEP = 16 * 1024 * 1024


def _no_release(start: int, end: int) -> None:
    """Keep everything: the pack is in memory anyway."""


@dataclass
class _Delta:
    offset: int
    base_offset: int | None
    base_oid: bytes | None
    data: bytes | None  # None: not kept in memory, inflated again from data_start
    data_start: int
    size: int


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


class EntryHeader(NamedTuple):
    """The header of a pack entry."""

    kind: int
    size: int  # of the object, or of the delta
    size_end: int  # offset just after the type and size
    base_offset: int | None  # of an OFS_DELTA's base
    base_oid: bytes | None  # of a REF_DELTA's base
    data_start: int  # offset of the compressed data


def parse_entry_header(pack: memoryview | mmap.mmap, pos: int, limit: int) -> EntryHeader:
    """Parse the header of the entry at ``pos`` of a pack (which ends at ``limit``).

    Raises :class:`~progreg.BundleError` on a malformed or truncated header.
    """
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
    size_end = pos
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
        return EntryHeader(kind, size, size_end, base_offset, None, pos)
    if kind == REF_DELTA:
        if pos + 20 > limit:
            raise BundleError(f"the pack is truncated in the delta at offset {start}")
        return EntryHeader(kind, size, size_end, None, bytes(pack[pos : pos + 20]), pos + 20)
    if kind not in TYPE_NAMES:
        raise BundleError(f"the pack has an entry of unknown type {kind} at offset {start}")
    return EntryHeader(kind, size, size_end, None, None, pos)


#: Inflated objects and deltas :func:`index_pack` keeps in memory between its two
#: passes at most; beyond, it remembers where they are and inflates them again.
MAX_RETAINED_BYTES = 256 * 1024 * 1024
#: Objects :func:`index_pack` may produce (inflated or rebuilt from deltas), in bytes
#: per byte of pack, above :data:`MIN_WORK_BYTES`: a registry's pack expands about
#: ten times, a zlib or delta bomb thousands of times.
MAX_EXPANSION = 256
MIN_WORK_BYTES = 1024 * 1024 * 1024


class _Budget:
    """What indexing one pack may hold in memory and produce, and what it used so far."""

    def __init__(self, pack_size: int, retained: int) -> None:
        self.held = 0
        self.produced = 0
        self.max_held = retained
        self.max_produced = MIN_WORK_BYTES + MAX_EXPANSION * pack_size

    def keep(self, size: int) -> bool:
        """Whether ``size`` more bytes may stay in memory (they are then counted)."""
        if self.held + size > self.max_held:
            return False
        self.held += size
        return True

    def produce(self, size: int) -> None:
        """Count ``size`` bytes inflated or rebuilt; refuse a pack that expands too much."""
        self.produced += size
        if self.produced > self.max_produced:
            raise BundleError(
                f"the pack expands to more than {self.max_produced} bytes of objects"
                " (a compression or delta bomb?); refusing it"
            )


def index_pack(
    pack: memoryview,
    *,
    external: ExternalReader,
    visit: Visitor,
    max_object_size: int,
    max_retained_bytes: int = MAX_RETAINED_BYTES,
    release: Release = _no_release,
) -> IndexedPack:
    """Parse and check a whole pack; resolve its deltas; return the index entries.

    Checks the signature, version, object count and SHA-1 trailer, inflates
    every entry (refusing objects over ``max_object_size`` bytes before
    inflating them), resolves ``OFS_DELTA`` and ``REF_DELTA`` chains (bases
    missing from the pack are asked of ``external``: a thin pack), and
    computes every object's id. Raises :class:`BundleError` on any defect.

    Memory and work are bounded whatever the pack holds: at most
    ``max_retained_bytes`` of objects stay in memory between the two passes
    (others are inflated again when a delta needs them), a delta base is
    dropped once the deltas built on it are resolved, and a pack that
    expands more than :data:`MAX_EXPANSION` times its size is refused.
    ``release`` is told of every range of the pack read (every
    :data:`RELEASE_STEP` bytes), so that a mapped pack need not stay resident.
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
    digest = hashlib.sha1()
    for start in range(0, limit, RELEASE_STEP):
        end = min(limit, start + RELEASE_STEP)
        digest.update(pack[start:end])
        release(start, end)
    if digest.digest() != bytes(pack[limit:]):
        raise BundleError(
            "the pack's SHA-1 checksum does not match: the bundle is truncated or corrupt"
        )
    budget = _Budget(total, max_retained_bytes)
    entries: dict[int, IndexEntry] = {}
    whole: dict[int, tuple[int, bytes | None, int, int]] = {}  # kind, data, data start, size
    by_oid: dict[bytes, int] = {}
    deltas: list[_Delta] = []
    pos = released = 12
    for _ in range(count):
        if pos - released >= RELEASE_STEP:
            release(released, pos)
            released = pos
        start = pos
        kind, size, _, base_offset, base_oid, data_start = parse_entry_header(pack, pos, limit)
        limit_for_kind = max_object_size if kind in TYPE_NAMES else _delta_limit(max_object_size)
        if size > limit_for_kind:
            raise BundleError(
                f"an object in the pack is {size} bytes, over the limit of {max_object_size}"
            )
        data, pos = _inflate(pack, data_start, size, limit)
        budget.produce(size)
        entries[start] = IndexEntry(b"", start, zlib.crc32(pack[start:pos]))
        kept = data if budget.keep(size) else None
        if base_offset is None and base_oid is None:
            oid = object_id(kind, data)
            entries[start].oid = oid
            whole[start] = (kind, kept, data_start, size)
            by_oid.setdefault(oid, start)
            visit(oid, kind, data)
        else:
            deltas.append(_Delta(start, base_offset, base_oid, kept, data_start, size))
        del data
    if pos != limit:
        raise BundleError(f"the pack has {limit - pos} unexpected bytes after its last entry")
    release(released, pos)
    resolver = _Resolver(pack, limit, whole, entries, by_oid, external, visit, budget, release)
    resolver.resolve(deltas, max_object_size)
    release(0, limit)
    return IndexedPack(
        entries=list(entries.values()),
        checksum=bytes(pack[limit:]),
        version=version,
        external=resolver.external_used,
    )


class _Resolver:
    """The second pass of :func:`index_pack`: rebuild every delta, holding only live bases.

    A base stays in memory while deltas built on it are pending (its
    *dependents*); once the last one is resolved it is dropped.
    """

    def __init__(
        self,
        pack: memoryview,
        limit: int,
        whole: dict[int, tuple[int, bytes | None, int, int]],
        entries: dict[int, IndexEntry],
        by_oid: dict[bytes, int],
        external: ExternalReader,
        visit: Visitor,
        budget: _Budget,
        release: Release,
    ) -> None:
        self.pack = pack
        self.release = release
        self.reread = 0  # bytes of the pack read since the last release
        self.limit = limit
        self.whole = whole
        self.entries = entries
        self.by_oid = by_oid
        self.external = external
        self.visit = visit
        self.budget = budget
        self.external_used: dict[bytes, tuple[int, bytes]] = {}
        self.built: dict[int, tuple[int, bytes]] = {}  # rebuilt deltas that are bases
        self.dependents: dict[int | bytes, int] = {}  # base offset or base id -> pending count

    def _inflated(self, data_start: int, size: int) -> bytes:
        self.budget.produce(size)
        data, end = _inflate(self.pack, data_start, size, self.limit)
        self.reread += end - data_start
        if self.reread >= RELEASE_STEP:
            self.release(0, self.limit)
            self.reread = 0
        return data

    def _base_at(self, offset: int) -> tuple[int, bytes] | None:
        """The object starting at ``offset`` if it is known (whole, or a rebuilt delta)."""
        found = self.built.get(offset)
        if found is not None:
            return found
        stored = self.whole.get(offset)
        if stored is None:
            return None
        kind, data, data_start, size = stored
        return kind, data if data is not None else self._inflated(data_start, size)

    def _release(self, key: int | bytes) -> None:
        """One dependent of base ``key`` is resolved; drop the base with its last one.

        A base may be named both by its offset and by its id (``OFS_DELTA`` and
        ``REF_DELTA``): it is dropped when neither has dependents left.
        """
        left = self.dependents.get(key, 0) - 1
        if left > 0:
            self.dependents[key] = left
            return
        self.dependents.pop(key, None)
        offset = key if isinstance(key, int) else self.by_oid.get(key)
        if offset is not None and offset in self.entries:
            if self._is_base(offset):
                return
            dropped = self.built.pop(offset, None)
            if dropped is not None:
                self.budget.held -= len(dropped[1])
            stored = self.whole.get(offset)
            if stored is not None and stored[1] is not None:
                self.budget.held -= stored[3]
                self.whole[offset] = (stored[0], None, stored[2], stored[3])

    def resolve(self, deltas: list[_Delta], max_object_size: int) -> None:
        """Rebuild every delta (asking ``external`` for the bases of a thin pack)."""
        for delta in deltas:
            key = delta.base_offset if delta.base_offset is not None else delta.base_oid
            assert key is not None
            self.dependents[key] = self.dependents.get(key, 0) + 1
        # Whole objects no delta builds on are not needed any more.
        for offset, (kind, data, data_start, size) in list(self.whole.items()):
            if data is not None and not self._is_base(offset):
                self.budget.held -= size
                self.whole[offset] = (kind, None, data_start, size)
        pending = {delta.offset: delta for delta in deltas}
        while pending:
            progress = False
            for offset in list(pending):
                waiting = pending.get(offset)
                if waiting is None:
                    continue
                chain, base = self._chain(waiting, pending)
                if base is not None:
                    self._rebuild(chain, base, pending, max_object_size)
                    progress = True
            if not progress:
                missing = next(d.base_oid for d in pending.values() if d.base_oid is not None)
                assert missing is not None
                found = self.external(missing)
                if found is None:
                    raise BundleError(
                        f"the pack is thin and its delta base {missing.hex()} is neither in the"
                        " pack nor in the repository"
                    )
                self.external_used[missing] = found

    def _is_base(self, offset: int) -> bool:
        return offset in self.dependents or self.entries[offset].oid in self.dependents

    def _chain(
        self, delta: _Delta, pending: dict[int, _Delta]
    ) -> tuple[list[_Delta], tuple[int, bytes] | None]:
        """``delta`` and the pending deltas it builds on, down to a known base (or ``None``)."""
        chain = [delta]
        while True:
            current = chain[-1]
            if current.base_offset is not None:
                base = self._base_at(current.base_offset)
                if base is not None:
                    return chain, base
                parent = pending.get(current.base_offset)
                if parent is None:
                    raise BundleError(
                        f"the delta at offset {current.offset} refers to offset"
                        f" {current.base_offset}, which starts no entry"
                    )
                chain.append(parent)
                continue
            assert current.base_oid is not None
            where = self.by_oid.get(current.base_oid)
            base = self._base_at(where) if where is not None else None
            if base is None:
                base = self.external_used.get(current.base_oid)
            return chain, base  # None: the base may be a delta still to resolve

    def _rebuild(
        self,
        chain: list[_Delta],
        base: tuple[int, bytes],
        pending: dict[int, _Delta],
        max_object_size: int,
    ) -> None:
        """Apply the deltas of ``chain`` from its end, visiting each rebuilt object."""
        for link in reversed(chain):
            kind, base_data = base
            patch = (
                link.data if link.data is not None else self._inflated(link.data_start, link.size)
            )
            data = apply_delta(base_data, patch, max_object_size)
            self.budget.produce(len(data))
            oid = object_id(kind, data)
            self.entries[link.offset].oid = oid
            self.by_oid.setdefault(oid, link.offset)
            del pending[link.offset]
            if link.data is not None:
                self.budget.held -= link.size
            self.visit(oid, kind, data)
            if self._is_base(link.offset):
                if not self.budget.keep(len(data)):
                    raise BundleError(
                        f"the pack holds more than {self.budget.max_held} bytes of delta bases"
                        " at once; refusing it"
                    )
                self.built[link.offset] = (kind, data)
            key = link.base_offset if link.base_offset is not None else link.base_oid
            assert key is not None
            self._release(key)
            base = (kind, data)


def complete_thin(
    pack: bytes, external: dict[bytes, tuple[int, bytes]], level: int = DEFAULT_LEVEL
) -> tuple[bytes, list[IndexEntry]]:
    """Append the external delta bases to a thin pack; return the new pack and their entries.

    This is ``git index-pack --fix-thin``: the result is self-contained, so
    it can sit in a repository's ``objects/pack`` like any other pack.
    """
    if not external:
        return pack, []
    out = io.BytesIO()
    _, added = write_completed(out, memoryview(pack), external, level)
    return out.getvalue(), added


def write_completed(
    out: BinaryIO,
    pack: memoryview,
    external: dict[bytes, tuple[int, bytes]],
    level: int = DEFAULT_LEVEL,
    release: Release = _no_release,
) -> tuple[bytes, list[IndexEntry]]:
    """Write the (indexed) ``pack`` to ``out``, completed as :func:`complete_thin` does.

    The pack is copied :data:`RELEASE_STEP` bytes at a time (``release`` is
    told of each range copied), never whole in memory. Returns the checksum
    of the pack written and the entries of the bases appended.
    """
    limit = len(pack) - _TRAILER
    digest = hashlib.sha1()

    def write(data: bytes | bytearray | memoryview) -> None:
        out.write(data)
        digest.update(data)

    head = bytearray(pack[:12])
    head[8:12] = struct.pack(">I", struct.unpack(">I", head[8:12])[0] + len(external))
    write(head)
    for start in range(12, limit, RELEASE_STEP):
        end = min(limit, start + RELEASE_STEP)
        write(pack[start:end])
        release(start, end)
    if not external:  # the same bytes: the same checksum
        out.write(pack[limit:])
        return bytes(pack[limit:]), []
    position = limit
    added = []
    for oid, (kind, data) in external.items():
        entry = entry_header(kind, len(data)) + zlib.compress(data, level)
        added.append(IndexEntry(oid, position, zlib.crc32(entry)))
        write(entry)
        position += len(entry)
    checksum = digest.digest()
    out.write(checksum)
    return checksum, added


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
